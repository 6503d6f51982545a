#!/usr/bin/env python3
"""BPR speed and quality against implicit's CPU BPR, on the same data and settings.

Both train plain BPR with SGD on the same training matrix: the same factors plus an item bias
(implicit always learns one; recforge with model.item_bias), learning rate, regularization,
epochs, one uniformly drawn negative per positive with seen items rejected, and as many samples
per epoch as training interactions. Both are scored by the same exact Recall@20 (all items
ranked, training items masked; tools/bench_ials.py). Run through tools/bench-bpr.sh.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ials import expand, read_adjacency, recall_at, write_pairs  # noqa: E402


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
                  "batch_size": 1024, "seed": args.seed},
        "eval": {"test": False},
    }
    path = os.path.join(work, f"bench-bpr-{factors}.yaml")
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    out = subprocess.run([args.recforge, "train", path], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    run_dir = out.stdout.strip().splitlines()[-1]
    hist = json.load(open(os.path.join(run_dir, "run.json")))["history"]
    secs = [h["seconds"] for h in hist]
    uf = np.load(os.path.join(run_dir, "user_factors.npy"))
    itf = np.load(os.path.join(run_dir, "item_factors.npy"))
    return float(np.median(secs)), uf, itf


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
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--recforge", required=True)
    p.add_argument("--dataset", choices=["gowalla", "synthetic"], required=True)
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--factors", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--reg", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", default="500000,100000,15000000",
                   help="users,items,draws for the synthetic set")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench-bpr-")
    if args.dataset == "gowalla":
        tr = os.path.abspath(os.path.join(args.shared, "gowalla/train.txt"))
        te = os.path.abspath(os.path.join(args.shared, "gowalla/test.txt"))
        r, c = read_adjacency(tr)
        rt, ct = read_adjacency(te)
        n_u, n_i = max(r.max(), rt.max()) + 1, max(c.max(), ct.max()) + 1
        fmt, train_path, test_path = "adjacency", tr, te
    else:
        users, items, draws = (int(x) for x in args.synthetic.split(","))
        csv = os.path.join(work, "syn.csv")
        subprocess.run([args.recforge, "datagen", "--out", csv, "--users", str(users), "--items",
                        str(items), "--interactions", str(draws), "--seed", "11",
                        "--set", "run.progress=off"], check=True, capture_output=True)
        data = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=np.int64, usecols=(0, 1))
        rng = np.random.default_rng(args.seed)
        is_test = rng.random(len(data)) < 0.2
        r, c = data[~is_test, 0], data[~is_test, 1]
        rt, ct = data[is_test, 0], data[is_test, 1]
        n_u, n_i = users, items
        fmt = "delimited"
        train_path, test_path = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
    train = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_u, n_i))
    test = sp.csr_matrix((np.ones(len(rt), np.float32), (rt, ct)), shape=(n_u, n_i))
    train.sum_duplicates(); train.data[:] = 1
    test.sum_duplicates(); test.data[:] = 1
    test = test - test.multiply(train)
    test.eliminate_zeros()
    if args.dataset == "synthetic":
        write_pairs(train_path, train)
        write_pairs(test_path, test)
    print(f"BPR, SGD lr {args.lr}, regularization {args.reg}, {args.epochs} epochs, "
          f"{args.threads} threads; Recall@20 over "
          f"{'all test users' if n_u <= 30000 else 'a fixed sample of 30,000 test users'}.")
    print("| data | factors | recforge s/epoch | implicit s/epoch | speed-up | recforge samples/s | "
          "recforge Recall@20 | implicit Recall@20 |")
    print("|---|---|---|---|---|---|---|---|")
    for f in args.factors:
        rs, ruf, rif = run_recforge(args, train_path, test_path, fmt, f, work)
        is_, iuf, iif = run_implicit(args, train, f)
        rr = recall_at(*expand(ruf, rif, train), train, test)
        ir = recall_at(iuf, iif, train, test)
        print(f"| {args.dataset} ({train.nnz:,} train) | {f} | {rs:.3f} | {is_:.3f} | "
              f"{is_ / rs:.2f}x | {train.nnz / rs / 1e6:.1f}M | {rr:.4f} | {ir:.4f} |", flush=True)


if __name__ == "__main__":
    main()
