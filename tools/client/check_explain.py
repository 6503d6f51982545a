#!/usr/bin/env python3
"""Compare `recforge explain` with implicit's ALS explanations on the same factors.

The export's item factors (item_factors.npy) and user factors are loaded into implicit 0.7's
CPU `AlternatingLeastSquares`, and its `explain(userid, user_items, itemid)` is compared with
`recforge explain EXPORT --user ID --item ID --format json` for a seeded sample of (user, item)
pairs: the total score, and every training item's contribution.

Why the two coincide (the mapping). recforge's user solve (docs/export.md, Explanations) is

    A = α0 Σ_{all j} c_j y_j y_jᵀ + Σ_{j∈I_u} t_j y_j y_jᵀ + λ (n_u + ν)^e I,   b = Σ_{j∈I_u} t_j y_j

with t_j = model.alpha × the training value (seen_data.npy). implicit's (user_linear_equation) is

    A = YᵀY + λ' I + Σ_{entries} (|c| − 1) y_j y_jᵀ,   b = Σ_{entries with c > 0} c y_j

and its explain adds c · y_iᵀA⁻¹y_j over the entries with c > 0. So:
  * recforge must have model.unobserved_weight 1 (α0 = YᵀY's weight), model.unobserved_exp 0
    (c_j = 1), model.reg_exp 0 (λ (n + ν)^0 = λ for every user; implicit's regularization = λ);
    the script refuses an export with other values;
  * implicit's alpha is 1 and it gets t_j itself as the confidence of item j;
  * implicit's A would then hold (t_j − 1) y_j y_jᵀ where recforge's holds t_j y_j y_jᵀ: each
    training item gets a second CSR entry of confidence −2, which implicit reads as
    "A += (2 − 1) y_j y_jᵀ, nothing to b" and which its explain skips. The CSR is built from
    (data, indices, indptr) directly and not canonicalised, so the duplicate entries stay.
The item factors are given to implicit as float64 (YᵀY then accumulates in double, as recforge's
A does), so both sides solve the same system in double.

Tolerance (derived, not fitted). Both sides compute y_iᵀA⁻¹y_j by a double Cholesky solve of A
built from m = n_items + 2 n_u outer products. Each is within rel · |t_j| ‖y_i‖ ‖y_j‖ / λ of the
exact value, with ‖A⁻¹‖ ≤ 1/λ and rel = 2 κ k (γ_m + 3 γ_{k+1}) (first-order error of forming A,
of the factorisation and of the two triangular solves, amplified by κ(A) ≤ condition_bound
= trace(A)/λ that recforge reports; γ_m = m u / (1 − m u), u = 2⁻⁵³). The two may differ by twice
that per contribution, and the scores by the sum over j.

usage: tools/client/check_explain.py EXPORT_DIR --recforge build/cpu/recforge [--pairs 20]

Exits 0 when everything matches, 1 with the first difference otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# implicit warns about (and is slowed by) OpenBLAS's thread pool; one thread is plenty here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

try:
    import numpy as np
    import scipy.sparse
    from implicit.cpu.als import AlternatingLeastSquares
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(f"check_explain: Python module {e.name!r} is missing; run tools/setup.sh to create "
             f"or update .venv, then use .venv/bin/python")

UNIT = 2.0 ** -53


def gamma(m):
    return m * UNIT / (1 - m * UNIT)


def fail(message):
    print(f"check_explain: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def resolve(export):
    link = export / "current"
    return export / os.readlink(link) if link.is_symlink() else export


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--recforge", required=True)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    root = resolve(args.export)
    manifest = json.loads((root / "manifest.json").read_text())
    params = manifest["model"]["parameters"]
    if params.get("type") != "ials":
        fail(f"{root}: model type {params.get('type')!r}; implicit's explain is for ALS (ials)")
    for key, want in (("unobserved_weight", 1.0), ("unobserved_exp", 0.0), ("reg_exp", 0.0)):
        if float(params[key]) != want:
            fail(f"{root}: model.{key} is {params[key]}; the mapping to implicit needs {want}")
    if not (root / "seen_data.npy").exists():
        fail(f"{root}: no seen_data.npy; export the run again with this recforge")
    lam, alpha = float(params["regularization"]), float(params["alpha"])

    items = np.load(root / "item_factors.npy").astype(np.float64)
    users = np.load(root / "user_factors.npy").astype(np.float64)
    indptr = np.load(root / "seen_indptr.npy")
    indices = np.load(root / "seen_indices.npy")
    values = np.load(root / "seen_data.npy").astype(np.float64)
    user_ids = (root / "user_ids.txt").read_text().split("\n")[:-1]
    item_ids = (root / "item_ids.txt").read_text().split("\n")[:-1]
    n_users, n_items = users.shape[0], items.shape[0]
    k = items.shape[1]

    # Each training item twice: confidence t_j, then −2 (see the docstring).
    t = alpha * values
    data, cols, ptr = [], [], [0]
    for u in range(n_users):
        for e in range(indptr[u], indptr[u + 1]):
            data += [t[e], -2.0]
            cols += [indices[e], indices[e]]
        ptr.append(len(data))
    user_items = scipy.sparse.csr_matrix(
        (np.array(data), np.array(cols, dtype=np.int32), np.array(ptr, dtype=np.int64)),
        shape=(n_users, n_items))
    if len(user_items.data) != 2 * len(indices):
        fail("scipy merged the duplicate CSR entries; the mapping needs them kept")

    model = AlternatingLeastSquares(factors=k, regularization=lam, alpha=1.0, random_state=0)
    model.item_factors = items
    model.user_factors = users

    rng = np.random.default_rng(args.seed)
    candidates = [u for u in range(n_users) if indptr[u + 1] > indptr[u]]
    checked, worst = 0, 0.0
    for _ in range(args.pairs):
        u = int(rng.choice(candidates))
        i = int(rng.integers(n_items))
        if checked % 4 == 0:  # some pairs explain one of the user's own training items
            i = int(indices[rng.integers(indptr[u], indptr[u + 1])])
        n_u = int(indptr[u + 1] - indptr[u])
        proc = subprocess.run([args.recforge, "explain", str(args.export), "--user", user_ids[u],
                               "--item", item_ids[i], "--top", str(n_u), "--format", "json"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            fail(f"recforge explain --user {user_ids[u]} --item {item_ids[i]} exited "
                 f"{proc.returncode}: {proc.stderr.strip()}")
        ours = json.loads(proc.stdout)
        if ours["method"] != "exact_decomposition" or len(ours["contributions"]) != n_u:
            fail(f"user {user_ids[u]}: expected {n_u} exact contributions, got {ours['method']} "
                 f"with {len(ours['contributions'])}")
        total, top, _ = model.explain(u, user_items, i, N=n_u)
        total = float(total)
        theirs = {item_ids[j]: float(s) for j, s in top}

        kappa = float(ours["condition_bound"])
        rel = 2 * kappa * k * (gamma(n_items + 2 * n_u) + 3 * gamma(k + 1))
        yi = np.linalg.norm(items[i])
        bound_sum = 0.0
        for c in ours["contributions"]:
            j = item_ids.index(c["item"])
            bound = 2 * rel * abs(c["confidence"]) * yi * np.linalg.norm(items[j]) / lam
            bound_sum += bound
            if c["item"] not in theirs:
                fail(f"user {user_ids[u]}, item {item_ids[i]}: implicit has no contribution of "
                     f"item {c['item']}")
            diff = abs(c["contribution"] - theirs[c["item"]])
            worst = max(worst, diff / bound if bound > 0 else 0.0)
            if diff > bound:
                fail(f"user {user_ids[u]}, item {item_ids[i]}, training item {c['item']}: "
                     f"recforge {c['contribution']!r}, implicit {theirs[c['item']]!r}, "
                     f"difference {diff:.3g} above the bound {bound:.3g}")
        if abs(ours["score"] - total) > bound_sum + ours["tolerance"]:
            fail(f"user {user_ids[u]}, item {item_ids[i]}: score recforge {ours['score']!r}, "
                 f"implicit {total!r}, above the bound {bound_sum:.3g}")
        model_score = float(users[u] @ items[i])
        if abs(ours["model_score"] - model_score) > 4 * gamma(k) * float(np.abs(users[u]) @ np.abs(items[i])):
            fail(f"user {user_ids[u]}, item {item_ids[i]}: model_score {ours['model_score']!r}, "
                 f"NumPy {model_score!r}")
        checked += 1
    print(f"check_explain: OK: {checked} (user, item) pairs of {args.export} match implicit's "
          f"explain (largest difference {worst:.2g} of its bound)")


if __name__ == "__main__":
    main()
