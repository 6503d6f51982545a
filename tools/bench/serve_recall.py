#!/usr/bin/env python3
"""Recall@k of an approximate export's lists against exact lists, per user, averaged.

Both inputs are CSVs of `recforge recommend EXPORT --all --k K --format csv` (user,rank,item,score
with a header), e.g. of a flat (exact) export and an HNSW export of the same run. Training items
are masked in both (recommend's default), so this is the recall that a served user sees. A user's
recall is |approx top-k ∩ exact top-k| / |exact top-k|; the mean is over the users of the exact
file (a user missing from the approximate file counts 0).

  .venv/bin/python tools/bench/serve_recall.py exact.csv approx.csv [--k 20] [--min 0.95]

Prints one line `recall@K MEAN users N below_min M min MIN`; with --min, exits 1 when the mean is
below it. Standard library only.
"""
import argparse
import csv
import sys
from collections import defaultdict


def read_lists(path, k):
    lists = defaultdict(set)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["user", "rank", "item", "score"]:
            sys.exit(f"serve_recall: {path}: header {header}; expected user,rank,item,score "
                     "(recforge recommend --all --format csv)")
        for line, row in enumerate(reader, start=2):
            if len(row) != 4:
                sys.exit(f"serve_recall: {path}:{line}: {len(row)} fields; expected 4")
            try:
                rank = int(row[1])
            except ValueError:
                sys.exit(f"serve_recall: {path}:{line}: rank {row[1]!r} is not an integer")
            if rank <= k:
                lists[row[0]].add(row[2])
    return lists


def recall(exact, approx):
    """Recall of each user of `exact` (one with an empty exact list is left out)."""
    per_user = {}
    for user, truth in exact.items():
        if truth:
            per_user[user] = len(truth & approx.get(user, set())) / len(truth)
    return per_user


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("exact")
    p.add_argument("approx")
    p.add_argument("--k", type=int, default=20, help="cutoff (ranks 1..k of each file; default 20)")
    p.add_argument("--min", type=float, default=None, help="exit 1 when the mean recall is below")
    a = p.parse_args()
    if a.k < 1:
        sys.exit("serve_recall: --k must be at least 1")
    per_user = recall(read_lists(a.exact, a.k), read_lists(a.approx, a.k))
    if not per_user:
        sys.exit(f"serve_recall: {a.exact}: no user lists")
    values = list(per_user.values())
    mean = sum(values) / len(values)
    floor = a.min if a.min is not None else 0.95
    below = sum(1 for v in values if v < floor)
    print(f"recall@{a.k} {mean:.4f} users {len(values)} below_{floor:g} {below} min {min(values):.4f}")
    if a.min is not None and mean < a.min:
        sys.exit(1)


if __name__ == "__main__":
    main()
