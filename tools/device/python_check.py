#!/usr/bin/env python3
"""The Python package on the GPU (step 5 of tools/device/device-check.sh).

Trains each model class with device="cuda" and with device="cpu" on the same planted matrix
(synthetic: users belong to one of 20 communities and interact mostly with its items), and
prints one line per model and device: fit seconds, held-out recall@10 of `recommend` for every
user in one call, and whether the factors came back as NumPy arrays. It ends with one
`python-check: PASS|FAIL` line: FAIL when a cuda fit raised, or when a cuda model's recall is
more than 0.05 below the same model's on the CPU (the two devices run the same algorithm from
the same seed; their rounding and, for the batch models, their sampling order differ, so the
recall is compared with a margin, not the factors).

usage (on the device, from the bundle): PYTHONPATH=/tmp/recforge-device/python python3
    tools/device/python_check.py
"""

import sys
import time

import numpy as np
import scipy.sparse

import recforge


def planted(n_users=20000, n_items=5000, per_user=40, communities=20, seed=0):
    rng = np.random.default_rng(seed)
    comm_u = rng.integers(communities, size=n_users)
    comm_i = rng.integers(communities, size=n_items)
    by_comm = [np.flatnonzero(comm_i == c) for c in range(communities)]
    rows, cols = [], []
    for u in range(n_users):
        own = rng.choice(by_comm[comm_u[u]], size=int(per_user * 0.8))
        other = rng.integers(n_items, size=per_user - len(own))
        items = np.unique(np.concatenate([own, other]))
        rows.append(np.full(len(items), u))
        cols.append(items)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    # Hold out one interaction per user.
    order = rng.permutation(len(rows))
    rows, cols = rows[order], cols[order]
    _, first = np.unique(rows, return_index=True)
    test = np.zeros(len(rows), bool)
    test[first] = True
    train = scipy.sparse.csr_matrix((np.ones((~test).sum(), np.float32), (rows[~test], cols[~test])),
                                    shape=(n_users, n_items))
    return train, rows[test], cols[test]


def main():
    print(f"recforge {recforge.__version__}: cuda compiled {recforge.cuda_compiled()}, "
          f"devices {recforge.cuda_device_count()}")
    train, tu, ti = planted()
    print(f"planted: {train.shape[0]} users x {train.shape[1]} items, {train.nnz} train")
    models = [
        ("als", recforge.AlternatingLeastSquares, dict(factors=64, iterations=10, alpha=10.0)),
        ("bpr", recforge.BayesianPersonalizedRanking, dict(factors=64, iterations=30,
                                                           learning_rate=0.05)),
        ("softmax", recforge.SampledSoftmax, dict(factors=64, iterations=10)),
    ]
    ok = True
    for name, cls, kw in models:
        recall = {}
        for device in ("cpu", "cuda"):
            try:
                m = cls(random_state=7, device=device, **kw)
                t0 = time.perf_counter()
                m.fit(train, show_progress=False)
                secs = time.perf_counter() - t0
                ids, _ = m.recommend(np.arange(train.shape[0]), train, N=10)
                hit = np.any(ids[tu] == ti[:, None], axis=1).mean()
                recall[device] = hit
                print(f"{name:8s} {device:5s} fit {secs:7.2f} s  recall@10 {hit:.4f}  "
                      f"factors {type(m.user_factors).__name__} {m.user_factors.shape}",
                      flush=True)
            except Exception as e:  # noqa: BLE001 - the check reports every failure
                print(f"{name:8s} {device:5s} FAILED: {type(e).__name__}: {e}", flush=True)
                ok = False
        if "cpu" in recall and "cuda" in recall and recall["cuda"] < recall["cpu"] - 0.05:
            print(f"{name}: cuda recall {recall['cuda']:.4f} is more than 0.05 below the CPU's "
                  f"{recall['cpu']:.4f}")
            ok = False
    print(f"python-check: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
