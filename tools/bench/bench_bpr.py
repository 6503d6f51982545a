#!/usr/bin/env python3
"""BPR speed and quality against implicit's CPU BPR, on the same data and settings.

Both train plain BPR with SGD on the same training matrix: the same factors plus an item bias
(implicit always learns one; recforge with model.item_bias), learning rate, regularization,
epochs, one negative per positive with seen items rejected, and as many samples per epoch as
training interactions. implicit draws a negative as the item of a random training interaction,
i.e. in proportion to popularity; recforge is run with the same distribution
(model.negative_exp 1: proportional to interactions + 1). Both are scored by the same exact Recall@20 (all items
ranked, training items masked; tools/bench/bench_ials.py). Run through tools/bench/bench-bpr.sh.
"""
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ials import common_parser, measure, scored_users, train_config  # noqa: E402


def run_recforge(args, train_path, test_path, fmt, factors, work):
    cfg = {
        "run": {"name": f"bench-bpr-{factors}", "dir": os.path.join(work, "runs"),
                "progress": "off", "exists": "overwrite"},
        "train": {"threads": args.threads},
        "data": {"format": fmt, "path": train_path, "test_path": test_path, "cache": False},
        "split": {"method": "given"},
        "model": {"type": "bpr", "factors": factors, "iterations": args.epochs,
                  "item_bias": True, "optimizer": "sgd", "learning_rate": args.lr,
                  "regularization": args.reg, "negatives": 1, "reject_seen": True,
                  "negative_exp": 1.0,
                  "batch_size": 1024, "seed": args.seed},
        "eval": {"test": False},
    }
    return train_config(args.recforge, cfg, os.path.join(work, f"bench-bpr-{factors}.yaml"))


def run_implicit(args, train, factors):
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    model = BayesianPersonalizedRanking(factors=factors, learning_rate=args.lr,
                                        regularization=args.reg, iterations=args.epochs,
                                        verify_negative_samples=True, num_threads=args.threads,
                                        random_state=args.seed)
    times = []
    last = [0.0]

    def cb(*_):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    with threadpool_limits(1, "blas"):
        last[0] = time.perf_counter()
        model.fit(train, show_progress=False, callback=cb)
    return float(np.median(times)), np.asarray(model.user_factors), np.asarray(model.item_factors)


def main():
    p = common_parser(__doc__)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--reg", type=float, default=0.01)
    args = p.parse_args()
    rows = measure(args, "bench-bpr-", run_recforge, run_implicit)
    train = next(rows)
    print(f"BPR, SGD lr {args.lr}, regularization {args.reg}, {args.epochs} epochs, "
          f"{args.threads} threads; Recall@20 over {scored_users(train)}.")
    print("| data | factors | recforge s/epoch | implicit s/epoch | speed-up | recforge samples/s | "
          "recforge Recall@20 | implicit Recall@20 |")
    print("|---|---|---|---|---|---|---|---|")
    for f, rs, is_, rr, ir in rows:
        print(f"| {args.dataset} ({train.nnz:,} train) | {f} | {rs:.3f} | {is_:.3f} | "
              f"{is_ / rs:.2f}x | {train.nnz / rs / 1e6:.1f}M | {rr:.4f} | {ir:.4f} |", flush=True)


if __name__ == "__main__":
    main()
