#!/usr/bin/env python3
"""iALS speed and quality against implicit's CPU ALS, on the same data and settings.

Both models train on the same training matrix with the same factors, iterations, CG steps and
an equivalent objective: recforge with unobserved weight a0, constant regularization lam
(reg_exp 0) and observed weight 1; implicit with alpha = 1/a0 and regularization = lam/a0, which
is recforge's objective divided by a0 (observed pairs weigh 1/a0 against 1 for the rest in both,
up to implicit's "confidence - 1" in the Gram term). Both are scored by the same exact Recall@20
(all items ranked, training items masked). Run through tools/bench/bench-ials.sh.
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


def read_adjacency(path):
    rows, cols = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            u = int(parts[0])
            rows.extend([u] * (len(parts) - 1))
            cols.extend(int(x) for x in parts[1:])
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def recall_at(user_f, item_f, train, test, k=20, batch=1024, max_users=30000, seed=0):
    """Exact Recall@k over the users with test items (a fixed random sample of `max_users` of
    them when there are more, the same sample for every model)."""
    users = np.flatnonzero(np.diff(test.indptr))
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    total = 0.0
    for s in range(0, len(users), batch):
        ub = users[s:s + batch]
        scores = user_f[ub] @ item_f.T
        tr = train[ub]
        scores[np.repeat(np.arange(len(ub)), np.diff(tr.indptr)), tr.indices] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        te = test[ub]
        for j in range(len(ub)):
            truth = te.indices[te.indptr[j]:te.indptr[j + 1]]
            total += np.isin(top[j], truth).sum() / len(truth)
    return total / len(users)


def write_pairs(path, m):
    coo = m.tocoo()
    np.savetxt(path, np.stack([coo.row, coo.col], 1), fmt="%d", delimiter=",")


def run_recforge(args, train_path, test_path, fmt, factors, work):
    cfg = {
        "run": {"name": f"bench-{factors}", "dir": os.path.join(work, "runs"), "progress": "off",
                "exists": "overwrite"},
        "train": {"threads": args.threads},
        "data": {"format": fmt, "path": train_path, "test_path": test_path, "cache": False},
        "split": {"method": "given"},
        "model": {"type": "ials", "factors": factors, "iterations": args.iterations,
                  "regularization": args.reg, "reg_exp": 0.0, "unobserved_weight": args.a0,
                  "solver": "cg", "cg_steps": 3, "seed": args.recforge_seed},
        "eval": {"test": False},
    }
    if args.recforge_init_std is not None:
        cfg["model"]["init_std"] = args.recforge_init_std
    return train_config(args.recforge, cfg, os.path.join(work, f"bench-{factors}.yaml"))


def train_config(recforge, cfg, path):
    """Writes `cfg` to `path`, runs `recforge train` on it and returns the median seconds per
    iteration and both factor matrices of the run."""
    with open(path, "w") as f:
        json.dump(cfg, f)  # JSON is YAML
    out = subprocess.run([recforge, "train", path], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    run_dir = out.stdout.strip().splitlines()[-1]
    hist = json.load(open(os.path.join(run_dir, "run.json")))["history"]
    secs = [h["seconds"] for h in hist]
    uf = np.load(os.path.join(run_dir, "user_factors.npy"))
    itf = np.load(os.path.join(run_dir, "item_factors.npy"))
    return float(np.median(secs)), uf, itf


def run_implicit(args, train, factors):
    from implicit.cpu.als import AlternatingLeastSquares
    times = []
    last = [time.perf_counter()]

    def cb(iteration, elapsed, loss):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    model = AlternatingLeastSquares(factors=factors, regularization=args.reg / args.a0,
                                    alpha=1.0 / args.a0, iterations=args.iterations, use_cg=True,
                                    calculate_training_loss=False, num_threads=args.threads,
                                    random_state=args.seed)
    if args.implicit_init == "normal":  # recforge's initial distribution, N(0, (std/sqrt(k))^2)
        std = 0.1 if args.recforge_init_std is None else args.recforge_init_std
        rng = np.random.default_rng(args.seed)
        model.user_factors, model.item_factors = (
            (rng.standard_normal((n, factors)) * std / np.sqrt(factors)).astype(np.float32)
            for n in train.shape)
    with threadpool_limits(1, "blas"):
        last[0] = time.perf_counter()
        model.fit(train, show_progress=False, callback=cb)
    return float(np.median(times)), np.asarray(model.user_factors), np.asarray(model.item_factors)


def prepare_data(args, work):
    """The benchmark's data: Gowalla's LightGCN split from ../shared, or a synthetic set made by
    `recforge datagen` with 20% of it held out at random. Returns the binary train and test
    matrices (test pairs also in train removed) and what recforge reads: the format and the
    train and test paths (written into `work` for the synthetic set)."""
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
    test = test - test.multiply(train)  # test pairs also in train cannot be recommended
    test.eliminate_zeros()
    if args.dataset == "synthetic":
        write_pairs(train_path, train)
        write_pairs(test_path, test)
    return train, test, fmt, train_path, test_path


def common_parser(description):
    """The options both benchmarks against implicit take (data, factors, threads, seed)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--recforge", required=True)
    p.add_argument("--dataset", choices=["gowalla", "synthetic"], required=True)
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--factors", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic", default="500000,100000,15000000",
                   help="users,items,draws for the synthetic set")
    return p


def main():
    p = common_parser(__doc__)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--recforge-seed", type=int, default=42,
                   help="seed of recforge's initial factors (default 42, recforge's own default; "
                        "--seed seeds implicit and the synthetic split)")
    p.add_argument("--recforge-init-std", type=float,
                   help="recforge's model.init_std (default: recforge's own, 0.1)")
    p.add_argument("--implicit-init", choices=["own", "normal"], default="own",
                   help="implicit's initial factors: its own (uniform on [0, 0.01)) or recforge's "
                        "distribution N(0, (init_std/sqrt(factors))^2) with recforge's init_std "
                        "(--recforge-init-std, else 0.1), drawn with --seed")
    p.add_argument("--reg", type=float, default=0.02)
    p.add_argument("--a0", type=float, default=0.02)
    args = p.parse_args()
    rows = measure(args, "bench-ials-", run_recforge, run_implicit)
    train = next(rows)
    print(f"Recall@20 over {scored_users(train)}.")
    print(f"| data | factors | recforge s/iter | implicit s/iter | speed-up | recforge Recall@20 | "
          f"implicit Recall@20 |")
    print("|---|---|---|---|---|---|---|")
    for f, rs, is_, rr, ir in rows:
        print(f"| {args.dataset} ({train.nnz:,} train) | {f} | {rs:.3f} | {is_:.3f} | "
              f"{is_ / rs:.2f}x | {rr:.4f} | {ir:.4f} |", flush=True)


def scored_users(train):
    """Which test users recall_at scores (it samples 30,000 of larger sets)."""
    return "all test users" if train.shape[0] <= 30000 else "a fixed sample of 30,000 test users"


def measure(args, prefix, run_recforge, run_implicit):
    """Prepares the data in a new temporary directory, yields the training matrix, then for each
    factor count (factors, recforge seconds, implicit seconds, recforge Recall@20, implicit
    Recall@20). `run_recforge(args, train_path, test_path, fmt, factors, work)` and
    `run_implicit(args, train, factors)` return (seconds, user factors, item factors)."""
    work = tempfile.mkdtemp(prefix=prefix)
    train, test, fmt, train_path, test_path = prepare_data(args, work)
    yield train
    for f in args.factors:
        rs, ruf, rif = run_recforge(args, train_path, test_path, fmt, f, work)
        is_, iuf, iif = run_implicit(args, train, f)
        yield f, rs, is_, recall_at(*expand(ruf, rif, train), train, test), recall_at(iuf, iif, train, test)


def expand(uf, itf, train):
    """recforge drops users/items without training interactions and numbers the rest in order;
    put its factors back at the original indices (zeros for the dropped ones)."""
    users = np.flatnonzero(np.diff(train.indptr))
    items = np.flatnonzero(np.bincount(train.indices, minlength=train.shape[1]))
    U = np.zeros((train.shape[0], uf.shape[1]), np.float32)
    V = np.zeros((train.shape[1], itf.shape[1]), np.float32)
    U[users] = uf
    V[items] = itf
    return U, V


if __name__ == "__main__":
    main()
