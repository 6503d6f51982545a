#!/usr/bin/env python3
"""Open a recforge export exactly as a serving fleet would, and check it against recforge.

The files are read from the version directory that EXPORT/current names, resolved once (an
export written meanwhile replaces `current` but cannot mix its files into this read); an export
of the flat layout of earlier recforge builds is read from EXPORT itself.

Only NumPy and stock faiss-cpu from PyPI are used to read the artifact: the manifest's SHA-256
and sizes are verified with hashlib, the embeddings and seen lists are read with numpy.load, the
index with faiss.read_index. Every user's top-k is then computed twice in Python, through the
index (over-fetch by the user's seen count, drop seen items) and by direct NumPy scoring, and
compared with `recforge recommend EXPORT --all` and `--all --exact` (ids equal, scores within
1e-4), and for a few users with the `--user` output.

usage: tools/client/check_artifact.py EXPORT_DIR --recforge build/release/recforge [--k 10]

Exits 0 when everything matches, 1 with the first difference otherwise.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import faiss
    import numpy as np
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"check_artifact: Python module {e.name!r} is missing; run tools/setup.sh to create "
             f"or update .venv, then use .venv/bin/python")

ATOL, RTOL = 1e-4, 1e-5


def fail(message):
    print(f"check_artifact: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def resolve(export):
    """The directory that holds the export's files: EXPORT/<target of current>, read once."""
    link = export / "current"
    if link.is_symlink():
        target = os.readlink(link)
        if "/" in target:
            fail(f"{link}: points to {target!r}, expected a version directory v-<N> beside it")
        return export / target
    return export


def read_manifest(root):
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("format") != "recforge-export" or manifest.get("format_version") != 1:
        fail(f"{root}/manifest.json: not a recforge export of format_version 1")
    for name, entry in manifest["files"].items():
        data = (root / name).read_bytes()
        if len(data) != entry["bytes"]:
            fail(f"{root}/{name}: {len(data)} bytes, manifest says {entry['bytes']}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            fail(f"{root}/{name}: SHA-256 differs from the manifest")
    return manifest


def load(root, manifest):
    counts = manifest["counts"]
    items = np.load(root / "item_factors.npy")
    users = np.load(root / "user_factors.npy")
    indptr = np.load(root / "seen_indptr.npy")
    indices = np.load(root / "seen_indices.npy")
    for name, arr, dtype, shape in [
        ("item_factors.npy", items, np.float32, (counts["items"], counts["dim"])),
        ("user_factors.npy", users, np.float32, (counts["users"], counts["dim"])),
        ("seen_indptr.npy", indptr, np.int64, (counts["users"] + 1,)),
        ("seen_indices.npy", indices, np.int32, (counts["seen"],)),
    ]:
        if arr.dtype != dtype or arr.shape != shape or not arr.flags["C_CONTIGUOUS"]:
            fail(f"{name}: {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {shape} C order")
    user_ids = (root / "user_ids.txt").read_text().split("\n")[:-1]
    item_ids = (root / "item_ids.txt").read_text().split("\n")[:-1]
    if len(user_ids) != counts["users"] or len(item_ids) != counts["items"]:
        fail("id lists do not match the manifest's counts")
    index = faiss.read_index(str(root / "index.faiss"))
    if index.ntotal != counts["items"] or index.d != counts["dim"]:
        fail(f"index.faiss: {index.ntotal} vectors of dimension {index.d}, manifest says "
             f"{counts['items']} of {counts['dim']}")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        fail("index.faiss: not an inner-product index")
    return items, users, indptr, indices, user_ids, item_ids, index


def python_lists(items, users, indptr, indices, index, k, cosine):
    """Top-k (item rows, scores) per user through the index and by direct scoring."""
    n_users, n_items = users.shape[0], items.shape[0]
    k = min(k, n_items)
    q = users.copy()
    it = items.copy()
    if cosine:  # the index holds unit vectors; queries are normalized the same way
        faiss.normalize_L2(q)
        faiss.normalize_L2(it)
    seen_counts = np.diff(indptr)
    fetch = int(min(n_items, k + seen_counts.max(initial=0)))
    dist, lab = index.search(q, fetch)
    scores = q @ it.T
    ann, exact = [], []
    for u in range(n_users):
        seen = set(indices[indptr[u]:indptr[u + 1]].tolist())
        ann.append([(int(i), float(s)) for i, s in zip(lab[u], dist[u])
                    if i >= 0 and int(i) not in seen][:k])
        s = scores[u].astype(np.float64)
        s[list(seen)] = -np.inf
        order = np.lexsort((np.arange(n_items), -s))  # score descending, then lower row
        exact.append([(int(i), float(s[i])) for i in order[:k] if np.isfinite(s[i])])
    return ann, exact


def recforge_all(binary, root, k, exact):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recs.csv"
        cmd = [binary, "recommend", str(root), "--all", "--out", str(out), "--k", str(k)]
        if exact:
            cmd.append("--exact")
        subprocess.run(cmd, check=True, capture_output=True)
        lists = {}
        with open(out, newline="") as f:
            for row in csv.DictReader(f):
                lists.setdefault(row["user"], []).append((row["item"], float(row["score"])))
        return lists


def recforge_user(binary, root, user, k, exact):
    cmd = [binary, "recommend", str(root), "--user", user, "--k", str(k)]
    if exact:
        cmd.append("--exact")
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    # stdout is CSV user,rank,item,score with a header (warnings go to stderr).
    return [(row["item"], float(row["score"]))
            for row in csv.DictReader(io.StringIO(res.stdout))]


def compare(what, user, mine, theirs):
    """mine: [(item id, score)], theirs: [(item id, score)] from recforge."""
    if [i for i, _ in mine] != [i for i, _ in theirs]:
        fail(f"{what}, user {user}: items {[i for i, _ in mine]} (Python) != "
             f"{[i for i, _ in theirs]} (recforge)")
    for (_, a), (_, b) in zip(mine, theirs):
        if abs(a - b) > ATOL + RTOL * abs(b):
            fail(f"{what}, user {user}: score {a} (Python) != {b} (recforge)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, help="export directory (recforge export --out)")
    ap.add_argument("--recforge", required=True, help="the recforge binary")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--users", type=int, default=5, help="users also checked through --user")
    args = ap.parse_args()

    root = args.export
    files = resolve(root)
    manifest = read_manifest(files)
    items, users, indptr, indices, user_ids, item_ids, index = load(files, manifest)
    cosine = manifest["metric"] == "cosine"
    kind = manifest["index"]["type"]
    ann, exact = python_lists(items, users, indptr, indices, index, args.k, cosine)
    named = lambda lst: [(item_ids[i], s) for i, s in lst]  # noqa: E731

    theirs_exact = recforge_all(args.recforge, root, args.k, exact=True)
    theirs_ann = recforge_all(args.recforge, root, args.k, exact=False)
    for u, uid in enumerate(user_ids):
        compare("exact", uid, named(exact[u]), theirs_exact.get(uid, []))
        if kind != "hnsw":  # HNSW's search depends on k, so over-fetching may reorder it
            compare(f"{kind} index", uid, named(ann[u]), theirs_ann.get(uid, []))
    # The per-user output of `recommend --user` is the same list.
    heavy = int(np.argmax(np.diff(indptr)))  # the user with the most seen items
    sample = sorted({heavy, *np.random.default_rng(0).choice(len(user_ids), args.users).tolist()})
    for u in sample:
        compare("--user --exact", user_ids[u], named(exact[u]),
                recforge_user(args.recforge, root, user_ids[u], args.k, exact=True))
        if kind != "hnsw":
            compare("--user", user_ids[u], named(ann[u]),
                    recforge_user(args.recforge, root, user_ids[u], args.k, exact=False))
    overlap = np.mean([len({i for i, _ in a} & {i for i, _ in e}) / max(1, len(e))
                       for a, e in zip(ann, exact)])
    compared = "exact and index" if kind != "hnsw" else "exact; HNSW lists depend on k, not compared"
    print(f"check_artifact: OK: {files} ({kind}, {manifest['metric']}, faiss {faiss.__version__}): "
          f"{len(user_ids)} users x top-{args.k} equal to recforge ({compared}); "
          f"index recall@{args.k} vs exact {overlap:.4f}")


if __name__ == "__main__":
    main()
