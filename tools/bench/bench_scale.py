#!/usr/bin/env python3
"""A model past 2^31 factor values: 2.15M synthetic users x 1,000 items x 1024 factors (2.2e9
user-factor floats, 8.2 GiB), trained (BPR, one SGD epoch; or iALS, one iteration), evaluated on
every user's last interaction, exported, re-evaluated (`recforge evaluate`), answered by `recforge
recommend` from the export and by `recforge serve`. Each step's peak anonymous and file-backed
RSS (sampled from /proc every 0.2 s) and seconds are printed; the lists of users on both sides of
row 2^31 / 1024 = 2,097,152 are checked against NumPy (float64 scores of the exported factors,
the user's training items masked): the same items in the same order, scores within 1e-6.

  .venv/bin/python tools/bench/bench_scale.py --recforge build/cpu/recforge --out /tmp/scale \\
      [--model bpr|ials] [--users 2150000] [--factors 1024]

It needs about 10 GiB of memory and 20 GiB of disk under --out, which must not exist yet.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

CONFIG = """run:
  name: {model}
  dir: {out}/runs
  progress: lines
data:
  format: synthetic
synthetic:
  users: {users}
  items: 1000
  interactions: {interactions}
  communities: 16
  seed: 3
split:
  method: leave_last
  validation_fraction: 0
model:
  type: {model}
  factors: {factors}
  iterations: 1
{model_extra}eval:
  ks: [20]
  metric: ndcg@20
export:
  enabled: true
"""


def peak_run(cmd, log):
    """Runs cmd (output to log); returns (exit status, seconds, peak RssAnon MiB, peak RssFile MiB)."""
    t0 = time.time()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        anon = filed = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as s:
                    for line in s:
                        if line.startswith("RssAnon:"):
                            anon = max(anon, int(line.split()[1]))
                        elif line.startswith("RssFile:"):
                            filed = max(filed, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.2)
    return p.returncode, time.time() - t0, anon / 1024, filed / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recforge", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", choices=["bpr", "ials"], default="bpr")
    ap.add_argument("--users", type=int, default=2_150_000)
    ap.add_argument("--factors", type=int, default=1024)
    a = ap.parse_args()
    if os.path.exists(a.out):
        sys.exit(f"{a.out}: exists; give a new directory")
    os.makedirs(a.out)
    extra = "  optimizer: sgd\n  learning_rate: 0.05\n" if a.model == "bpr" else ""
    cfg = f"{a.out}/scale.yaml"
    with open(cfg, "w") as f:
        f.write(CONFIG.format(model=a.model, out=a.out, users=a.users, interactions=10 * a.users,
                              factors=a.factors, model_extra=extra))
    run = f"{a.out}/runs/{a.model}"
    export = f"{run}/export"
    steps = [("train", [a.recforge, "train", cfg]), ("evaluate", [a.recforge, "evaluate", run])]
    for name, cmd in steps:
        rc, secs, anon, filed = peak_run(cmd, f"{a.out}/{name}.log")
        print(f"{name}: exit {rc}, {secs:.1f} s, peak RssAnon {anon:,.0f} MiB, RssFile {filed:,.0f} MiB")
        if rc != 0:
            sys.exit(open(f"{a.out}/{name}.log").read()[-2000:])
    print("test:", json.load(open(f"{run}/metrics.json"))["test"])

    users = np.load(f"{export}/user_factors.npy", mmap_mode="r")
    items = np.load(f"{export}/item_factors.npy").astype(np.float64)
    user_ids = open(f"{export}/user_ids.txt").read().split("\n")
    item_ids = open(f"{export}/item_ids.txt").read().split("\n")
    indptr = np.load(f"{export}/seen_indptr.npy")
    seen = np.load(f"{export}/seen_indices.npy")
    print(f"user factors {users.shape}: {users.shape[0] * users.shape[1]:,} values "
          f"(2^31 = {2**31:,})")
    edge = 2**31 // a.factors
    rows = sorted({r for r in (5, edge - 1, edge, users.shape[0] - 1) if 0 <= r < users.shape[0]})

    def expected(r, k=5):
        s = items @ users[r].astype(np.float64)
        s[seen[indptr[r]:indptr[r + 1]]] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        return [item_ids[t] for t in top], [float(s[t]) for t in top]

    bad = 0
    for r in rows:
        want_items, want_scores = expected(r)
        out = subprocess.run([a.recforge, "recommend", export, "--user", user_ids[r], "--k", "5"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
        got = [l.split(",") for l in out if l[:1].isdigit()]
        ok = [g[2] for g in got] == want_items and all(
            abs(float(g[3]) - w) <= 1e-6 for g, w in zip(got, want_scores))
        bad += not ok
        print(f"row {r:,}: recommend {'equals' if ok else 'DIFFERS from'} NumPy {want_items}")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    srv = subprocess.Popen([a.recforge, "serve", export, "--listen", f"127.0.0.1:{port}"],
                           stdout=open(f"{a.out}/serve.log", "w"), stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                if srv.poll() is not None or time.time() - t0 > 300:
                    sys.exit("serve did not become ready: " + open(f"{a.out}/serve.log").read())
                time.sleep(0.2)
        print(f"serve: ready in {time.time() - t0:.1f} s")
        r = rows[-1]
        body = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v1/recommend?user={user_ids[r]}&k=5"))
        ok = [i["item"] for i in body["items"]] == expected(r)[0]
        bad += not ok
        print(f"serve row {r:,}: {'equals' if ok else 'DIFFERS from'} NumPy")
    finally:
        srv.terminate()
        srv.wait()
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
