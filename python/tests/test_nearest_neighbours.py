"""recforge.nearest_neighbours' weightings against implicit 0.7's (installed in .venv for the
benchmarks): the same NumPy operations in the same order, so the same values to the bit."""

import numpy as np
import pytest
import scipy.sparse as sp

import recforge
from recforge import nearest_neighbours as nn

implicit_nn = pytest.importorskip(
    "implicit.nearest_neighbours", reason="implicit (tools/requirements.txt) is the reference")


def plays(dtype, seed=3):
    m = sp.random(300, 80, density=0.05, format="csr", dtype=np.float64, random_state=seed)
    m.data = np.ceil(m.data * 50).astype(dtype)  # play counts 1 .. 50
    m = m.astype(dtype)
    m.data[m.indices == 7] = 0  # an item nobody played
    m.eliminate_zeros()
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weightings_equal_implicits(dtype):
    X = plays(dtype)
    cases = [(nn.bm25_weight(X), implicit_nn.bm25_weight(X)),
             (nn.bm25_weight(X, K1=1.2, B=0.75), implicit_nn.bm25_weight(X, K1=1.2, B=0.75)),
             (nn.tfidf_weight(X), implicit_nn.tfidf_weight(X)),
             (nn.normalize(X), implicit_nn.normalize(X))]
    for ours, theirs in cases:
        assert sp.isspmatrix_coo(ours) or ours.format == "coo"
        assert ours.dtype == theirs.dtype
        assert np.array_equal(ours.row, theirs.row) and np.array_equal(ours.col, theirs.col)
        assert np.array_equal(ours.data, theirs.data)
    # The input is left as it was.
    assert np.array_equal(X.data, plays(dtype).data)
    # BM25 by its formula for one entry, in float64.
    w = nn.bm25_weight(X, K1=100, B=0.8).tocsr()
    r, c = X.nonzero()
    u, i = r[0], c[0]
    rows = np.asarray(X.sum(axis=1)).ravel()
    idf = np.log(300) - np.log1p((X[:, i] != 0).sum())
    x = float(X[u, i])
    want = x * 101 / (100 * (0.2 + 0.8 * rows[u] / rows.mean()) + x) * idf
    assert w[u, i] == pytest.approx(want, rel=1e-12)
    # normalize: unit rows.
    norms = np.sqrt(np.asarray(nn.normalize(X).tocsr().multiply(nn.normalize(X).tocsr()).sum(axis=1)))
    nonempty = np.diff(X.indptr) > 0
    assert np.allclose(norms[nonempty], 1.0, rtol=1e-6)


def test_implicits_readme_pattern_runs_after_changing_the_import():
    X = plays(np.float32)
    model = recforge.AlternatingLeastSquares(factors=8, iterations=2, random_state=1)
    model.fit(nn.bm25_weight(X, K1=100, B=0.8).tocsr(), show_progress=False)
    ids, _ = model.recommend(0, X[0], N=5)
    assert len(ids) == 5


def test_bad_input_is_refused_with_a_sentence():
    X = plays(np.float32)
    with pytest.raises(ValueError, match=r"X must be a scipy.sparse matrix; got ndarray"):
        nn.bm25_weight(X.toarray())
    with pytest.raises(ValueError, match=r"K1 is -1; expected a finite number >= 0"):
        nn.bm25_weight(X, K1=-1)
    with pytest.raises(ValueError, match=r"B is 2; expected a number in \[0, 1\]"):
        nn.bm25_weight(X, B=2)
    with pytest.raises(ImportError):
        from recforge.nearest_neighbours import BM25Recommender  # noqa: F401
