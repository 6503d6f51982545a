#!/usr/bin/env python3
"""A serving fleet's view of `recforge serve`: an independent client checks the server.

Starts `recforge serve EXPORT --listen 127.0.0.1:0` (ephemeral loopback port, read from its
first stdout line), waits for /readyz, and then, over ONE persistent HTTP/1.1 connection
(http.client from the standard library, so keep-alive is exercised):
  - asks GET /v1/recommend for users and checks every list against NumPy brute force in double
    precision over the export's own files (user/item factors, seen lists): each returned item is
    eligible (not seen), each score is the double score of its item within a float32 rounding
    bound, and the sorted score sequence equals the double top-k's within that bound (so ties may
    come in either order);
  - asks POST /v1/recommend for a batch and checks it equals the single answers;
  - parses GET /metrics with prometheus_client's own parser and checks the request counter, the
    latency histogram (cumulative buckets, +Inf equals _count) and the batch-size histogram;
  - sends SIGTERM and expects exit status 0.
The server is always stopped (also on failure).

usage: tools/client/check_serve.py EXPORT_DIR --recforge build/release/recforge [--users 40]
Exits 0 when everything holds, 1 with the first difference otherwise.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import numpy as np
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"check_serve: Python module {e.name!r} is missing; run tools/setup.sh to create "
             f"or update .venv, then use .venv/bin/python")

EPS32 = np.finfo(np.float32).eps


def fail(msg):
    print(f"check_serve: {msg}", file=sys.stderr)
    sys.exit(1)


def ids(path):
    """One id per line; the last line ends with a newline (the loader's reading)."""
    text = path.read_text(encoding="utf-8")
    return (text[:-1] if text.endswith("\n") else text).split("\n")


def load_export(path):
    root = Path(path)
    cur = root / "current"
    d = root / os.readlink(cur) if cur.is_symlink() else root
    users = np.load(d / "user_factors.npy").astype(np.float64)
    items = np.load(d / "item_factors.npy").astype(np.float64)
    indptr = np.load(d / "seen_indptr.npy")
    indices = np.load(d / "seen_indices.npy")
    uids = ids(d / "user_ids.txt")
    iids = ids(d / "item_ids.txt")
    manifest = json.loads((d / "manifest.json").read_text())
    return users, items, indptr, indices, uids, iids, manifest


def start_server(binary, export, log):
    # stderr goes to a file: a pipe nobody reads would block the server once full.
    proc = subprocess.Popen([binary, "serve", export, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline().strip()
    prefix = "recforge serve: listening on http://"
    if not line.startswith(prefix):
        proc.kill()
        proc.wait()
        fail(f"the first stdout line is {line!r}; expected {prefix}HOST:PORT")
    host, port = line[len(prefix):].rsplit(":", 1)
    return proc, host, int(port)


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export")
    ap.add_argument("--recforge", required=True)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()

    U, I, indptr, indices, uids, iids, manifest = load_export(a.export)
    if manifest.get("metric") != "inner_product":
        fail(f"this check scores by inner product; the export's metric is {manifest.get('metric')}")
    k = a.k
    log = tempfile.TemporaryFile(mode="w+")
    proc, host, port = start_server(a.recforge, a.export, log)
    try:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        for _ in range(200):
            status, _ = request(conn, "GET", "/readyz")
            if status == 200:
                break
            time.sleep(0.05)
        else:
            fail("/readyz did not become 200 within 10 s")
        sock = conn.sock  # the same socket must carry every request (keep-alive)

        rng = np.random.default_rng(3)
        rows = rng.choice(len(uids), size=min(a.users, len(uids)), replace=False)
        answers = {}
        for u in rows:
            uid = uids[u]
            status, body = request(conn, "GET", f"/v1/recommend?user={uid}&k={k}")
            if status != 200:
                fail(f"GET /v1/recommend user {uid}: status {status}: {body[:300]!r}")
            got = json.loads(body)
            if got.get("user") != uid:
                fail(f"user {uid}: the answer names user {got.get('user')!r}")
            seen = set(indices[indptr[u]:indptr[u + 1]].tolist())
            exact = I @ U[u]
            bound = 2.0 * U.shape[1] * EPS32 * (np.abs(I) @ np.abs(U[u])) + 1e-30
            eligible = np.array([j for j in range(len(iids)) if j not in seen])
            top = eligible[np.argsort(-exact[eligible], kind="stable")[:k]]
            pos = {iid: j for j, iid in enumerate(iids)}
            scores = []
            for e in got["items"]:
                j = pos.get(e["item"])
                if j is None or j in seen:
                    fail(f"user {uid}: item {e['item']!r} is unknown or seen")
                if abs(e["score"] - exact[j]) > bound[j]:
                    fail(f"user {uid}: item {e['item']} score {e['score']} differs from the "
                         f"double {exact[j]} by more than {bound[j]:.3g}")
                scores.append(e["score"])
            if len(scores) != len(top):
                fail(f"user {uid}: {len(scores)} items, expected {len(top)}")
            for r, (s, j) in enumerate(zip(scores, top)):
                if abs(s - exact[j]) > bound[j] + bound.max():
                    fail(f"user {uid}: rank {r} score {s}, the double top-k has {exact[j]}")
            answers[uid] = got["items"]
            if conn.sock is not sock:
                fail("the server closed the persistent connection between requests")

        batch = [uids[u] for u in rows[:8]]
        status, body = request(conn, "POST", "/v1/recommend", {"users": batch, "k": k})
        if status != 200:
            fail(f"POST /v1/recommend: status {status}: {body[:300]!r}")
        results = json.loads(body)["results"]
        for uid, res in zip(batch, results):
            if res["user"] != uid or res["items"] != answers[uid]:
                fail(f"POST batch: user {uid}'s list differs from its GET answer")

        status, body = request(conn, "GET", "/metrics")
        if status != 200:
            fail(f"GET /metrics: status {status}")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        need = ["recforge_http_requests", "recforge_http_request_duration_seconds",
                "recforge_batch_size"]
        for n in need:
            if n not in families:
                fail(f"/metrics has no family {n}; it has {sorted(families)}")
        ok = sum(s.value for s in families["recforge_http_requests"].samples
                 if s.name == "recforge_http_requests_total" and s.labels.get("code") == "200"
                 and "recommend" in s.labels.get("endpoint", ""))
        if ok < len(rows) + 1:
            fail(f"recforge_http_requests_total counts {ok} recommend requests with code 200; "
                 f"{len(rows) + 1} were answered")
        for fam in ("recforge_http_request_duration_seconds", "recforge_batch_size"):
            by_series = {}
            for s in families[fam].samples:
                key = tuple(sorted((kk, v) for kk, v in s.labels.items() if kk != "le"))
                by_series.setdefault(key, {"buckets": [], "count": None})
                if s.name.endswith("_bucket"):
                    by_series[key]["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    by_series[key]["count"] = s.value
            if not by_series:
                fail(f"{fam} has no series")
            for key, h in by_series.items():
                b = sorted(h["buckets"])
                if not b or b[-1][0] != float("inf"):
                    fail(f"{fam}{dict(key)}: no +Inf bucket")
                if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                    fail(f"{fam}{dict(key)}: buckets are not cumulative")
                if h["count"] is None or b[-1][1] != h["count"]:
                    fail(f"{fam}{dict(key)}: +Inf bucket {b[-1][1]} differs from _count "
                         f"{h['count']}")
        conn.close()

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("the server did not exit within 30 s of SIGTERM")
        if rc != 0:
            log.seek(0)
            fail(f"the server exited with status {rc} after SIGTERM; expected 0 "
                 f"(stderr: {log.read()[-2000:]})")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"check_serve: {len(rows)} users checked against NumPy, a batch, /metrics and SIGTERM")


if __name__ == "__main__":
    main()
