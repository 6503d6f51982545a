"""implicit 0.7's model classes over recforge's engine.

``AlternatingLeastSquares``, ``BayesianPersonalizedRanking`` and ``SampledSoftmax`` take
implicit's constructor arguments (same names, order and defaults where they mean the same) and
offer implicit's methods (``fit``, ``recommend``, ``similar_items``, ``similar_users``,
``explain``, ``partial_fit_users``, ``partial_fit_items``, ``save``, ``load``) with the same
argument order and return types. Training, top-k retrieval and fold-in run in the engine
(recforge's C++/CUDA code), with the GIL released.

Each constructor argument becomes one key of the engine's config (docs/configuration.md, the
``model`` and ``train`` sections); a value the engine refuses raises ``ValueError`` naming the
argument and its config key.
"""

import json
import os
import re
import time
import warnings

import numpy as np

from . import _recforge

try:  # optional, as in implicit: without tqdm, fit shows no progress bar
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

__all__ = [
    "AlternatingLeastSquares",
    "BayesianPersonalizedRanking",
    "SampledSoftmax",
    "CosineContrastive",
    "MatrixFactorizationBase",
    "ParameterWarning",
]


class ParameterWarning(Warning):
    """Warned when an argument is converted (e.g. a sparse matrix that is not CSR)."""


def _scipy_sparse():
    import scipy.sparse  # only the methods that take sparse matrices need SciPy

    return scipy.sparse


def _yaml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return json.dumps(str(v))  # a JSON string is a YAML string


def _csr(matrix, name, rows=None, cols=None):
    """`matrix` as a canonical float32 CSR matrix (converted with a warning when another sparse
    format, refused with ValueError when not sparse), with (rows, cols) checked when given."""
    sparse = _scipy_sparse()
    if not sparse.issparse(matrix):
        raise ValueError(
            f"{name} must be a scipy.sparse CSR matrix (users × items for user_items, items × "
            f"users for item_users); got {type(matrix).__name__}"
        )
    if matrix.ndim == 1:
        # A row of a csr_array (A[u]) is a 1-D sparse array: one row, as a matrix's A[u] is.
        matrix = sparse.csr_matrix(matrix.reshape((1, matrix.shape[0])))
    if matrix.format != "csr":
        start = time.time()
        kind = type(matrix).__name__
        matrix = sparse.csr_matrix(matrix)
        warnings.warn(
            f"{name}: expected a CSR matrix, got {kind}; converting it to CSR took "
            f"{time.time() - start:.3g} seconds",
            ParameterWarning,
            stacklevel=3,
        )
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D; it has shape {matrix.shape}")
    if rows is not None and matrix.shape[0] != rows:
        raise ValueError(f"{name} has {matrix.shape[0]} rows; expected {rows}")
    if cols is not None and matrix.shape[1] != cols:
        raise ValueError(f"{name} has {matrix.shape[1]} columns; expected {cols}")
    if matrix.dtype.kind not in "biuf":
        raise ValueError(f"{name} has values of type {matrix.dtype}; expected real numbers")
    _check_csr_structure(matrix, name)
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float32)
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix


def _check_csr_structure(matrix, name):
    """Refuses a CSR matrix whose arrays do not describe one (SciPy builds it from any arrays,
    and its own sum_duplicates or astype then read out of bounds and crash the process), with
    the sentences of the engine's check."""
    rows, cols = matrix.shape
    indptr, indices = np.asarray(matrix.indptr), np.asarray(matrix.indices)
    nnz = len(indices)
    if indptr.ndim != 1 or len(indptr) != rows + 1:
        raise ValueError(f"{name}: indptr has {indptr.size} entries; expected rows + 1 = {rows + 1}")
    if indices.ndim != 1 or np.ndim(matrix.data) != 1 or len(matrix.data) != nnz:
        raise ValueError(f"{name}: indices ({indices.size}) and data ({np.size(matrix.data)}) must "
                         f"be 1-D arrays of the same length")
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise ValueError(f"{name}: indptr runs from {int(indptr[0])} to {int(indptr[-1])}; "
                         f"expected 0 to the number of stored values {nnz}")
    down = np.flatnonzero(np.diff(indptr) < 0)
    if down.size:
        raise ValueError(f"{name}: indptr decreases at row {int(down[0])}; expected a CSR matrix")
    if nnz:
        outside = np.flatnonzero((indices < 0) | (indices >= cols))
        if outside.size:
            e = int(outside[0])
            row = int(np.searchsorted(indptr, e, side="right")) - 1
            raise ValueError(f"{name}: column {int(indices[e])} in row {row} is outside [0, {cols})")


def _csr_arrays(matrix):
    return (
        np.asarray(matrix.indptr, dtype=np.int64),
        np.asarray(matrix.indices, dtype=np.int32),
        np.asarray(matrix.data, dtype=np.float32),
    )


# Rows of a factor matrix that ids may reach: the engine's user and item indices are int32.
_MAX_ROWS = 2**31 - 1


def _ids(ids, name, limit, allow_new=False):
    """Integer ids as an int64 array (a scalar stays a scalar), checked against [0, limit)."""
    scalar = np.ndim(ids) == 0  # a 0-d array too
    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        if a.size == 0:
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{name} must be an integer or an array of integers; got {a.dtype}")
    if a.ndim > 1:
        raise ValueError(f"{name} must be an integer or a 1-D array; it has shape {a.shape}")
    # The range is checked before the cast to int64, which wraps uint64 values above its largest
    # to negative ones.
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0:
        raise IndexError(f"{name} {lo} is negative; expected ids in [0, {limit})")
    if not allow_new and a.size and hi >= limit:
        raise IndexError(f"{name} {hi} is not in the model; expected ids in [0, {limit})")
    if allow_new and hi >= _MAX_ROWS:
        raise IndexError(f"{name} {hi} is beyond the engine's ids; expected ids in "
                         f"[0, {_MAX_ROWS}) (its user and item indices are 32-bit, as implicit's)")
    a = a.astype(np.int64)
    return (int(a), True) if scalar else (a, False)


class MatrixFactorizationBase:
    """Shared base of recforge's implicit-compatible models.

    Attributes
    ----------
    user_factors : numpy.ndarray
        (users, factors) float32 array that shares memory with the engine's matrix: training
        updates it in place and writing to it changes what the model scores. Assigning an array
        copies it in. An array taken before a new ``fit`` (or a partial fit that adds rows)
        keeps the old values, detached from the model. On a GPU it is a read-only copy (assign
        to change the factors). ``None`` before ``fit``.
    item_factors : numpy.ndarray
        The same for the items.
    num_threads : int
        CPU threads for training and queries (0: all cores).
    iterations_done : int
        Iterations completed by the last ``fit`` (fewer than ``iterations`` after an interrupt).
    """

    # (argument, config key) of the common arguments; subclasses add theirs.
    _model_type = None
    _keys = ()

    def __init__(self, num_threads=0, random_state=None, device="auto", use_gpu=None):
        self.num_threads = num_threads
        self.random_state = random_state
        if use_gpu is not None:
            wanted = "cuda" if use_gpu else "cpu"
            if device not in ("auto", wanted) and not (use_gpu and str(device).startswith("cuda")):
                raise ValueError(
                    f"use_gpu={use_gpu!r} contradicts device={device!r}; give one of them"
                )
            device = wanted if device == "auto" else device
        self.device = device
        self.fit_callback = None
        self.iterations_done = 0
        self._engine = None
        self._pending = {}  # factors assigned before the engine holds both
        self._seed = None
        self._check_config()

    # -- the engine -----------------------------------------------------------------------

    def _config_items(self):
        """(argument, config key, value) for every setting the engine gets."""
        items = [(arg, key, getattr(self, arg) if getter is None else getter(self))
                 for arg, key, getter in self._keys]
        items.append(("random_state", "model.seed", self._resolved_seed()))
        items.append(("num_threads", "train.threads", int(self.num_threads)))
        items.append(("device", "train.device", str(self.device)))
        return items

    def _resolved_seed(self):
        """An int seed from random_state (int, None, RandomState or Generator): an int as it is,
        else drawn once per fit (fit() clears it), so refits differ as implicit's do."""
        rs = self.random_state
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool):
            return int(rs)
        if self._seed is None:
            if isinstance(rs, np.random.RandomState):
                self._seed = int(rs.randint(2**31))
            else:
                try:
                    self._seed = int(np.random.default_rng(rs).integers(2**31))
                except (TypeError, ValueError):
                    raise ValueError(
                        f"{type(self).__name__} argument 'random_state' (model.seed): expected an "
                        f"int, None, a numpy.random.Generator or RandomState, got {rs!r}"
                    ) from None
        return self._seed

    def _build_engine(self):
        lines = ["model:", f"  type: {self._model_type}"]
        origin = {}
        section = "model"
        for arg, key, value in self._config_items():
            sec, name = key.split(".")
            if sec != section:
                lines.append(f"{sec}:")
                section = sec
            lines.append(f"  {name}: {_yaml_value(value)}")
            origin[len(lines)] = (arg, key)
        cls = type(self).__name__
        try:
            return _recforge._Engine("\n".join(lines) + "\n", cls)
        except ValueError as e:
            raise ValueError(self._rewrite(str(e), cls, origin)) from None

    @staticmethod
    def _rewrite(message, cls, origin):
        """The engine's "Class:LINE:COL: model.key: ..." as "Class argument 'arg' (model.key): ...",
        and any other mention of a config key with its argument."""
        m = re.match(rf"{re.escape(cls)}:(\d+):\d+: ", message)
        if m and int(m.group(1)) in origin:
            arg, key = origin[int(m.group(1))]
            rest = message[m.end():]
            if rest.startswith(key):
                rest = rest[len(key):]
            return f"{cls} argument {arg!r} ({key}){rest}"
        for arg, key in origin.values():
            message = re.sub(rf"(?<![\w.]){re.escape(key)}\b", f"{key} (argument {arg!r})", message)
        return message if message.startswith(cls) else f"{cls}: {message}"

    def _check_config(self):
        self._build_engine()

    def _need_fit(self):
        self._sync()
        if self._engine is None:
            p = self._pending
            if "user_factors" in p and "item_factors" in p:
                raise ValueError(f"user_factors has {p['user_factors'].shape[1]} columns and "
                                 f"item_factors {p['item_factors'].shape[1]}; assign both with "
                                 f"the same number of columns")
            raise ValueError(f"this {type(self).__name__} has no factors yet; call fit() first")

    def _sync(self):
        """Hands factors assigned before the engine existed to the engine. Matrices of different
        widths stay pending (a new width is assigned one matrix at a time), and a failure leaves
        the model as it was."""
        p = self._pending
        if "user_factors" in p and "item_factors" in p:
            users, items = p["user_factors"], p["item_factors"]
            if users.shape[1] != items.shape[1]:
                return
            factors = self.factors
            if users.shape[1] != self.factors_dim():
                self.factors = users.shape[1] - (self.factors_dim() - self.factors)
            try:
                engine = self._build_engine()
                engine.set_factors(users, items)
            except BaseException:
                self.factors = factors
                raise
            del p["user_factors"], p["item_factors"]
            self._engine = engine

    # -- pickle and copy (joblib, multiprocessing, copy.deepcopy), as implicit's models ------

    def __getstate__(self):
        """The arguments and the factors (copied out of the engine, which is not pickled: it is
        built again from them)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_engine", "_pending")}
        if self._engine is not None:
            state["_pending"] = {w: np.array(self._get(w)) for w in ("user_factors", "item_factors")}
        else:
            state["_pending"] = {w: np.array(a) for w, a in self._pending.items()}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._engine = None
        self._sync()

    def factors_dim(self):
        """Columns of the factor matrices (``factors``, + 1 with ``item_bias``)."""
        return int(self.factors) + (1 if getattr(self, "item_bias", False) else 0)

    def _sizes(self):
        """(users, items) of the fitted model, without taking a view of the factors (a view
        handed out stops the engine from keeping what queries derive from them)."""
        return self._engine.sizes()

    # -- factors --------------------------------------------------------------------------

    def _get(self, which):
        if which in self._pending:
            return self._pending[which]
        if self._engine is None:
            return None
        return self._engine.user_view(self) if which == "user_factors" else self._engine.item_view(self)

    def _set(self, which, value):
        if value is None:
            self._pending.pop(which, None)
            if self._engine is not None:
                other = "item_factors" if which == "user_factors" else "user_factors"
                self._pending[other] = np.array(self._get(other))
                self._engine = None
            return
        a = np.asarray(value)
        if a.ndim != 2 or a.dtype.kind not in "biuf":
            raise ValueError(f"{which} must be a 2-D array of numbers; got {a.dtype} with shape "
                             f"{a.shape}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        if self._engine is None:
            self._pending[which] = a.copy()
            self._sync()
            return
        other = "item_factors" if which == "user_factors" else "user_factors"
        if a.shape[1] != self.factors_dim():
            self._pending = {which: a.copy(), other: np.array(self._get(other))}
            self._engine = None
            self._sync()
            return
        users = a if which == "user_factors" else self._engine.user_view(self)
        items = a if which == "item_factors" else self._engine.item_view(self)
        self._engine.set_factors(users, items)

    user_factors = property(lambda self: self._get("user_factors"),
                            lambda self, v: self._set("user_factors", v),
                            doc="(users, factors) float32 factors sharing the engine's memory.")
    item_factors = property(lambda self: self._get("item_factors"),
                            lambda self, v: self._set("item_factors", v),
                            doc="(items, factors) float32 factors sharing the engine's memory.")

    @property
    def user_norms(self):
        """Euclidean norm of each user's factors (0 replaced by 1e-10, as implicit does)."""
        self._need_fit()
        return self._engine.norms(True)

    @property
    def item_norms(self):
        """Euclidean norm of each item's factors (0 replaced by 1e-10, as implicit does)."""
        self._need_fit()
        return self._engine.norms(False)

    # -- training -------------------------------------------------------------------------

    def fit(self, user_items, show_progress=True, callback=None):
        """Trains the model on a users × items matrix of interactions.

        Parameters
        ----------
        user_items : scipy.sparse.csr_matrix
            (users, items) matrix of confidences (finite, >= 0). Other sparse formats are
            converted with a ``ParameterWarning``; values of other types become float32.
        show_progress : bool, optional
            Show a tqdm progress bar (with the loss when ``calculate_training_loss``); nothing is
            shown when tqdm is not installed.
        callback : callable, optional
            Called after every iteration as ``callback(iteration, seconds, loss)`` (iteration from
            0, the iteration's seconds, the loss or ``None``); ``fit_callback`` when not given.

        Notes
        -----
        As in implicit, a model that already has factors (an earlier ``fit``, or factors
        assigned) continues from them: each side whose width is ``factors`` starts from its
        current rows, and rows for ids the new matrix adds start at random (set
        ``user_factors`` and ``item_factors`` to ``None`` to start over). Each iteration runs in
        the engine with the GIL released. Ctrl-C (SIGINT) raises
        ``KeyboardInterrupt`` at the end of the iteration in progress: the model then holds the
        factors of the last complete iteration (``iterations_done`` says how many), or, when no
        iteration completed, the factors it had before this call (``None`` if it was unfitted).
        An error raised by an iteration (for example non-finite factors) leaves the model as it
        was before this call, since that iteration's factors are incomplete.
        """
        ui = _csr(user_items, "user_items")
        self._seed = None  # a new draw from a random_state that is not an int
        engine = self._build_engine()
        engine.set_data(*_csr_arrays(ui), ui.shape[0], ui.shape[1])
        previous, previous_pending, previous_done = self._engine, self._pending, self.iterations_done
        if callback is None:
            callback = self.fit_callback
        show_loss = bool(getattr(self, "calculate_training_loss", False))
        bar = None
        try:
            engine.init()
            self._continue_from(engine, previous, previous_pending)
            self._engine, self._pending, self.iterations_done = engine, {}, 0
            if show_progress and _tqdm is not None:
                bar = _tqdm(total=engine.iterations)
            for it in range(engine.iterations):
                start = time.time()
                engine.iterate()
                self.iterations_done = engine.iterations_done
                loss = engine.loss() if show_loss else None
                if bar is not None:
                    bar.update(1)
                    if loss is not None:
                        bar.set_postfix({"loss": loss})
                if callback is not None:
                    callback(it, time.time() - start, loss)
        except BaseException:
            # The engine's count, not the loop's: a Ctrl-C that arrived during iterate() is
            # raised as the call returns, after that iteration completed.
            done = engine.iterations_done
            if done == 0 or engine.partial:
                # Nothing complete, or an iteration that failed had already written to the
                # factors: the model as it was before this call.
                self._engine, self._pending = previous, previous_pending
                self.iterations_done = previous_done
            else:
                self.iterations_done = done
            raise
        finally:
            if bar is not None:
                bar.close()
            engine.drop_data()
        return None

    def _continue_from(self, engine, previous, pending):
        """As implicit's ``fit``, a side that already has factors (from an earlier fit, or
        assigned) starts from them instead of random ones, when their width is the model's:
        its rows 0..n-1 are copied over the engine's random initial rows; rows of ids the new
        matrix adds keep their random start, and rows past its shape are dropped. A side set to
        ``None``, or of another width, starts from random factors."""
        dim = self.factors_dim()
        start = {}
        for which, is_users in (("user_factors", True), ("item_factors", False)):
            if which in pending:
                old = pending[which]
            elif previous is not None:
                # A view of the model being replaced (no copy; the engine copies the rows).
                old = previous.user_view(self) if is_users else previous.item_view(self)
            else:
                old = None
            if old is not None and old.shape[1] == dim and old.shape[0] > 0:
                start[which] = old
        if start:
            engine.start_from(start.get("user_factors"), start.get("item_factors"))

    def _fold_in_users(self, user_items):
        return self._engine.fold_in_users(*_csr_arrays(user_items))

    def recalculate_user(self, userid, user_items):
        """Factors of user(s) computed from ``user_items`` by the model's own solve.

        Parameters
        ----------
        userid : int or array_like
            The user or users (only their number matters).
        user_items : scipy.sparse.csr_matrix
            One row of item confidences per user.

        Returns
        -------
        numpy.ndarray
            (factors,) for an int ``userid``, else (len(userid), factors).
        """
        self._need_fit()
        scalar = np.ndim(userid) == 0  # a 0-d array too
        n = 1 if scalar else len(userid)
        ui = _csr(user_items, "user_items", rows=n, cols=self._sizes()[1])
        f = self._fold_in_users(ui)
        return f[0] if scalar else f

    def recalculate_item(self, itemid, item_users):
        """Factors of item(s) computed from ``item_users`` (one row of user confidences per
        item) by the model's solve with users and items exchanged; see ``recalculate_user``."""
        self._need_fit()
        scalar = np.ndim(itemid) == 0  # a 0-d array too
        n = 1 if scalar else len(itemid)
        iu = _csr(item_users, "item_users", rows=n, cols=self._sizes()[0])
        f = self._engine.fold_in_items(*_csr_arrays(iu))
        return f[0] if scalar else f

    def partial_fit_users(self, userids, user_items):
        """Recomputes the factors of ``userids`` from their rows of ``user_items``.

        Ids beyond the model's users grow ``user_factors`` (new rows start at zero; rows not
        in ``userids`` keep zero). The items stay fixed.

        Parameters
        ----------
        userids : array_like of int
            The users to recompute.
        user_items : scipy.sparse.csr_matrix
            (len(userids), items) confidences, row i for userids[i].
        """
        self._partial_fit(userids, user_items, users=True)

    def partial_fit_items(self, itemids, item_users):
        """Recomputes the factors of ``itemids`` from their rows of ``item_users`` (items ×
        users confidences), growing ``item_factors`` for new ids; the users stay fixed."""
        self._partial_fit(itemids, item_users, users=False)

    def _partial_fit(self, ids, matrix, users):
        self._need_fit()
        name = "userids" if users else "itemids"
        mname = "user_items" if users else "item_users"
        n_users, n_items = self._sizes()
        n_own, n_other = (n_users, n_items) if users else (n_items, n_users)
        ids, scalar = _ids(ids, name, n_own, allow_new=True)
        ids = np.atleast_1d(ids)
        m = _csr(matrix, mname, cols=n_other)
        if m.shape[0] != len(ids):
            raise ValueError(f"{mname} has {m.shape[0]} rows; expected one for each of the "
                             f"{len(ids)} {name}")
        f = self._fold_in_users(m) if users else self._engine.fold_in_items(*_csr_arrays(m))
        # One engine call grows the matrix and sets the rows: a Ctrl-C cannot come between.
        try:
            self._engine.set_rows(users, ids, np.ascontiguousarray(f, dtype=np.float32))
        except MemoryError:
            top = int(ids.max()) + 1 if ids.size else 0
            if top <= n_own:
                raise
            side = "user_factors" if users else "item_factors"
            dim = self.factors_dim()
            need = top * dim * 4
            raise MemoryError(
                f"{name} {top - 1}: growing {side} from {n_own:,} to {top:,} rows of "
                f"{dim} float32 factors needs {need / 2**30:.1f} GiB, which could "
                "not be allocated; the model is unchanged") from None

    # -- queries --------------------------------------------------------------------------

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True,
                  filter_items=None, recalculate_user=False, items=None):
        """The top ``N`` items for a user or users.

        Parameters
        ----------
        userid : int or array_like of int
            A user, or an array of users (row i of the result for userid[i]).
        user_items : scipy.sparse.csr_matrix
            One row per user (``len(userid)`` rows, or 1) of item confidences: filtered when
            ``filter_already_liked_items``, the input of ``recalculate_user``. Unused otherwise.
        N : int, optional
            Number of results per user.
        filter_already_liked_items : bool, optional
            Leave out the items of the user's row of ``user_items``.
        filter_items : array_like of int, optional
            Items left out for every user.
        recalculate_user : bool, optional
            Compute the user's factors from ``user_items`` (``recalculate_user``) instead of
            using the stored ones.
        items : array_like of int, optional
            Rank only these items (then at most ``len(items)`` results; not with
            ``filter_items``).

        Returns
        -------
        ids : numpy.ndarray
            (N,) item ids for an int ``userid``, (len(userid), N) for an array, best first.
            Where fewer than N items are eligible the row ends with id -1 and score -inf.
        scores : numpy.ndarray
            float32 scores (user factors · item factors) of the same shape.
        """
        self._need_fit()
        n_users, n_items = self._sizes()
        N = _count(N, "N")
        scalar = np.ndim(userid) == 0  # a 0-d array too
        n_q = 1 if scalar else len(np.atleast_1d(userid))
        if filter_already_liked_items or recalculate_user:
            ui = _csr(user_items, "user_items", cols=n_items)
            if ui.shape[0] != n_q:
                raise ValueError(f"user_items has {ui.shape[0]} rows; expected one for each of "
                                 f"the {n_q} users in userid")
            _check_values(ui, "user_items")
        if recalculate_user:
            queries = np.ascontiguousarray(self._fold_in_users(ui))
        else:
            uid, _ = _ids(userid, "userid", n_users)
            queries = self._engine.rows(True, np.atleast_1d(uid))
        global_exclude = None
        if items is not None:
            if filter_items is not None and np.size(filter_items):
                raise ValueError("give items or filter_items, not both")
            sel, _ = _ids(items, "items", n_items)
            sel = np.unique(np.atleast_1d(sel))
            N = min(N, len(sel))
            mask = np.ones(n_items, dtype=bool)
            mask[sel] = False
            global_exclude = np.flatnonzero(mask).astype(np.int32)
        elif filter_items is not None:
            f, _ = _ids(filter_items, "filter_items", n_items)
            global_exclude = np.unique(np.atleast_1d(f)).astype(np.int32)
        ex_ptr = ex_ind = None
        if filter_already_liked_items:
            ex_ptr, ex_ind, _ = _csr_arrays(ui)
        # The engine pads its lists to the k it is given: at most the items, padded here to N.
        k = min(N, n_items)
        if k == 0:
            ids = np.zeros((n_q, 0), dtype=np.int32)
            scores = np.zeros((n_q, 0), dtype=np.float32)
        else:
            ids, scores = self._engine.recommend(np.ascontiguousarray(queries, dtype=np.float32),
                                                 k, ex_ptr, ex_ind, global_exclude)
        ids, scores = _padded(ids, scores, N)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    def similar_items(self, itemid, N=10, recalculate_item=False, item_users=None,
                      filter_items=None, items=None):
        """The ``N`` items most similar to an item or items, by cosine of their factors.

        Parameters
        ----------
        itemid : int or array_like of int
            An item or an array of items. The item itself is among the results (cosine 1).
        N : int, optional
            Number of results per item.
        recalculate_item : bool, optional
            Compute the item's factors from ``item_users`` (``recalculate_item``).
        item_users : scipy.sparse.csr_matrix, optional
            One row of user confidences per item, for ``recalculate_item``.
        filter_items : array_like of int, optional
            Items never returned.
        items : array_like of int, optional
            Return only these items (not with ``filter_items``).

        Returns
        -------
        ids, scores : numpy.ndarray
            (N,) or (len(itemid), N) item ids and cosine similarities, best first.
        """
        self._need_fit()
        n_items = self._sizes()[1]
        if recalculate_item:
            q = self.recalculate_item(itemid, item_users)
            scalar = np.ndim(itemid) == 0
        else:
            iid, scalar = _ids(itemid, "itemid", n_items)
            q = self._engine.rows(False, np.atleast_1d(iid))
        return self._similar(np.atleast_2d(q), False, N, filter_items, items, "filter_items",
                             "items", scalar)

    def similar_users(self, userid, N=10, filter_users=None, users=None):
        """The ``N`` users most similar to a user or users, by cosine of their factors.

        Parameters
        ----------
        userid : int or array_like of int
            A user or an array of users. The user itself is among the results (cosine 1).
        N : int, optional
            Number of results per user.
        filter_users : array_like of int, optional
            Users never returned.
        users : array_like of int, optional
            Return only these users (not with ``filter_users``).

        Returns
        -------
        ids, scores : numpy.ndarray
            (N,) or (len(userid), N) user ids and cosine similarities, best first.
        """
        self._need_fit()
        uid, scalar = _ids(userid, "userid", self._sizes()[0])
        q = self._engine.rows(True, np.atleast_1d(uid))
        return self._similar(q, True, N, filter_users, users, "filter_users", "users", scalar)

    def _similar(self, q, users, N, filter_ids, only, filter_name, only_name, scalar):
        """Cosine top N of the queries `q` among the user (or item) rows: the engine's exact
        top-k over that side's unit rows, which it keeps while the factors are unchanged."""
        N = _count(N, "N")
        n = self._sizes()[0 if users else 1]
        global_exclude = None
        if only is not None:
            if filter_ids is not None and np.size(filter_ids):
                raise ValueError(f"give {only_name} or {filter_name}, not both")
            sel, _ = _ids(only, only_name, n)
            sel = np.unique(np.atleast_1d(sel))
            N = min(N, len(sel))
            mask = np.ones(n, dtype=bool)
            mask[sel] = False
            global_exclude = np.flatnonzero(mask).astype(np.int32)
        elif filter_ids is not None:
            f, _ = _ids(filter_ids, filter_name, n)
            global_exclude = np.unique(np.atleast_1d(f)).astype(np.int32)
        k = min(N, n)  # at most the rows searched, padded to N
        if k == 0:
            ids = np.zeros((len(q), 0), dtype=np.int32)
            scores = np.zeros((len(q), 0), dtype=np.float32)
        else:
            ids, scores = self._engine.similar(users, np.ascontiguousarray(q, dtype=np.float32),
                                               k, global_exclude)
        ids, scores = _padded(ids, scores, N)
        if scalar:
            return ids[0], scores[0]
        return ids, scores

    # -- saving ---------------------------------------------------------------------------

    def _saved(self):
        """The constructor arguments to save (implicit's names): by default those of ``_keys``,
        the dtype by its name."""
        return {a: (_dtype_name(self) if a == "dtype" else getattr(self, a))
                for a, _, _ in self._keys}

    def save(self, fileobj_or_path):
        """Saves the factors and the arguments to a NumPy ``.npz`` file (implicit's layout).

        Parameters
        ----------
        fileobj_or_path : str, os.PathLike or file-like
            Path (``.npz`` is appended by NumPy when missing) or open binary file.
        """
        if isinstance(fileobj_or_path, os.PathLike):
            fileobj_or_path = os.fspath(fileobj_or_path)
        args = dict(self._saved())
        args["num_threads"] = self.num_threads
        args["device"] = str(self.device)
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            args["random_state"] = int(self.random_state)
        if self.user_factors is not None:
            args["user_factors"] = np.asarray(self.user_factors)
        if self.item_factors is not None:
            args["item_factors"] = np.asarray(self.item_factors)
        np.savez(fileobj_or_path, **{k: v for k, v in args.items() if v is not None})

    @classmethod
    def load(cls, fileobj_or_path, **overrides):
        """Loads a model saved by ``save``, or by implicit's ``save`` of the same model class.

        Parameters
        ----------
        fileobj_or_path : str, os.PathLike or file-like
            The ``.npz`` file (``.npz`` is appended to a path without it, as ``save`` does).
        **overrides
            Constructor arguments that replace the saved ones, for example ``device="cpu"``
            (and ``dtype=np.float32`` for float16 factors) to load a model saved on a GPU
            machine where there is none.

        Returns
        -------
        The model, with its factors; keys that this class does not know are refused.
        """
        if isinstance(fileobj_or_path, os.PathLike):
            fileobj_or_path = os.fspath(fileobj_or_path)
        if isinstance(fileobj_or_path, str) and not fileobj_or_path.endswith(".npz"):
            fileobj_or_path += ".npz"
        kwargs, factors = {}, {}
        ignored = {"use_native", "calculate_training_loss"} & set()
        with np.load(fileobj_or_path, allow_pickle=False) as data:
            for key in data.files:
                v = data[key]
                if key in ("user_factors", "item_factors"):
                    factors[key] = v
                    continue
                v = str(v) if key == "dtype" else v.item()
                kwargs[key] = v
        known = cls._init_names()
        unknown = sorted(set(kwargs) - known - ignored)
        if unknown:
            raise ValueError(f"{fileobj_or_path}: {', '.join(unknown)} is not an argument of "
                             f"{cls.__name__}; expected a file saved by {cls.__name__}.save")
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"load: {', '.join(bad)} is not an argument of {cls.__name__}")
        kwargs.update(overrides)
        for key, v in factors.items():
            if v.ndim != 2:
                raise ValueError(f"{fileobj_or_path}: {key} has shape {v.shape}; expected a 2-D "
                                 f"array (one row per {key.split('_')[0]})")
        if "user_factors" in factors:
            dim = factors["user_factors"].shape[1]
            if ("item_bias" in known and "item_bias" not in kwargs
                    and kwargs.get("factors") == dim - 1):
                # implicit's BPR layout: its item bias is the last column (users hold 1 there),
                # which is recforge's item_bias layout
                kwargs["item_bias"] = True
            saved = dim - (1 if kwargs.get("item_bias", False) else 0)
            if "factors" in overrides and overrides["factors"] != saved:
                raise ValueError(f"load: factors={overrides['factors']!r}, but the saved factors "
                                 f"have {saved} columns (factors is read from them); leave "
                                 f"factors out")
            kwargs["factors"] = saved
        model = cls(**kwargs)
        if factors:
            model.user_factors = factors.get("user_factors")
            model.item_factors = factors.get("item_factors")
        return model

    @classmethod
    def _init_names(cls):
        import inspect

        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{a}={getattr(self, a)!r}' for a, _, _ in self._keys)})"


def _padded(ids, scores, N):
    """The engine's (queries, k) lists padded to N columns with id -1 and score -inf, as the
    engine pads them: the engine is asked for at most the number of rows it searches, so its
    work and memory follow the model's size, not N."""
    n_q, k = ids.shape
    if k >= N:
        return ids, scores
    out_ids = np.full((n_q, N), -1, dtype=ids.dtype)
    out_scores = np.full((n_q, N), -np.inf, dtype=scores.dtype)
    out_ids[:, :k] = ids
    out_scores[:, :k] = scores
    return out_ids, out_scores


def _check_values(matrix, name):
    """Refuses NaN, infinite and negative values of a CSR matrix that only filters (fit and the
    fold-ins refuse them in the engine), with the engine's sentence."""
    data = np.asarray(matrix.data)
    bad = np.flatnonzero(~(np.isfinite(data) & (data >= 0)))
    if bad.size:
        e = int(bad[0])
        row = int(np.searchsorted(matrix.indptr, e, side="right")) - 1
        v = data[e]
        text = ("-nan" if np.signbit(v) else "nan") if np.isnan(v) else str(v).removesuffix(".0")
        raise ValueError(f"{name} has the value {text} at (row {row}, column "
                         f"{int(matrix.indices[e])}); expected finite values >= 0")


def _count(N, name):
    # At most the engine's 32-bit list length (a larger N was a pybind TypeError that printed
    # the factor arrays).
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or not 0 <= N <= _MAX_ROWS:
        raise ValueError(f"{name} must be an integer from 0 to {_MAX_ROWS}; got {N!r}")
    return int(N)


def _dtype_name(self):
    try:
        d = np.dtype(self.dtype)
        name = d.name
    except TypeError:
        name = str(self.dtype)
    return name


def _solver(self):
    if self.solver is not None:
        return self.solver
    return "cg" if self.use_cg else "cholesky"


class AlternatingLeastSquares(MatrixFactorizationBase):
    """Implicit-feedback alternating least squares (iALS, Hu et al. 2008) in recforge's engine.

    Minimises Σ_observed alpha·c_ui (1 − x_uᵀy_i)² + unobserved_weight Σ_all (x_uᵀy_i)² +
    regularization Σ (‖x_u‖² + ‖y_i‖²) (with ``reg_exp`` 0). implicit's loss weighs an observed
    pair by alpha·c_ui alone; recforge adds the unobserved term over every pair, so an observed
    pair weighs alpha·c_ui + unobserved_weight (docs/models.md), unless
    ``observed_weight="replaced"``, which is implicit's objective (fit BM25 weights so).

    Parameters
    ----------
    factors : int, optional
        Number of latent factors (``model.factors``).
    regularization : float, optional
        L2 strength λ (``model.regularization``).
    alpha : float, optional
        Scale of the confidences (``model.alpha``).
    dtype : numpy dtype, optional
        Storage type of the factors (``model.dtype``): float32; float16 or bfloat16 on a GPU.
    use_native : bool, optional
        Accepted for implicit compatibility; recforge always runs its native engine.
    use_cg : bool, optional
        Conjugate gradient (True) or exact Cholesky solves (``model.solver``); ``solver``
        overrides it.
    use_gpu : bool, optional
        implicit's GPU switch: True means ``device="cuda"``, False ``device="cpu"``; None
        (default) leaves ``device`` as given.
    iterations : int, optional
        Iterations of ``fit`` (``model.iterations``).
    calculate_training_loss : bool, optional
        Compute the loss after every iteration (progress bar, callback).
    num_threads : int, optional
        CPU threads, 0 for all cores (``train.threads``).
    random_state : int, numpy.random.Generator, RandomState or None, optional
        Seed of the initial factors (``model.seed``); a Generator or RandomState gives one draw.
    unobserved_weight : float, keyword only
        Weight of every pair's squared score (``model.unobserved_weight``); 1.0 is implicit's.
    reg_exp : float, keyword only
        Frequency scaling of λ, λ·(n + 1)^reg_exp (``model.reg_exp``); 0.0 is implicit's.
    observed_weight : {"added", "replaced"}, keyword only
        ``model.observed_weight``: "added" (default) weighs an observed pair alpha·c_ui +
        unobserved_weight; "replaced" weighs it alpha·c_ui, as implicit does, so that
        confidences below unobserved_weight / alpha (BM25 weights) weigh an observed pair below
        an unobserved one. "replaced" trains on the CPU (``device="auto"`` stays there).
    solver : {"cg", "cholesky"} or None, keyword only
        The per-row solve (``model.solver``); None follows ``use_cg``.
    cg_steps : int, keyword only
        Conjugate-gradient steps per row (``model.cg_steps``), 3 as in implicit.
    device : str, keyword only
        "auto", "cpu", "cuda" or "cuda:N" (``train.device``).
    """

    _model_type = "ials"
    _keys = (
        ("factors", "model.factors", None),
        ("regularization", "model.regularization", None),
        ("alpha", "model.alpha", None),
        ("dtype", "model.dtype", _dtype_name),
        ("use_cg", "model.solver", _solver),
        ("iterations", "model.iterations", None),
        ("unobserved_weight", "model.unobserved_weight", None),
        ("reg_exp", "model.reg_exp", None),
        ("observed_weight", "model.observed_weight", None),
        ("cg_steps", "model.cg_steps", None),
    )

    def __init__(self, factors=100, regularization=0.01, alpha=1.0, dtype=np.float32,
                 use_native=True, use_cg=True, use_gpu=None, iterations=15,
                 calculate_training_loss=False, num_threads=0, random_state=None, *,
                 unobserved_weight=1.0, reg_exp=0.0, solver=None, cg_steps=3, device="auto",
                 observed_weight="added"):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.dtype = dtype
        self.use_native = use_native
        self.use_cg = use_cg
        self.iterations = iterations
        self.calculate_training_loss = calculate_training_loss
        self.unobserved_weight = unobserved_weight
        self.reg_exp = reg_exp
        self.observed_weight = observed_weight
        self.solver = solver
        self.cg_steps = cg_steps
        super().__init__(num_threads=num_threads, random_state=random_state, device=device,
                         use_gpu=use_gpu)

    def _config_items(self):
        items = super()._config_items()
        if self.solver is not None:  # name the argument the value came from
            items = [("solver", k, v) if a == "use_cg" else (a, k, v) for a, k, v in items]
        return items

    def explain(self, userid, user_items, itemid, user_weights=None, N=10):
        """Why the model scores ``itemid`` for ``userid``: the exact decomposition of the score
        of the user's least-squares solve into one term per training item.

        Parameters
        ----------
        userid : int
            The user (a row of ``user_items``).
        user_items : scipy.sparse.csr_matrix
            The users' confidences (the training matrix, or one row when it has one row).
        itemid : int
            The item to explain.
        user_weights : tuple, optional
            A ``user_weights`` returned by an earlier call, accepted for implicit
            compatibility; the engine factors the user's small k × k system again either way
            (it is exact and cheap next to building the system), so it does not speed calls up.
        N : int, optional
            Number of contributions returned.

        Returns
        -------
        total_score : float
            The score of the user's exact solve for the item (the contributions' sum).
        top_contributions : list of (int, float)
            The N largest (itemid, contribution) pairs, largest first.
        user_weights : tuple of (numpy.ndarray, bool)
            The Cholesky factor of the user's system A in ``scipy.linalg.cho_factor``'s form
            ``(L, True)``: L lower triangular (k × k, float64) with A = L Lᵀ, so that
            ``scipy.linalg.cho_solve(user_weights, y)`` gives A⁻¹y. implicit returns
            ``cho_factor(A)`` (the upper factor, ``lower=False``); both solve the same A.
            ``None`` for a user without training items.
        """
        self._need_fit()
        n_users, n_items = self._sizes()
        for name, v in (("userid", userid), ("itemid", itemid)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"explain: {name} must be one integer; got {type(v).__name__}")
        ui = _csr(user_items, "user_items", cols=n_items)
        uid, _ = _ids(userid, "userid", ui.shape[0] if ui.shape[0] > 1 else int(userid) + 1)
        iid, _ = _ids(itemid, "itemid", n_items)
        row = ui[uid] if ui.shape[0] > 1 else ui
        user = None
        if uid < n_users:
            user = self._engine.rows(True, np.array([uid]))[0]
        n = None if N is None else _count(N, "N")  # None: every contribution
        ex = self._engine.explain(*_csr_arrays(row), user, [iid])[0]
        top = [(int(i), float(c)) for i, c, _, _ in ex["contributions"][:n]]
        weights = None if ex["cholesky"] is None else (ex["cholesky"], True)
        return float(ex["score"]), top, weights

    def _saved(self):
        return {"factors": self.factors, "regularization": self.regularization,
                "alpha": self.alpha, "dtype": _dtype_name(self), "use_native": self.use_native,
                "use_cg": self.use_cg, "iterations": self.iterations,
                "calculate_training_loss": self.calculate_training_loss,
                "unobserved_weight": self.unobserved_weight, "reg_exp": self.reg_exp,
                "observed_weight": self.observed_weight,
                "solver": self.solver, "cg_steps": self.cg_steps}


class BayesianPersonalizedRanking(MatrixFactorizationBase):
    """Bayesian personalised ranking (Rendle et al. 2009) in recforge's engine.

    Parameters
    ----------
    factors : int, optional
        Number of latent factors (``model.factors``).
    learning_rate : float, optional
        Step size of the first epoch (``model.learning_rate``).
    regularization : float, optional
        L2 strength (``model.regularization``).
    dtype : numpy dtype, optional
        Storage type of the factors (``model.dtype``): float32; float16 or bfloat16 on a GPU.
    iterations : int, optional
        Epochs of ``fit`` (``model.iterations``).
    use_gpu : bool, optional
        True means ``device="cuda"``, False ``device="cpu"``; None leaves ``device``.
    num_threads : int, optional
        CPU threads, 0 for all cores (``train.threads``).
    verify_negative_samples : bool, optional
        Redraw negatives the user has interacted with (``model.reject_seen``).
    random_state : int, numpy.random.Generator, RandomState or None, optional
        Seed of the initial factors and the sampling (``model.seed``).
    optimizer : {"sgd", "adagrad", "adam"}, keyword only
        ``model.optimizer``; implicit uses plain SGD, recforge's default is Adam.
    batch_size, negatives, hard_negatives, negative_exp, lr_decay, item_bias : keyword only
        The engine's ``model.*`` options of the same names (docs/configuration.md).
    device : str, keyword only
        "auto", "cpu", "cuda" or "cuda:N" (``train.device``).
    """

    _model_type = "bpr"
    _keys = (
        ("factors", "model.factors", None),
        ("learning_rate", "model.learning_rate", None),
        ("regularization", "model.regularization", None),
        ("dtype", "model.dtype", _dtype_name),
        ("iterations", "model.iterations", None),
        ("verify_negative_samples", "model.reject_seen", None),
        ("optimizer", "model.optimizer", None),
        ("batch_size", "model.batch_size", None),
        ("negatives", "model.negatives", None),
        ("hard_negatives", "model.hard_negatives", None),
        ("negative_exp", "model.negative_exp", None),
        ("lr_decay", "model.lr_decay", None),
        ("item_bias", "model.item_bias", None),
    )

    def __init__(self, factors=100, learning_rate=0.01, regularization=0.01, dtype=np.float32,
                 iterations=100, use_gpu=None, num_threads=0, verify_negative_samples=True,
                 random_state=None, *, optimizer="adam", batch_size=1024, negatives=1,
                 hard_negatives=1, negative_exp=0.0, lr_decay=1.0, item_bias=False,
                 device="auto"):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.dtype = dtype
        self.iterations = iterations
        self.verify_negative_samples = verify_negative_samples
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.negatives = negatives
        self.hard_negatives = hard_negatives
        self.negative_exp = negative_exp
        self.lr_decay = lr_decay
        self.item_bias = item_bias
        super().__init__(num_threads=num_threads, random_state=random_state, device=device,
                         use_gpu=use_gpu)


class SampledSoftmax(MatrixFactorizationBase):
    """Sampled softmax over items (recforge's ``softmax`` model; not in implicit).

    Parameters
    ----------
    factors : int, optional
        Number of latent factors (``model.factors``).
    learning_rate : float, optional
        Step size of the first epoch (``model.learning_rate``).
    regularization : float, optional
        L2 strength (``model.regularization``).
    dtype : numpy dtype, optional
        Storage type of the factors (``model.dtype``).
    iterations : int, optional
        Epochs of ``fit`` (``model.iterations``).
    num_threads : int, optional
        CPU threads, 0 for all cores (``train.threads``).
    random_state : int, numpy.random.Generator, RandomState or None, optional
        Seed (``model.seed``).
    negatives, temperature, normalize, in_batch, logq, batch_size, optimizer, negative_exp,
    lr_decay, item_bias : keyword only
        The engine's ``model.*`` options of the same names (docs/configuration.md).
    device : str, keyword only
        "auto", "cpu", "cuda" or "cuda:N" (``train.device``).
    """

    _model_type = "softmax"
    _keys = (
        ("factors", "model.factors", None),
        ("learning_rate", "model.learning_rate", None),
        ("regularization", "model.regularization", None),
        ("dtype", "model.dtype", _dtype_name),
        ("iterations", "model.iterations", None),
        ("negatives", "model.negatives", None),
        ("temperature", "model.temperature", None),
        ("normalize", "model.normalize", None),
        ("in_batch", "model.in_batch", None),
        ("logq", "model.logq", None),
        ("batch_size", "model.batch_size", None),
        ("optimizer", "model.optimizer", None),
        ("negative_exp", "model.negative_exp", None),
        ("lr_decay", "model.lr_decay", None),
        ("item_bias", "model.item_bias", None),
    )

    def __init__(self, factors=100, learning_rate=0.01, regularization=0.0001, dtype=np.float32,
                 iterations=15, num_threads=0, random_state=None, *, negatives=64,
                 temperature=1.0, normalize=False, in_batch=True, logq=True, batch_size=1024,
                 optimizer="adam", negative_exp=0.0, lr_decay=1.0, item_bias=False,
                 device="auto", use_gpu=None):
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.dtype = dtype
        self.iterations = iterations
        self.negatives = negatives
        self.temperature = temperature
        self.normalize = normalize
        self.in_batch = in_batch
        self.logq = logq
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.negative_exp = negative_exp
        self.lr_decay = lr_decay
        self.item_bias = item_bias
        super().__init__(num_threads=num_threads, random_state=random_state, device=device,
                         use_gpu=use_gpu)


class CosineContrastive(MatrixFactorizationBase):
    """SimpleX's cosine contrastive loss (recforge's ``ccl`` model; not in implicit).

    Unit-norm user and item rows scored by cosine; a positive's loss is ``1 - cos`` plus
    ``negative_weight`` times the mean over many sampled negatives of ``max(0, cos - margin)``
    (docs/models.md).

    Parameters
    ----------
    factors : int, optional
        Number of latent factors (``model.factors``).
    learning_rate : float, optional
        Step size of the first epoch (``model.learning_rate``).
    iterations : int, optional
        Epochs of ``fit`` (``model.iterations``).
    num_threads : int, optional
        CPU threads, 0 for all cores (``train.threads``).
    random_state : int, numpy.random.Generator, RandomState or None, optional
        Seed (``model.seed``).
    negatives, margin, negative_weight, history_weight, dropout, in_batch, batch_size,
    optimizer, negative_exp, lr_decay : keyword only
        The engine's ``model.*`` options of the same names (docs/configuration.md);
        ``history_weight`` > 0 is SimpleX's user-side aggregation and ``dropout``
        > 0 its dropout on the user vector in training.
    device : str, keyword only
        "auto", "cpu", "cuda" or "cuda:N" (``train.device``).
    """

    _model_type = "ccl"
    _keys = (
        ("factors", "model.factors", None),
        ("learning_rate", "model.learning_rate", None),
        ("iterations", "model.iterations", None),
        ("negatives", "model.negatives", None),
        ("margin", "model.margin", None),
        ("negative_weight", "model.negative_weight", None),
        ("history_weight", "model.history_weight", None),
        ("dropout", "model.dropout", None),
        ("in_batch", "model.in_batch", None),
        ("batch_size", "model.batch_size", None),
        ("optimizer", "model.optimizer", None),
        ("negative_exp", "model.negative_exp", None),
        ("lr_decay", "model.lr_decay", None),
    )

    def __init__(self, factors=64, learning_rate=0.004, iterations=40, num_threads=0,
                 random_state=None, *, negatives=1000, margin=0.7, negative_weight=150.0,
                 history_weight=0.0, dropout=0.0, in_batch=False, batch_size=512,
                 optimizer="adam", negative_exp=0.0, lr_decay=0.92, device="auto",
                 use_gpu=None):
        self.factors = factors
        self.learning_rate = learning_rate
        self.iterations = iterations
        self.negatives = negatives
        self.margin = margin
        self.negative_weight = negative_weight
        self.history_weight = history_weight
        self.dropout = dropout
        self.in_batch = in_batch
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.negative_exp = negative_exp
        self.lr_decay = lr_decay
        super().__init__(num_threads=num_threads, random_state=random_state, device=device,
                         use_gpu=use_gpu)
