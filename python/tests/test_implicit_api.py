"""The parts of implicit 0.7's API beyond the numbers: partial fits, progress, callbacks,
argument mapping, and the other model classes' save/load."""

import numpy as np
import pytest
import scipy.sparse as sp

import recforge
import recforge.models


def matrix(n_users=80, n_items=40, per_user=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    cols = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    m = sp.csr_matrix((rng.integers(1, 4, len(rows)).astype(np.float32), (rows, cols)),
                      shape=(n_users, n_items))
    m.sum_duplicates()
    return m


@pytest.fixture(scope="module")
def data():
    return matrix()


def fitted(data, **kw):
    args = dict(factors=6, iterations=3, regularization=0.1, random_state=1, num_threads=1,
                use_cg=False)
    args.update(kw)
    m = recforge.AlternatingLeastSquares(**args)
    m.fit(data, show_progress=False)
    return m


def test_partial_fit_users_recomputes_rows_and_grows(data):
    m = fitted(data)
    n_users = m.user_factors.shape[0]
    other = m.user_factors[1].copy()
    rows = data[[3, 4]]
    m.partial_fit_users([0, n_users + 2], rows)
    assert m.user_factors.shape == (n_users + 3, 6)
    # the rows are the model's own solve (recalculate_user), the skipped new row is zero
    want = m.recalculate_user([0, 1], rows)
    np.testing.assert_array_equal(m.user_factors[0], want[0])
    np.testing.assert_array_equal(m.user_factors[n_users + 2], want[1])
    assert not m.user_factors[n_users + 1].any()
    np.testing.assert_array_equal(m.user_factors[1], other)
    ids, _ = m.recommend(n_users + 2, rows[1], N=3)
    assert ids.shape == (3,) and (ids >= 0).all()


def test_partial_fit_items_solves_against_fixed_users(data):
    """An item's row is solved like a user's with the roles exchanged: with the Cholesky solver
    it satisfies (XᵀX + Σ c_u x_u x_uᵀ + λI) y = Σ c_u x_u (unobserved weight 1, reg_exp 0)."""
    m = fitted(data)
    n_items = m.item_factors.shape[0]
    item_users = data.T.tocsr()
    m.partial_fit_items([n_items], item_users[[7]])
    assert m.item_factors.shape == (n_items + 1, 6)
    X = m.user_factors.astype(np.float64)
    row = item_users[7]
    A = X.T @ X + 0.1 * np.eye(6)
    b = np.zeros(6)
    for u, c in zip(row.indices, row.data):
        A += c * np.outer(X[u], X[u])
        b += c * X[u]
    y = np.linalg.solve(A, b)
    # float32 Cholesky of a k×k system built from m terms: relative error ≤ c κ (k + m) u
    kappa = np.linalg.cond(A)
    u32 = 2.0 ** -24
    err = np.linalg.norm(m.item_factors[n_items] - y) / np.linalg.norm(y)
    assert err <= 4 * kappa * (6 + X.shape[0]) * u32


def test_partial_fit_refuses_mismatched_rows(data):
    m = fitted(data)
    with pytest.raises(ValueError, match="user_items has 2 rows; expected one for each of the 1 userids"):
        m.partial_fit_users([0], data[[0, 1]])


def test_partial_fit_refuses_ids_beyond_int32_and_a_table_too_large_to_allocate(data):
    """An id past the engine's 32-bit indices is an IndexError (it was an internal error from
    an overflowed row count), and growing a table that cannot be allocated is a MemoryError
    sentence with the size (it was 'std::bad_alloc'); the model is unchanged either way."""
    m = fitted(data)
    before = m.user_factors.copy()
    for bad in (2**31 - 1, 2**40, np.iinfo(np.int64).max):
        with pytest.raises(IndexError, match=rf"userids {bad} is beyond the engine's ids; "
                                             r"expected ids in \[0, 2147483647\)"):
            m.partial_fit_users([0, bad], data[[0, 1]])
    with pytest.raises(IndexError, match="itemids 2147483647 is beyond"):
        m.partial_fit_items([2**31 - 1], data.T.tocsr()[[0]])
    np.testing.assert_array_equal(m.user_factors, before)
    # 2**31 - 1 rows of 32,767 float32 factors: 256 TiB, beyond any process's address space
    # (2**47 bytes on x86-64 and AArch64), so the allocation fails even with overcommit.
    wide = recforge.BayesianPersonalizedRanking(factors=32767, iterations=1, random_state=0,
                                                num_threads=1)
    wide.fit(data[:8], show_progress=False)
    assert wide.factors_dim() == 32767
    rows_before = wide.user_factors.shape[0]
    with pytest.raises(MemoryError, match=r"^userids 2147483646: growing user_factors from 8 to "
                                          r"2,147,483,647 rows of 32767 float32 factors needs "
                                          r"262136\.0 GiB, which could not be allocated; the "
                                          r"model is unchanged$"):
        wide.partial_fit_users([2**31 - 2], data[[0]])
    assert wide.user_factors.shape[0] == rows_before


def test_callback_and_fit_callback_get_implicits_arguments(data):
    calls = []
    m = recforge.AlternatingLeastSquares(factors=4, iterations=3, calculate_training_loss=True,
                                         random_state=0, num_threads=1)
    m.fit(data, show_progress=False, callback=lambda *a: calls.append(a))
    assert [c[0] for c in calls] == [0, 1, 2]
    assert all(c[1] >= 0 and np.isfinite(c[2]) for c in calls)
    # iALS decreases its objective (each half-iteration minimises it exactly with Cholesky)
    m2 = recforge.AlternatingLeastSquares(factors=4, iterations=3, calculate_training_loss=True,
                                          random_state=0, num_threads=1, use_cg=False)
    losses = []
    m2.fit_callback = lambda it, s, loss: losses.append(loss)
    m2.fit(data, show_progress=False)
    assert len(losses) == 3 and losses[0] >= losses[1] >= losses[2]
    quiet = []
    recforge.AlternatingLeastSquares(factors=4, iterations=2, random_state=0).fit(
        data, show_progress=False, callback=lambda *a: quiet.append(a[2]))
    assert quiet == [None, None]


def test_progress_bar_shows_the_loss_and_is_optional(data, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    m = recforge.AlternatingLeastSquares(factors=4, iterations=2, calculate_training_loss=True,
                                         random_state=0, num_threads=1)
    m.fit(data, show_progress=True)
    err = capsys.readouterr().err
    assert "2/2" in err and "loss=" in err
    monkeypatch.setattr(recforge.models, "_tqdm", None)  # as without tqdm installed
    m.fit(data, show_progress=True)
    assert capsys.readouterr().err == ""
    assert m.iterations_done == 2


def test_argument_mapping():
    m = recforge.AlternatingLeastSquares(use_gpu=False)
    assert m.device == "cpu"
    with pytest.raises(ValueError, match=r"use_gpu=False contradicts device='cuda'"):
        recforge.AlternatingLeastSquares(use_gpu=False, device="cuda")
    desc = recforge.models._recforge._Engine(
        "model:\n  type: ials\n", "x").describe()
    assert "ials" in desc
    # implicit's defaults
    a = recforge.AlternatingLeastSquares()
    assert (a.factors, a.regularization, a.alpha, a.iterations, a.use_cg) == (100, 0.01, 1.0, 15, True)
    b = recforge.BayesianPersonalizedRanking()
    assert (b.factors, b.learning_rate, b.regularization, b.iterations,
            b.verify_negative_samples) == (100, 0.01, 0.01, 100, True)


@pytest.mark.parametrize("cls", [recforge.BayesianPersonalizedRanking, recforge.SampledSoftmax,
                                 recforge.CosineContrastive])
def test_batch_models_save_load_and_are_seeded(tmp_path, data, cls):
    a = cls(factors=5, iterations=2, random_state=7, num_threads=1)
    a.fit(data, show_progress=False)
    b = cls(factors=5, iterations=2, random_state=7, num_threads=1)
    b.fit(data, show_progress=False)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    a.save(tmp_path / "m.npz")
    c = cls.load(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(c.user_factors, a.user_factors)
    np.testing.assert_array_equal(c.item_factors, a.item_factors)
    assert c.iterations == 2 and c.factors == 5
    x = a.recommend(np.arange(5), data[:5], N=4)
    y = c.recommend(np.arange(5), data[:5], N=4)
    np.testing.assert_array_equal(x[0], y[0])


def test_ccl_dropout_is_seeded_saved_and_changes_the_fit(tmp_path, data):
    """The dropout masks come from the seed: two fits agree bit for bit, the saved model keeps
    the key, and a fit without dropout (same seed) ends elsewhere."""
    kw = dict(factors=5, iterations=2, random_state=7, num_threads=1, device="cpu")
    a = recforge.CosineContrastive(dropout=0.3, **kw)
    a.fit(data, show_progress=False)
    b = recforge.CosineContrastive(dropout=0.3, **kw)
    b.fit(data, show_progress=False)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    plain = recforge.CosineContrastive(**kw)
    plain.fit(data, show_progress=False)
    assert np.abs(plain.item_factors - a.item_factors).max() > 1e-4
    a.save(tmp_path / "m.npz")
    c = recforge.CosineContrastive.load(str(tmp_path / "m.npz"))
    assert c.dropout == 0.3
    np.testing.assert_array_equal(c.item_factors, a.item_factors)


def test_load_refuses_a_file_of_another_class(tmp_path, data):
    a = fitted(data)
    a.save(tmp_path / "als.npz")
    with pytest.raises(ValueError, match=r"alpha, .* is not an argument of BayesianPersonalizedRanking"):
        recforge.BayesianPersonalizedRanking.load(str(tmp_path / "als.npz"))


def test_load_refuses_factors_that_are_not_a_matrix(tmp_path):
    path = str(tmp_path / "flat.npz")
    np.savez(path, factors=4, user_factors=np.zeros(5, np.float32),
             item_factors=np.zeros((7, 4), np.float32))
    with pytest.raises(ValueError, match=r"flat.npz: user_factors has shape \(5,\); expected a 2-D array"):
        recforge.AlternatingLeastSquares.load(path)


def test_load_reads_an_implicit_saved_bpr_model(tmp_path, data):
    """implicit's BPR keeps its item bias as a last factor column with 1 in every user row:
    recforge's item_bias layout, so the loaded model scores and ranks like implicit's."""
    implicit_bpr = pytest.importorskip("implicit.cpu.bpr")
    ref = implicit_bpr.BayesianPersonalizedRanking(factors=4, iterations=3, random_state=0)
    ref.fit(data, show_progress=False)
    ref.save(str(tmp_path / "bpr"))
    m = recforge.BayesianPersonalizedRanking.load(str(tmp_path / "bpr"))
    assert m.item_bias is True and m.factors == 4 and m.user_factors.shape == (80, 5)
    np.testing.assert_array_equal(m.item_factors, ref.item_factors)
    ids, scores = m.recommend(np.arange(10), data[:10], N=5)
    r_ids, r_scores = ref.recommend(np.arange(10), data[:10], N=5)
    np.testing.assert_array_equal(ids, r_ids)
    # both are float32 dot products of 5 terms: within 2γ_5 Σ|x||y| of each other
    k = 5
    g = k * 2.0 ** -24 / (1 - k * 2.0 ** -24)
    mag = np.abs(m.user_factors[:10, None, :] * m.item_factors[ids]).sum(-1)
    assert np.all(np.abs(scores - r_scores) <= 2 * g * mag)


def test_input_values_are_converted_to_float32(data):
    a = fitted(data)
    b = fitted(data.astype(np.float64))
    c = fitted(sp.csr_matrix(data.toarray().astype(np.int64)))
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.user_factors, c.user_factors)


def test_an_explicit_solver_is_named_in_its_error():
    with pytest.raises(ValueError, match=r"argument 'solver' \(model.solver\)"):
        recforge.AlternatingLeastSquares(solver="lu")


def test_implicit_code_runs_after_import_recforge_as_implicit(data):
    """implicit's README usage and the modules implicit code imports from, through
    ``import recforge as implicit``: the module paths implicit.als, implicit.bpr,
    implicit.evaluation and implicit.nearest_neighbours."""
    import recforge as implicit
    from recforge.als import AlternatingLeastSquares
    from recforge.bpr import BayesianPersonalizedRanking
    from recforge.evaluation import ndcg_at_k, train_test_split
    from recforge.nearest_neighbours import bm25_weight

    assert AlternatingLeastSquares is recforge.AlternatingLeastSquares
    assert BayesianPersonalizedRanking is recforge.BayesianPersonalizedRanking
    user_item_data = data
    model = implicit.als.AlternatingLeastSquares(factors=8, random_state=3)
    model.fit(user_item_data, show_progress=False)
    userid, itemid = 5, 7
    ids, scores = model.recommend(userid, user_item_data[userid])
    assert ids.shape == (10,) and not np.isin(ids, user_item_data[userid].indices).any()
    related, sims = model.similar_items(itemid)
    assert related[0] == itemid and sims[0] == pytest.approx(1.0, abs=1e-5)
    train, test = train_test_split(user_item_data, 0.8, random_state=1)
    bpr = implicit.bpr.BayesianPersonalizedRanking(factors=8, iterations=5, random_state=3)
    bpr.fit(bm25_weight(train).tocsr(), show_progress=False)
    assert 0.0 < ndcg_at_k(bpr, train, test, K=10, show_progress=False) <= 1.0
