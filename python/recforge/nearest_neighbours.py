"""implicit 0.7's matrix weightings of ``implicit.nearest_neighbours``: ``bm25_weight``,
``tfidf_weight`` and ``normalize``, with the same arguments and results (docs/python.md).

implicit's README and examples weight the user × item matrix before fitting ALS
(``model.fit(bm25_weight(plays, K1=100, B=0.8).tocsr())``); with these, that code runs after
changing only the import. BM25 is also the engine's ``weighting.scheme: bm25``
(docs/data.md), the same formula with users as documents and items as terms. implicit's
item-item recommenders (``ItemItemRecommender``, ``CosineRecommender``, ``BM25Recommender``,
``TFIDFRecommender``) are not embedding models and are not provided.
"""

import numpy as np

from .evaluation import _matrix

__all__ = ["bm25_weight", "tfidf_weight", "normalize"]


def _coo(X, name):
    X = _matrix(X, name)  # a 2-D SciPy sparse matrix, or ValueError
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} has values of type {X.dtype}; expected real numbers")
    return X.tocoo(copy=True)


def _idf(X):
    # log(rows) − log(1 + rows holding the column), per column
    return np.log(float(X.shape[0])) - np.log1p(np.bincount(X.col, minlength=X.shape[1]))


def bm25_weight(X, K1=100, B=0.8):
    """BM25 of every entry of X, rows as documents and columns as terms:
    x·(K1 + 1) / (K1·((1 − B) + B·rowsum / mean rowsum) + x) · idf(column), as a coo_matrix
    (float64 values, as implicit's)."""
    X = _coo(X, "X")
    if not (np.isfinite(K1) and K1 >= 0):
        raise ValueError(f"K1 is {K1!r}; expected a finite number >= 0")
    if not 0 <= B <= 1:
        raise ValueError(f"B is {B!r}; expected a number in [0, 1]")
    row_sums = np.ravel(X.sum(axis=1))
    length_norm = (1.0 - B) + B * row_sums / row_sums.mean()
    X.data = X.data * (K1 + 1.0) / (K1 * length_norm[X.row] + X.data) * _idf(X)[X.col]
    return X


def tfidf_weight(X):
    """sqrt(x) · idf(column) of every entry of X, as a coo_matrix."""
    X = _coo(X, "X")
    X.data = np.sqrt(X.data) * _idf(X)[X.col]
    return X


def normalize(X):
    """Every row of X divided by its Euclidean norm, as a coo_matrix."""
    X = _coo(X, "X")
    norms = np.sqrt(np.bincount(X.row, X.data ** 2, minlength=X.shape[0]))
    X.data = X.data / norms[X.row]
    return X
