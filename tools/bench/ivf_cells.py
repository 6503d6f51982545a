#!/usr/bin/env python3
"""Why an inner-product IVF index needs many probes on a trained model: where the exact top-k
items of sampled users lie, by their norm and by the rank of their IVF cell among the user's cells.

Reads a run directory (or an export) the way a serving client would (numpy.load of
user_factors.npy and item_factors.npy), builds a stock-Faiss IndexIVFFlat with inner product
over the item factors, and prints:
  - percentiles of the item norms, and where the exact top-k items sit among them;
  - for each exact top-k item, the rank of its cell among the query's cells (ordered by the
    query's inner product with the centroids), as percentiles: the nprobe needed to reach it;
  - recall@k of the IVF lists at a few nprobe values.
The exact lists here rank all items (training items are not masked, unlike recforge index-bench),
so the figures describe the geometry, not the served lists.

  .venv/bin/python tools/bench/ivf_cells.py RUN_DIR [--nlist 2048] [--users 500] [--k 20]
"""
import argparse
import os
import sys

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--nlist", type=int, default=2048)
    p.add_argument("--users", type=int, default=500)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--train-sample", type=int, default=200000,
                   help="items the k-means of the coarse quantizer is trained on")
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import faiss

    paths = [os.path.join(args.run_dir, f) for f in ("user_factors.npy", "item_factors.npy")]
    for path in paths:
        if not os.path.exists(path):
            sys.exit(f"ivf_cells.py: {path} does not exist (expected a run or export directory "
                     "holding user_factors.npy and item_factors.npy)")
    users = np.load(paths[0])
    items = np.ascontiguousarray(np.load(paths[1]), dtype=np.float32)
    if users.shape[1] != items.shape[1]:
        sys.exit(f"ivf_cells.py: user factors have {users.shape[1]} columns, item factors "
                 f"{items.shape[1]}; expected the same")
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    queries = np.ascontiguousarray(
        users[rng.choice(users.shape[0], min(args.users, users.shape[0]), replace=False)],
        dtype=np.float32)

    norms = np.linalg.norm(items, axis=1)
    # Exact top-k, 64 users at a time (a whole score matrix of 500 users × 1.3M items is 2.6 GB).
    top = np.concatenate([
        np.argpartition(-(queries[i:i + 64] @ items.T), args.k, axis=1)[:, :args.k]
        for i in range(0, queries.shape[0], 64)])
    top_norms = norms[top]
    share_below = float(np.mean(norms < np.median(top_norms)) * 100)
    pct = [50, 90, 99, 99.9]
    print(f"{args.run_dir}: {items.shape[0]:,} items, {items.shape[1]} dimensions, "
          f"{queries.shape[0]} users, k {args.k}")
    print("item norm percentiles 50/90/99/99.9: "
          + " / ".join(f"{v:.3f}" for v in np.percentile(norms, pct)))
    print(f"exact top-{args.k} items: median norm {np.median(top_norms):.3f} "
          f"(above {share_below:.2f}% of all items)")

    d = items.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, args.nlist, faiss.METRIC_INNER_PRODUCT)
    sample = items[rng.choice(items.shape[0], min(args.train_sample, items.shape[0]),
                              replace=False)]
    index.train(sample)
    index.add(items)

    # The rank of each top item's cell among the query's cells.
    _, cell_order = quantizer.search(queries, args.nlist)
    rank_of_cell = np.empty_like(cell_order)
    rows = np.arange(cell_order.shape[0])[:, None]
    rank_of_cell[rows, cell_order] = np.arange(args.nlist)[None, :]
    _, item_cell = quantizer.search(items[top.ravel()], 1)
    ranks = rank_of_cell[np.repeat(rows[:, 0], args.k), item_cell[:, 0]]
    print(f"rank of the cell holding an exact top-{args.k} item, percentiles 50/90/99: "
          + " / ".join(f"{v:.0f}" for v in np.percentile(ranks, [50, 90, 99]))
          + f" (nprobe r+1 reaches it; nlist {args.nlist})")
    far = ranks >= 16
    if far.any():
        print(f"items beyond the 16 best cells: {far.mean() * 100:.1f}%, median norm "
              f"{np.median(top_norms.ravel()[far]):.3f} (within: "
              f"{np.median(top_norms.ravel()[~far]):.3f})")

    for nprobe in args.nprobe:
        index.nprobe = nprobe
        _, got = index.search(queries, args.k)
        recall = np.mean([len(set(got[i]) & set(top[i])) / args.k for i in range(len(got))])
        print(f"nprobe {nprobe}: recall@{args.k} {recall:.4f}")


if __name__ == "__main__":
    main()
