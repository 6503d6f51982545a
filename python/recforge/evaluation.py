"""Splits and ranking metrics with implicit 0.7's ``implicit.evaluation`` API (docs/python.md).

``train_test_split`` gives implicit's split for the same ``random_state``. The metrics take any
model with implicit's ``recommend(userids, user_items, N=K)`` (recforge's, or implicit's own)
and return implicit's numbers: the top-K lists come from one batched ``recommend`` call per
block of users (recforge: the engine's exact top-k in C++), and the metrics are computed from
them with NumPy in float64, by implicit's definitions:

- ``precision``: test items among the top K, summed over the users with a test item, divided by
  the sum of min(K, the user's test items) (so a user with fewer than K test items is not
  penalised for the rest of the list);
- ``map``: the mean over those users of the average precision at K, Σ over hits of
  (hits so far / rank), divided by min(K, test items);
- ``ndcg``: the mean of DCG@K / ideal DCG@K with binary gains and 1 / log2(rank + 1) discounts;
- ``auc``: the mean of implicit's AUC limited to the top K (the items below the list count as
  ranked in random order).

The top-K lists leave out each user's training items (``filter_already_liked_items``), and a
list shorter than K (fewer eligible items) counts its missing places as misses.
"""

import numpy as np

__all__ = ["train_test_split", "leave_k_out_split", "precision_at_k",
           "mean_average_precision_at_k", "ndcg_at_k", "AUC_at_k", "ranking_metrics_at_k"]

# Users per recommend call (as implicit's 1,000): bounds the lists and the masks of one call, and
# lets the tqdm bar move (a call at 1,024 factors on Gowalla's 41k items takes about 0.6 s).
_BLOCK_USERS = 1024


def _sparse():
    try:
        import scipy.sparse
    except ImportError as e:  # pragma: no cover - scipy is an optional dependency
        raise ImportError("recforge.evaluation needs SciPy (pip install scipy)") from e
    return scipy.sparse


def _rng(random_state):
    """implicit's utils.check_random_state: a NumPy Generator from a seed, None, a Generator, or
    a legacy RandomState (which seeds a new Generator with one of its draws)."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31))
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise ValueError(f"random_state must be None, an integer, a numpy Generator or a "
                     f"RandomState; got {type(random_state).__name__}")


def _matrix(m, name):
    sparse = _sparse()
    if not sparse.issparse(m):
        raise ValueError(f"{name} must be a scipy.sparse matrix; got {type(m).__name__}")
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D; it has shape {m.shape}")
    return m


def train_test_split(ratings, train_percentage=0.8, random_state=None):
    """Splits the entries of ``ratings`` at random: each goes to the training matrix with
    probability ``train_percentage``, else to the test matrix (entries below 0 in the test
    matrix are dropped). The same split as implicit's for the same ``random_state``.

    Returns
    -------
    (train, test) : two scipy.sparse.csr_matrix of the shape of ``ratings``.
    """
    sparse = _sparse()
    ratings = _matrix(ratings, "ratings")
    p = float(train_percentage)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"train_percentage is {train_percentage}; expected a number in [0, 1]")
    coo = ratings.tocoo()
    draw = _rng(random_state).random(len(coo.data))
    into_train = draw < p
    parts = []
    for keep in (into_train, ~into_train):
        parts.append(sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])),
                                       shape=coo.shape, dtype=coo.dtype))
    train, test = parts
    test.data[test.data < 0] = 0
    test.eliminate_zeros()
    return train, test


def leave_k_out_split(ratings, K=1, train_only_size=0.0, random_state=None):
    """Leave-K-out: every user with more than K + 1 entries has K of them, chosen at random,
    in the test matrix and the rest in the training matrix; other users are wholly in the
    training matrix. ``train_only_size`` (a fraction in [0, 1)) keeps that share of the users,
    chosen at random, in the training matrix only.

    As implicit's, except that the split depends only on ``random_state``: implicit also draws
    from NumPy's global generator, so its split cannot be repeated from its arguments.

    Returns
    -------
    (train, test) : two scipy.sparse.csr_matrix of the shape of ``ratings``.
    """
    sparse = _sparse()
    ratings = _matrix(ratings, "ratings")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K is {K!r}; expected an integer >= 1")
    if not 0.0 <= float(train_only_size) < 1.0:
        raise ValueError(f"train_only_size is {train_only_size}; expected a number in [0, 1)")
    rng = _rng(random_state)
    coo = ratings.tocoo()
    users = np.asarray(coo.row, dtype=np.int64)
    unique_users, counts = np.unique(users, return_counts=True)
    candidates = counts > K + 1
    if train_only_size > 0.0:
        held = rng.choice(len(unique_users), size=max(1, int(len(unique_users) * train_only_size)),
                          replace=False)
        candidates[held] = False
    in_test_user = np.zeros(ratings.shape[0], dtype=bool)
    in_test_user[unique_users[candidates]] = True
    entry = np.flatnonzero(in_test_user[users])
    # A random order of each candidate user's entries (sort by user, ties by a random key): the
    # first K of each user go to the test matrix.
    order = entry[np.lexsort((rng.random(len(entry)), users[entry]))]
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    test_mask = np.zeros(len(users), dtype=bool)
    test_mask[order[rank < K]] = True
    parts = []
    for keep in (~test_mask, test_mask):
        parts.append(sparse.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])),
                                       shape=coo.shape, dtype=coo.dtype))
    return parts[0], parts[1]


def ranking_metrics_at_k(model, train_user_items, test_user_items, K=10, show_progress=True,
                         num_threads=1):
    """Precision, MAP, NDCG and AUC at K of ``model`` on the users with a test item (module
    docstring for the definitions), ranking every item but the user's training items.

    Parameters
    ----------
    model
        A fitted model with implicit's ``recommend(userids, user_items, N=K)``.
    train_user_items : scipy.sparse matrix
        Users × items: what the model was trained on (left out of each user's list).
    test_user_items : scipy.sparse matrix
        Users × items of the same shape: the held-out entries.
    K : int
        Length of the lists.
    show_progress : bool
        A tqdm bar over the users (when tqdm is installed).
    num_threads : int
        Accepted for implicit's signature; the model's calls use its own ``num_threads``.

    Returns
    -------
    dict with "precision", "map", "ndcg" and "auc" (floats).
    """
    sparse = _sparse()
    train = _matrix(train_user_items, "train_user_items").tocsr()
    test = _matrix(test_user_items, "test_user_items").tocsr()
    if train.shape != test.shape:
        raise ValueError(f"train_user_items has shape {train.shape} and test_user_items "
                         f"{test.shape}; expected the same users × items")
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K is {K!r}; expected an integer >= 1")
    K = int(K)
    n_users, n_items = test.shape
    # The distinct test items of every user (implicit counts each once), as sorted keys
    # user * n_items + item.
    test = sparse.csr_matrix(test, copy=True)
    test.sum_duplicates()  # stored zeros stay test items, as in implicit
    likes = np.diff(test.indptr).astype(np.int64)
    keys = np.repeat(np.arange(n_users, dtype=np.int64), likes) * n_items + test.indices
    users = np.flatnonzero(likes > 0)
    bar = None
    if show_progress:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(users))
        except ImportError:
            bar = None
    cg = 1.0 / np.log2(np.arange(2, K + 2))
    cg_sum = np.cumsum(cg)
    relevant = pr_div = mean_ap = ndcg = mean_auc = 0.0
    try:
        for start in range(0, len(users), _BLOCK_USERS):
            block = users[start:start + _BLOCK_USERS]
            ids, _ = model.recommend(block, train[block], N=K)
            ids = np.asarray(ids, dtype=np.int64).reshape(len(block), -1)
            if ids.shape[1] < K:  # a short list: its missing places are misses
                ids = np.hstack([ids, np.full((len(block), K - ids.shape[1]), -1, np.int64)])
            ids = ids[:, :K]
            q = block[:, None].astype(np.int64) * n_items + ids
            pos = np.searchsorted(keys, q)
            hit = (ids >= 0) & (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == q)
            n_pos = likes[block].astype(np.float64)
            cap = np.minimum(K, likes[block])
            hits_so_far = np.cumsum(hit, axis=1)
            rank = np.arange(1, K + 1)
            relevant += hit.sum()
            pr_div += cap.sum()
            mean_ap += (np.where(hit, hits_so_far / rank, 0.0).sum(axis=1) / cap).sum()
            ndcg += ((hit * cg).sum(axis=1) / cg_sum[cap - 1]).sum()
            n_hit = hits_so_far[:, -1]
            n_neg = n_items - n_pos
            # implicit's AUC, over the places the list fills: a list shorter than K (fewer
            # items than K can be shown) has no negatives in its padding. Counting the padding
            # as ranked negatives (K - hits) gave AUCs below 0 once K passed what a user can be
            # shown.
            listed = ids >= 0
            listed_neg = listed.sum(axis=1) - n_hit
            auc = (np.where(hit | ~listed, 0, hits_so_far).sum(axis=1) +
                   (n_hit + n_pos) / 2.0 * (n_neg - listed_neg))
            mean_auc += (auc / (n_pos * n_neg)).sum()
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    total = len(users)
    if total == 0:
        raise ValueError("test_user_items has no entries; expected at least one user with a "
                         "test item")
    return {"precision": float(relevant / pr_div), "map": float(mean_ap / total),
            "ndcg": float(ndcg / total), "auc": float(mean_auc / total)}


def precision_at_k(model, train_user_items, test_user_items, K=10, show_progress=True,
                   num_threads=1):
    """``ranking_metrics_at_k(...)["precision"]``."""
    return ranking_metrics_at_k(model, train_user_items, test_user_items, K, show_progress,
                                num_threads)["precision"]


def mean_average_precision_at_k(model, train_user_items, test_user_items, K=10,
                                show_progress=True, num_threads=1):
    """``ranking_metrics_at_k(...)["map"]``."""
    return ranking_metrics_at_k(model, train_user_items, test_user_items, K, show_progress,
                                num_threads)["map"]


def ndcg_at_k(model, train_user_items, test_user_items, K=10, show_progress=True,
              num_threads=1):
    """``ranking_metrics_at_k(...)["ndcg"]``."""
    return ranking_metrics_at_k(model, train_user_items, test_user_items, K, show_progress,
                                num_threads)["ndcg"]


def AUC_at_k(model, train_user_items, test_user_items, K=10, show_progress=True,  # noqa: N802
             num_threads=1):
    """``ranking_metrics_at_k(...)["auc"]``."""
    return ranking_metrics_at_k(model, train_user_items, test_user_items, K, show_progress,
                                num_threads)["auc"]
