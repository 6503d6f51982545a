#!/usr/bin/env python3
"""implicit's README example, run side by side with implicit 0.7 and recforge.

The example: initialise ``AlternatingLeastSquares(factors=50)``, fit it on a users × items
matrix, recommend for a user, find items similar to an item. Both libraries run it on the same
matrix with the same arguments; the script prints both outputs and compares them: overlap of
the recommendation lists and of the similar-item lists, held-out recall@10 of both on a simple
split (2 interactions of each user with at least 5 held out, seeded), and fit times.

Data: MovieLens ml-latest-small (ratings.csv, ratings as confidences) from
``<source>/../shared/data/ml-latest-small`` or ``--data DIR`` when present, else a synthetic
matrix with planted communities (the script says which).

``--check`` exits 1 unless recforge's held-out recall@10 is at least 0.9 × implicit's. Why this
criterion and why it is not flaky: both fits are seeded and deterministic (per-row solves; one
OpenBLAS thread for implicit, a fixed thread count for recforge), so every run on the same data
and build gives the same two numbers; the two models are the same iALS objective up to the
weight of an observed pair (implicit: alpha·c, recforge: alpha·c + 1, see docs/python.md), so
their recall differs by a few percent of itself, and 0.9× leaves room for that difference while
still failing when recforge's model or its retrieval is broken (a broken one scores near
popularity, far below 0.9×). The list overlaps are printed, not checked: near-tied items may
swap between two different solvers.

usage: tools/client/implicit_readme.py [--data DIR] [--check]
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it

try:
    import numpy as np
    import scipy.sparse as sp
    import implicit
    import recforge
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"implicit_readme: Python module {e.name!r} is missing; run tools/setup.sh and use "
             f".venv/bin/python (with PYTHONPATH=build/cpu/python for a build tree)")

THREADS = 2


def movielens(directory):
    users, items, values = [], [], []
    with open(directory / "ratings.csv", newline="") as f:
        for row in csv.DictReader(f):
            users.append(int(row["userId"]))
            items.append(int(row["movieId"]))
            values.append(float(row["rating"]))
    titles = {}
    if (directory / "movies.csv").exists():
        with open(directory / "movies.csv", newline="") as f:
            titles = {int(r["movieId"]): r["title"] for r in csv.DictReader(f)}
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    m = sp.csr_matrix((np.array(values, np.float32), (u, i)),
                      shape=(len(user_ids), len(item_ids)))
    names = [titles.get(int(x), str(x)) for x in item_ids]
    return m, names


def synthetic(n_users=2000, n_items=1000, groups=20, per_user=30, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for u in range(n_users):
        own = np.arange(u % groups, n_items, groups)
        picks = set(rng.choice(own, size=per_user - 5, replace=False).tolist())
        picks |= set(rng.choice(n_items, size=5, replace=False).tolist())
        rows += [u] * len(picks)
        cols += sorted(picks)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return m, [f"item {i}" for i in range(n_items)]


def split(m, seed=0):
    rng = np.random.default_rng(seed)
    coo = m.tocoo()
    order = np.argsort(coo.row, kind="stable")
    test = np.zeros(len(coo.data), bool)
    starts = np.searchsorted(coo.row[order], np.arange(m.shape[0] + 1))
    for u in range(m.shape[0]):
        e = order[starts[u]:starts[u + 1]]
        if len(e) >= 5:
            test[rng.choice(e, size=2, replace=False)] = True
    train = sp.csr_matrix((coo.data[~test], (coo.row[~test], coo.col[~test])), shape=m.shape)
    return train, coo.row[test], coo.col[test]


def recall_at_10(model, train, rows, cols):
    users = np.unique(rows)
    ids, _ = model.recommend(users, train[users], N=10)
    pos = {u: k for k, u in enumerate(users)}
    hits = sum(int(c in set(ids[pos[r]].tolist())) for r, c in zip(rows, cols))
    return hits / len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = Path(os.environ.get("RECFORGE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
    ap.add_argument("--data", type=Path, default=source / ".." / "shared" / "data" / "ml-latest-small")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    if (args.data / "ratings.csv").exists():
        user_items, names = movielens(args.data)
        print(f"data: MovieLens ml-latest-small from {args.data.resolve()}")
    else:
        user_items, names = synthetic()
        print(f"data: synthetic planted communities ({args.data} has no ratings.csv)")
    print(f"      {user_items.shape[0]} users × {user_items.shape[1]} items, "
          f"{user_items.nnz} interactions")
    train, rows, cols = split(user_items)

    userid, itemid = 0, int(np.argmax(np.asarray(train.getnnz(axis=0))))
    results = {}
    for name, make in (
        ("implicit", lambda: implicit.cpu.als.AlternatingLeastSquares(
            factors=50, random_state=0, num_threads=THREADS)),
        ("recforge", lambda: recforge.AlternatingLeastSquares(
            factors=50, random_state=0, num_threads=THREADS, device="cpu")),
    ):
        model = make()
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        seconds = time.perf_counter() - start
        ids, scores = model.recommend(userid, train[userid])
        similar, sim_scores = model.similar_items(itemid)
        r = recall_at_10(model, train, rows, cols)
        results[name] = (ids, similar, r, seconds)
        print(f"\n{name}: fit {seconds:.2f} s, held-out recall@10 {r:.4f}")
        print(f"  recommend(user {userid}):")
        for i, s in zip(ids, scores):
            print(f"    {s:8.4f}  {names[i]}")
        print(f"  similar_items({names[itemid]}):")
        for i, s in zip(similar, sim_scores):
            print(f"    {s:8.4f}  {names[i]}")

    (a_ids, a_sim, a_r, a_t), (b_ids, b_sim, b_r, b_t) = results["implicit"], results["recforge"]
    print("\ncomparison:")
    print(f"  recommendation overlap: {len(set(a_ids) & set(b_ids))}/10")
    print(f"  similar-item overlap:   {len(set(a_sim) & set(b_sim))}/10")
    print(f"  held-out recall@10:     implicit {a_r:.4f}, recforge {b_r:.4f} "
          f"(ratio {b_r / a_r if a_r else float('nan'):.3f})")
    print(f"  fit time:               implicit {a_t:.2f} s, recforge {b_t:.2f} s")
    if args.check and not b_r >= 0.9 * a_r:
        print(f"implicit_readme: FAIL: recforge's recall@10 {b_r:.4f} is below 0.9 × implicit's "
              f"{a_r:.4f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
