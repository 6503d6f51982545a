#!/usr/bin/env python3
"""The Python package's overhead on Gowalla (docs/benchmarks.md, "Python package").

1. Training: `recforge train configs/gowalla-ials.yaml` (the CLI; its run.json train_seconds:
   init and the 4 iterations, each followed by the loss) against
   `recforge.AlternatingLeastSquares(...).fit(user_items)` from Python with the same
   hyperparameters, seed and thread count on the same matrix (fit's wall time, the conversion of
   the SciPy matrix included; with calculate_training_loss=True, so that both compute the loss
   after each iteration as the CLI does, and without). CLI and Python runs alternate, `--reps`
   times each, so that drift of the machine hits both alike; medians are reported.
2. Recommending for every user in one call: `model.recommend(np.arange(n_users), user_items,
   N=20)` of recforge and of implicit 0.7's CPU ALS given the same factors (float32 copies),
   training items filtered by both, and the fraction of identical lists.
3. One call per query (what a service or a notebook loop does): `recommend` of one user (their
   row filtered), `similar_items` of one item and `similar_users` of one user, `--calls`
   random queries each, and `recalculate_user` of one user's row and `recalculate_item` of one
   item's column (fold-ins: each library
   solves its own objective, recforge's with the config's reg_exp and unobserved weight, so only
   the times compare), run as blocks of every query per library, twice in turn, each block
   after one warm-up call (implicit caches its norms; so does recforge, see docs/python.md);
   median milliseconds per call.
4. Evaluation: `ranking_metrics_at_k(model, train, test, K=20)` of `recforge.evaluation` on the
   recforge model against `implicit.evaluation`'s on implicit's model with the same factors, on
   Gowalla's test split; the metrics of both and their times (implicit 0.7.2's function is given
   a training matrix that accepts its memoryview index, which SciPy 1.17 refuses otherwise).

The id numbering is the CLI's (integer ids in numeric order, docs/data.md), so that both train
on the same matrix.

usage: .venv/bin/python tools/bench/bench_python.py --recforge build/release/recforge
           [--data ../shared/data/gowalla] [--reps 3] [--threads 2] [--skip-train] [--calls 200]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse

import recforge

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ials import read_adjacency  # noqa: E402  (the peer benchmark's Gowalla reader)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", required=True, help="the recforge binary (CLI)")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/gowalla"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-train", action="store_true", help="only the query comparisons")
    ap.add_argument("--calls", type=int, default=200, help="queries per one-call-each comparison")
    args = ap.parse_args()
    config = ROOT / "configs/gowalla-ials.yaml"
    train = Path(args.data) / "train.txt"
    if not train.exists():
        sys.exit(f"bench_python: {train} is missing (the Gowalla split, ../shared/data/gowalla)")

    u, i = read_adjacency(train)
    uids, urow = np.unique(u, return_inverse=True)  # numeric order, as the CLI numbers int ids
    iids, icol = np.unique(i, return_inverse=True)
    m = scipy.sparse.csr_matrix((np.ones(len(u), np.float32), (urow, icol)),
                                shape=(len(uids), len(iids)))
    m.sum_duplicates()
    # data.duplicates: sum (the default), as sum_duplicates does
    print(f"gowalla train: {m.shape[0]} users x {m.shape[1]} items, {m.nnz} interactions; "
          f"threads {args.threads}; recforge {recforge.__version__}")

    params = dict(factors=1024, regularization=0.5, reg_exp=0.5, unobserved_weight=0.05,
                  iterations=4, alpha=1.0, random_state=42, num_threads=args.threads)
    model = None
    if not args.skip_train:
        cli, py_loss, py_noloss = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.reps):
                name = f"bench-{rep}"
                subprocess.run([args.recforge, "train", str(config), "--set", f"run.dir={tmp}",
                                "--set", f"run.name={name}", "--set", "export.enabled=false",
                                "--set", "run.progress=off", "--set", f"train.threads={args.threads}",
                                "--set", f"data.path={train}",
                                "--set", f"data.test_path={Path(args.data) / 'test.txt'}"],
                               check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
                run = json.loads((Path(tmp) / name / "run.json").read_text())
                cli.append(run["train_seconds"])
                for loss, out in ((True, py_loss), (False, py_noloss)):
                    model = recforge.AlternatingLeastSquares(calculate_training_loss=loss, **params)
                    t0 = time.perf_counter()
                    model.fit(m, show_progress=False)
                    out.append(time.perf_counter() - t0)
                print(f"rep {rep + 1}: CLI train_seconds {cli[-1]:.2f} s; Python fit "
                      f"{py_loss[-1]:.2f} s with the loss, {py_noloss[-1]:.2f} s without",
                      flush=True)
        c, pl, pn = (statistics.median(x) for x in (cli, py_loss, py_noloss))
        print(f"median of {args.reps}: CLI {c:.2f} s; Python fit {pl:.2f} s with the loss "
              f"({(pl / c - 1) * 100:+.1f}%), {pn:.2f} s without ({(pn / c - 1) * 100:+.1f}%)")
    if model is None:
        model = recforge.AlternatingLeastSquares(**params)
        model.fit(m, show_progress=False)

    # Recommending for every user in one call, recforge against implicit on the same factors.
    from implicit.cpu.als import AlternatingLeastSquares as ImplicitALS
    users = np.arange(m.shape[0])
    t0 = time.perf_counter()
    ids_r, scores_r = model.recommend(users, m, N=20)
    t_r = time.perf_counter() - t0
    imp = ImplicitALS(factors=model.item_factors.shape[1], num_threads=args.threads)
    imp.user_factors = np.array(model.user_factors, dtype=np.float32)
    imp.item_factors = np.array(model.item_factors, dtype=np.float32)
    t0 = time.perf_counter()
    ids_i, scores_i = imp.recommend(users, m, N=20)
    t_i = time.perf_counter() - t0
    same = float(np.mean(np.all(ids_r == ids_i, axis=1)))
    print(f"recommend N=20 for all {len(users)} users ({model.item_factors.shape[1]} factors, "
          f"training items filtered): recforge {t_r:.2f} s, implicit {t_i:.2f} s "
          f"({t_i / t_r:.2f}x); identical lists {same:.4f}; max score difference "
          f"{np.max(np.abs(scores_r - scores_i)):.2e}")

    # One query per call, alternating between the two libraries.
    rng = np.random.default_rng(7)
    qu = rng.integers(0, m.shape[0], args.calls)
    qi = rng.integers(0, m.shape[1], args.calls)
    item_users = m.T.tocsr()
    cases = (("recommend(user, row, N=20)", lambda lib, q: lib.recommend(int(q), m[int(q)], N=20), qu),
             ("similar_items(item, N=20)", lambda lib, q: lib.similar_items(int(q), N=20), qi),
             ("similar_users(user, N=20)", lambda lib, q: lib.similar_users(int(q), N=20), qu),
             ("recalculate_user(user, row)",
              lambda lib, q: (lib.recalculate_user(int(q), m[int(q)]), None), qu),
             ("recalculate_item(item, column)",
              lambda lib, q: (lib.recalculate_item(int(q), item_users[int(q)]), None), qi))
    for name, call, queries in cases:
        times = {"recforge": [], "implicit": []}
        lists = {}
        # Blocks of every query per library, twice in turn (ABAB): interleaving single calls
        # made each library's idle thread pool (OpenMP's or OpenBLAS's spinning workers) slow the
        # other's next call on 2 cores.
        for block in range(2):
            for label, lib in (("recforge", model), ("implicit", imp)):
                call(lib, queries[0])  # warm-up (norms, thread pools)
                for q in queries:
                    t0 = time.perf_counter()
                    ids, _ = call(lib, q)
                    times[label].append(time.perf_counter() - t0)
                    lists.setdefault(label, []).append(ids)
        agree = np.mean([np.array_equal(a, b) for a, b in zip(lists["recforge"], lists["implicit"])])
        r, i = (statistics.median(times[k]) * 1e3 for k in ("recforge", "implicit"))
        print(f"{name}, one per call, median of {len(times['recforge'])}: recforge {r:.2f} ms, "
              f"implicit {i:.2f} ms ({i / r:.2f}x)" +
              ("" if name.startswith("recalculate") else f"; identical lists {agree:.3f}"))

    # Evaluation on the test split, each library's function on its own model (same factors).
    import implicit.evaluation
    from recforge import evaluation

    class MemoryviewIndexable(scipy.sparse.csr_matrix):
        def __getitem__(self, key):
            if type(key).__name__ == "_memoryviewslice":
                key = np.asarray(key)
            return super().__getitem__(key)

    tu, ti = read_adjacency(Path(args.data) / "test.txt")
    known = np.isin(tu, uids) & np.isin(ti, iids)
    test = scipy.sparse.csr_matrix(
        (np.ones(int(known.sum()), np.float32),
         (np.searchsorted(uids, tu[known]), np.searchsorted(iids, ti[known]))), shape=m.shape)
    test.sum_duplicates()
    t0 = time.perf_counter()
    ours = evaluation.ranking_metrics_at_k(model, m, test, K=20, show_progress=False)
    t_r = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = implicit.evaluation.ranking_metrics_at_k(imp, MemoryviewIndexable(m), test, K=20,
                                                      show_progress=False)
    t_i = time.perf_counter() - t0
    print(f"ranking_metrics_at_k K=20 on the {np.count_nonzero(np.diff(test.indptr))} test users "
          f"({int((~known).sum())} test pairs outside train's ids left out): recforge {t_r:.2f} s, "
          f"implicit {t_i:.2f} s ({t_i / t_r:.2f}x); recforge " +
          ", ".join(f"{k} {v:.6f}" for k, v in ours.items()) + "; implicit " +
          ", ".join(f"{k} {v:.6f}" for k, v in theirs.items()))


if __name__ == "__main__":
    main()
