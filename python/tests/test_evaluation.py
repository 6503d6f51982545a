"""recforge.evaluation against implicit 0.7's implicit.evaluation (installed in .venv for the
benchmarks) and against metrics worked out by hand."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

import recforge
from recforge import evaluation

implicit_evaluation = pytest.importorskip(
    "implicit.evaluation", reason="implicit (tools/requirements.txt) is the reference")


class MemoryviewIndexable(sp.csr_matrix):
    """A CSR matrix that can be indexed by a Cython memoryview of row ids. implicit 0.7.2's
    ranking_metrics_at_k indexes the training matrix by one, which SciPy 1.17 refuses
    ("'_memoryviewslice' object has no attribute 'dtype'"); the reference gets this one."""

    def __getitem__(self, key):
        if type(key).__name__ == "_memoryviewslice":
            key = np.asarray(key)
        return super().__getitem__(key)


def implicits(model, train, test, K):
    return implicit_evaluation.ranking_metrics_at_k(model, MemoryviewIndexable(train), test, K=K,
                                                    show_progress=False)


def planted(seed, users=300, items=120, groups=6, per_user=14):
    """Users in groups that each like their group's items: a model learns it in a few
    iterations, so the metrics are far from 0 and 1."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    size = items // groups
    for u in range(users):
        g = u % groups
        picks = rng.choice(size, size=per_user, replace=False) + g * size
        rows += [u] * per_user
        cols += list(picks)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items))


def test_train_test_split_is_implicits_for_the_same_seed():
    ratings = sp.random(200, 90, density=0.05, format="csr", dtype=np.float32, random_state=1)
    for seed in (0, 7):
        ours = evaluation.train_test_split(ratings, 0.75, random_state=seed)
        theirs = implicit_evaluation.train_test_split(ratings, 0.75, random_state=seed)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape
            assert (a != b).nnz == 0
    train, test = evaluation.train_test_split(ratings, 0.75, random_state=np.random.RandomState(3))
    assert (train + test != ratings).nnz == 0
    assert 0.6 < train.nnz / ratings.nnz < 0.9
    with pytest.raises(ValueError, match=r"train_percentage is 1.5; expected a number in \[0, 1\]"):
        evaluation.train_test_split(ratings, 1.5)


def test_metrics_equal_implicits_on_the_same_model():
    ratings = planted(5)
    train, test = evaluation.train_test_split(ratings, 0.8, random_state=2)
    import implicit.cpu.als
    models = [recforge.AlternatingLeastSquares(factors=16, iterations=4, random_state=1,
                                               num_threads=1),
              recforge.BayesianPersonalizedRanking(factors=16, iterations=20, random_state=1,
                                                   num_threads=1),
              implicit.cpu.als.AlternatingLeastSquares(factors=16, iterations=4, random_state=1,
                                                       num_threads=1)]
    # 300 users: one recommend call in both functions (blocks of 1,024 and 1,000), so even
    # implicit's float GEMM, whose rounding depends on the call's shape, ranks alike in both.
    for model in models:
        model.fit(train, show_progress=False)
        for K in (1, 10, 100):  # 100: past most users' eligible items (short, padded lists)
            ours = evaluation.ranking_metrics_at_k(model, train, test, K=K, show_progress=False)
            theirs = implicits(model, train, test, K)
            assert set(ours) == {"precision", "map", "ndcg", "auc"}
            for name in ours:
                # The same lists; only the order of float64 sums over 300 users differs.
                assert ours[name] == pytest.approx(theirs[name], rel=1e-12, abs=1e-15), \
                    (type(model).__module__, K, name)
            assert 0.05 < ours["ndcg"] < 0.95  # neither trivial nor perfect
            assert all(type(v) is float for v in ours.values())
        assert evaluation.ndcg_at_k(model, train, test, K=10, show_progress=False) == \
            ours_at(model, train, test, 10)["ndcg"]


def ours_at(model, train, test, K):
    return evaluation.ranking_metrics_at_k(model, train, test, K=K, show_progress=False)


class FixedLists:
    """A model whose top-K lists are given: the metrics' input, chosen."""

    def __init__(self, lists):
        self.lists = lists

    def recommend(self, userids, user_items, N=10):
        ids = np.array([self.lists[u][:N] for u in userids], dtype=np.int32)
        return ids, np.zeros(ids.shape, np.float32)


def test_metrics_by_hand():
    # 10 items; user 0's test items {2, 5}, user 1's {7}, user 2 none (not counted).
    # K = 3: user 0's list [2, 9, 5] hits at ranks 1 and 3, user 1's [-1, -1, -1] (nothing
    # eligible) none.
    test = sp.csr_matrix((np.ones(3, np.float32), ([0, 0, 1], [2, 5, 7])), shape=(3, 10))
    train = sp.csr_matrix((3, 10), dtype=np.float32)
    model = FixedLists({0: [2, 9, 5], 1: [-1, -1, -1], 2: [0, 1, 3]})
    m = evaluation.ranking_metrics_at_k(model, train, test, K=3, show_progress=False)
    assert m["precision"] == pytest.approx((2 + 0) / (2 + 1))
    assert m["map"] == pytest.approx(((1 / 1 + 2 / 3) / 2 + 0) / 2)
    ideal0 = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx(((1 + 1 / math.log2(4)) / ideal0 + 0) / 2)
    # AUC, implicit's over the places a list fills: user 0 (2 positives, 8 negatives) misses
    # once at rank 2 with 1 hit before it, then the 7 unranked negatives count (2 + 2) / 2 each:
    # (1 + 14) / 16; user 1 (1 positive, 9 negatives) has an empty list (its -1 places are no
    # items), so all 9 negatives tie with the positive: 9 × (0 + 1) / 2 / 9 = 1 / 2. implicit
    # counts the 3 places as negatives ranked above the positive: 3 / 9.
    assert m["auc"] == pytest.approx((15 / 16 + 1 / 2) / 2)
    assert evaluation.precision_at_k(model, train, test, K=3, show_progress=False) == m["precision"]
    assert evaluation.mean_average_precision_at_k(model, train, test, K=3,
                                                  show_progress=False) == m["map"]
    assert evaluation.AUC_at_k(model, train, test, K=3, show_progress=False) == m["auc"]
    theirs = implicits(model, train, test, 3)
    for name in m:
        if name != "auc":
            assert m[name] == pytest.approx(theirs[name], rel=1e-12)
    assert theirs["auc"] == pytest.approx((15 / 16 + 3 / 9) / 2)


def test_auc_of_lists_shorter_than_k_stays_in_0_1_and_is_the_tied_ranking():
    # K above what a user can be shown (training items filtered): the padding counted as
    # ranked negatives gave an AUC of -15. Against a brute-force AUC of each user's ranking
    # (the list, then every unlisted item tied at the bottom; ties count 1/2).
    small = sp.random(50, 40, density=0.2, format="csr", dtype=np.float32, random_state=0)
    model = recforge.AlternatingLeastSquares(factors=8, iterations=2, random_state=1)
    model.fit(small, show_progress=False)
    test = sp.random(50, 40, density=0.1, format="csr", dtype=np.float32, random_state=3)
    for K in (40, 1000):
        m = evaluation.ranking_metrics_at_k(model, small, test, K=K, show_progress=False)
        assert 0 <= m["auc"] <= 1
        ids, _ = model.recommend(np.arange(50), small, N=K)
        aucs = []
        for u in range(50):
            pos = set(test[u].indices)
            if not pos:
                continue
            listed = [i for i in ids[u] if i >= 0]
            place = {i: r for r, i in enumerate(listed)}
            bottom = len(listed)  # every unlisted item shares the last place
            pairs = [(p, n) for p in pos for n in range(40) if n not in pos]
            won = sum(1.0 if place.get(p, bottom) < place.get(n, bottom) else
                      0.5 if place.get(p, bottom) == place.get(n, bottom) else 0.0
                      for p, n in pairs)
            aucs.append(won / len(pairs))
        assert m["auc"] == pytest.approx(np.mean(aucs), rel=1e-12)


def test_leave_k_out_split_holds_out_k_entries_of_each_eligible_user():
    lil = planted(8, users=120, items=60, per_user=6).tolil()
    lil.rows[3], lil.data[3] = [], []  # a user with no entries
    lil.rows[4], lil.data[4] = lil.rows[4][:2], lil.data[4][:2]  # and one with 2 (K = 1: not eligible)
    ratings = lil.tocsr()
    for K in (1, 3):
        train, test = evaluation.leave_k_out_split(ratings, K=K, random_state=4)
        assert (train + test != ratings).nnz == 0
        assert (train.multiply(test)).nnz == 0
        counts = np.diff(ratings.indptr)
        held = np.diff(test.indptr)
        assert np.array_equal(held, np.where(counts > K + 1, K, 0))
        again = evaluation.leave_k_out_split(ratings, K=K, random_state=4)[1]
        assert (again != test).nnz == 0, "the same random_state gives the same split"
    other = evaluation.leave_k_out_split(ratings, K=1, random_state=5)[1]
    assert (other != evaluation.leave_k_out_split(ratings, K=1, random_state=4)[1]).nnz > 0
    _, test = evaluation.leave_k_out_split(ratings, K=1, train_only_size=0.5, random_state=4)
    assert np.count_nonzero(np.diff(test.indptr)) == pytest.approx(118 / 2, abs=1)


def test_bad_input_is_refused_with_a_sentence():
    ratings = planted(1, users=20, items=12, groups=3, per_user=3)
    model = recforge.AlternatingLeastSquares(factors=4, iterations=1, random_state=1)
    model.fit(ratings, show_progress=False)
    with pytest.raises(ValueError, match=r"K is 0; expected an integer >= 1"):
        evaluation.ranking_metrics_at_k(model, ratings, ratings, K=0)
    with pytest.raises(ValueError, match=r"train_user_items has shape \(20, 12\) and "
                                         r"test_user_items \(20, 11\)"):
        evaluation.ranking_metrics_at_k(model, ratings, ratings[:, :11], K=5)
    with pytest.raises(ValueError, match=r"test_user_items must be a scipy.sparse matrix"):
        evaluation.ranking_metrics_at_k(model, ratings, ratings.toarray(), K=5)
    with pytest.raises(ValueError, match=r"test_user_items has no entries"):
        evaluation.ranking_metrics_at_k(model, ratings, sp.csr_matrix(ratings.shape), K=5)
    with pytest.raises(ValueError, match=r"K is 0; expected an integer >= 1"):
        evaluation.leave_k_out_split(ratings, K=0)
    with pytest.raises(ValueError, match=r"train_only_size is 1.0; expected a number in \[0, 1\)"):
        evaluation.leave_k_out_split(ratings, train_only_size=1.0)
