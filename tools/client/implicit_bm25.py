#!/usr/bin/env python3
"""implicit's BM25 recipe (``bm25_weight(train)`` then ALS) side by side with recforge.

docs/python.md says that recforge's ALS agrees closely with implicit's when alpha·c ≫ 1; BM25
weights are not ≫ 1 (their median is about 1.5 on MovieLens), and there the two objectives
part: implicit weighs an observed pair c (below the unobserved pairs' weight 1 when c < 1),
recforge c + 1 by default; ``observed_weight="replaced"`` (model.observed_weight) is implicit's
objective. This script measures both: implicit's ``train_test_split(0.8)`` of
MovieLens ml-latest-small (every rating as 1), ALS with 32 factors and 10 iterations on the
BM25-weighted and on the binary training matrix, precision@10 by ``ranking_metrics_at_k``, for
seeds 1, 2 and 3 (each fit is seeded and deterministic), then the means.

usage: PYTHONPATH=build/cpu/python OPENBLAS_NUM_THREADS=1 .venv/bin/python \\
           tools/client/implicit_bm25.py [--data DIR]
"""

import argparse
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(here, "../../../shared/data/ml-latest-small"))
    args = ap.parse_args()
    path = os.path.join(args.data, "ratings.csv")
    if not os.path.exists(path):
        sys.exit(f"{path}: not found; give --data DIR with MovieLens ml-latest-small")
    import implicit.cpu.als
    import recforge
    from recforge.evaluation import ranking_metrics_at_k, train_test_split
    from recforge.nearest_neighbours import bm25_weight

    warnings.filterwarnings("ignore", module="implicit")  # its OpenBLAS thread advice
    d = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1))
    _, u = np.unique(d[:, 0], return_inverse=True)
    _, i = np.unique(d[:, 1], return_inverse=True)
    m = sp.csr_matrix((np.ones(len(d), np.float32), (u, i)))
    print(f"{path}: {m.shape[0]} users x {m.shape[1]} items, {m.nnz} ratings (as 1)")
    results = {}
    for seed in (1, 2, 3):
        train, test = train_test_split(m, 0.8, random_state=seed)
        weighted = bm25_weight(train).tocsr().astype(np.float32)
        if seed == 1:
            q = np.percentile(weighted.data, [5, 50, 95])
            print(f"BM25 weights: 5th percentile {q[0]:.2f}, median {q[1]:.2f}, 95th {q[2]:.2f}")
        for input_name, x in (("bm25", weighted), ("binary", train)):
            for lib, make in (
                    ("implicit", lambda: implicit.cpu.als.AlternatingLeastSquares(
                        factors=32, iterations=10, random_state=seed)),
                    ("recforge", lambda: recforge.AlternatingLeastSquares(
                        factors=32, iterations=10, random_state=seed, device="cpu")),
                    ("recforge replaced", lambda: recforge.AlternatingLeastSquares(
                        factors=32, iterations=10, random_state=seed, device="cpu",
                        observed_weight="replaced"))):
                model = make()
                model.fit(x, show_progress=False)
                p = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)["precision"]
                results.setdefault((input_name, lib), []).append(p)
                print(f"seed {seed}  {input_name:6}  {lib:17}  precision@10 {p:.4f}", flush=True)
    print("\ninput   library   precision@10, mean ± std over seeds 1-3")
    for (input_name, lib), v in results.items():
        print(f"{input_name:6}  {lib:17}  {np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}")


if __name__ == "__main__":
    main()
