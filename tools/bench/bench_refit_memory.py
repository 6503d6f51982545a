#!/usr/bin/env python3
"""Peak RSS a refit adds (recforge.AlternatingLeastSquares.fit called again, which continues from
the model's factors): 200k users × 50k items, 2M interactions, 256 factors, 1 iteration.

  PYTHONPATH=build/cpu/python .venv/bin/python tools/bench/bench_refit_memory.py
"""
import resource, sys, time
import numpy as np, scipy.sparse as sp, recforge
rng = np.random.default_rng(0)
n_u, n_i, nnz = 200_000, 50_000, 2_000_000
m = sp.csr_matrix((np.ones(nnz, np.float32), (rng.integers(0, n_u, nnz), rng.integers(0, n_i, nnz))), shape=(n_u, n_i))
m.sum_duplicates(); m.data[:] = 1
model = recforge.AlternatingLeastSquares(factors=256, iterations=1, random_state=0)
model.fit(m, show_progress=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.time(); model.fit(m, show_progress=False); t = time.time() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
side = (n_u + n_i) * 256 * 4 / 2**20
print(f"factors {side:.0f} MiB (both sides); peak RSS before the refit {before:.0f} MiB, after {after:.0f} MiB (+{after-before:.0f} MiB); refit {t:.1f} s")
