"""Runs and exports: ``recforge.train(config)``, ``recforge.Run`` and ``recforge.Export``.

``train`` runs recforge's training pipeline (as ``recforge train``) and returns a ``Run``;
``Export`` answers queries from an export directory or a run directory through the engine's
query engine (as ``recforge recommend``, ``similar`` and ``explain``). Nothing here needs SciPy.
"""

import collections.abc
import json
import math
import os
import pathlib

import numpy as np

from . import _recforge

__all__ = ["train", "Run", "Export", "RecommendationList"]


def _text(value, name, what="id"):
    """``value`` (a str) as the engine can take it: UTF-8 text without a NUL character (pybind
    refused a lone surrogate with a TypeError that dumped the signature, and the engine's
    messages stopped at a NUL, naming another id)."""
    value = str(value)
    if "\x00" in value:
        raise ValueError(
            f"{name}: the {what} {value!r} holds a NUL character (at index "
            f"{value.index(chr(0))}); expected text without one"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{name}: the {what} {value!r} is not valid text (a lone surrogate at index "
            f"{e.start}, which UTF-8 cannot encode)"
        ) from None
    return value


def _strings(value, name, *, allow_none=False, what="id"):
    """``value`` (one str or an iterable of str) as a list of str, naming ``name`` if not."""
    if value is None and allow_none:
        return None
    if isinstance(value, (str, np.str_)):
        return [_text(value, name, what)]
    if isinstance(value, (bytes, collections.abc.Mapping)) or not isinstance(
        value, collections.abc.Iterable
    ):
        raise ValueError(f"{name}: expected a str or a list of str, got {type(value).__name__}")
    out = []
    for v in value:
        if not isinstance(v, (str, np.str_)):
            raise ValueError(
                f"{name}: expected a str or a list of str, got an element of type "
                f"{type(v).__name__} ({v!r})"
            )
        out.append(_text(v, name, what))
    return out


def _yaml_value(value, key):
    """One config value as YAML flow text (JSON is YAML); the engine checks its type."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (tuple, np.ndarray)):
        value = list(np.asarray(value).tolist()) if isinstance(value, np.ndarray) else list(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config dict: {key}: expected a finite number, got {value!r}")
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        raise ValueError(
            f"config dict: {key}: expected a number, str, bool, None or list, got "
            f"{type(value).__name__}"
        ) from None


def _dict_to_yaml(config):
    """A config dict (sections of keys, like the YAML file) as YAML text, one key a line."""
    lines = []
    for section, values in config.items():
        name = json.dumps(str(section), ensure_ascii=False)
        if not isinstance(values, collections.abc.Mapping):
            lines.append(f"{name}: {_yaml_value(values, section)}")
            continue
        if not values:
            lines.append(f"{name}: {{}}")
            continue
        lines.append(f"{name}:")
        for key, value in values.items():
            k = json.dumps(str(key), ensure_ascii=False)
            lines.append(f"  {k}: {_yaml_value(value, f'{section}.{key}')}")
    return "\n".join(lines) + "\n"


def train(config, *, overrides=(), device=None, show_progress=None):
    """Train a model from a config and write a run directory, as ``recforge train`` does.

    Parameters
    ----------
    config : str, os.PathLike or dict
        A YAML config file, or a dict equal to one: sections of keys, e.g.
        ``{"data": {"format": "synthetic"}, "model": {"factors": 64}}`` (docs/configuration.md
        lists every key). A dict is validated exactly like a file; errors name ``config dict`` and the
        key. Relative paths (``data.path``, ``run.dir``, ...) are relative to the current
        working directory, for a dict as for a file (as with the CLI).
    overrides : str or sequence of str, optional
        ``"section.key=value"`` assignments applied after the config, like the CLI's ``--set``.
    device : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; sets ``train.device`` (after
        ``overrides``, like the CLI's ``--device``).
    show_progress : bool, optional
        True shows progress (``run.progress=auto``), False hides it (``off``); None keeps the
        config's ``run.progress``.

    Returns
    -------
    Run
        The finished run directory (``<run.dir>/<run.name>``).

    Raises
    ------
    ValueError
        For a bad config, key, value or data file, with the engine's sentence naming it.
    KeyboardInterrupt
        On Ctrl-C, checked before each iteration: the unfinished run directory is removed (a
        checkpoint written by ``train.checkpoint_every`` is kept, and a rerun continues from it).
    """
    sets = _strings(overrides, "overrides", what="assignment")
    if device is not None:
        if not isinstance(device, str):
            raise ValueError(f"device: expected a str such as \"cpu\", got {type(device).__name__}")
        sets.append(f"train.device={device}")
    if show_progress is not None:
        sets.append(f"run.progress={'auto' if show_progress else 'off'}")
    if isinstance(config, collections.abc.Mapping):
        # A dict has no file name to name the run after: "run", as the CLI's fallback, unless
        # the dict or an override names it (an empty name, as in a file, names nothing).
        run_section = config.get("run")
        named = isinstance(run_section, collections.abc.Mapping) and \
            run_section.get("name") not in (None, "")
        for s in sets:
            if s.startswith("run.name="):
                named = s[len("run.name="):].strip() not in ("", '""', "''")
        if not named:
            sets.append("run.name=run")
        directory = _recforge._train(None, _dict_to_yaml(config), sets)
    elif isinstance(config, (str, os.PathLike)):
        directory = _recforge._train(os.fspath(config), "", sets)
    else:
        raise ValueError(
            f"config: expected a path to a YAML file or a dict, got {type(config).__name__}"
        )
    return Run(directory)


def compare_paired(runs, *, level=0.95, each=False):
    """Test runs against the first on the same test users, as ``recforge compare --paired``.

    Every run is reopened (its data re-prepared and checked, as ``recforge evaluate`` does) and
    its test part scored again, per user, on the CPU at the first run's ``eval.ks``. Each other
    column is compared with the first user by user: the mean difference of each per-user metric
    (recall, precision, ndcg, map, hit_rate at each K), its confidence interval and a two-sided
    paired t-test, with p adjusted by Holm's method over every row.

    Parameters
    ----------
    runs : sequence of str, os.PathLike or Run
        Run directories; the first is the baseline.
    level : float, optional
        Confidence level of the intervals, in (0, 1).
    each : bool, optional
        One column per run. By default runs whose configs differ only in ``model.seed`` (and the
        ``run.*`` keys that name or show a run) are one column, each user's value their mean.

    Returns
    -------
    list of dict
        One per metric and column: ``column``, ``baseline``, ``metric`` (``"ndcg@20"``),
        ``users``, ``mean_difference`` (column minus baseline), ``ci_low``, ``ci_high``,
        ``level``, ``t``, ``p``, ``p_holm``: the rows of compare's paired.csv.

    Raises
    ------
    ValueError
        When a run is not a finished run with a model and a test part, when the runs hold out
        other test items for some user (other data, split or run.seed), when there is one
        column only, or for a level outside (0, 1).
    """
    if isinstance(runs, (str, bytes, os.PathLike, Run)) or not isinstance(
        runs, collections.abc.Iterable
    ):
        raise ValueError(
            f"runs: expected a list of run directories or Runs, got {type(runs).__name__}"
        )
    dirs = []
    for r in runs:
        if isinstance(r, Run):
            dirs.append(str(r.directory))
        elif isinstance(r, (str, os.PathLike)) and not isinstance(r, bytes):
            dirs.append(os.fspath(r))
        else:
            raise ValueError(
                f"runs: expected run directories (str or PathLike) or Runs, got an element of "
                f"type {type(r).__name__} ({r!r})"
            )
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating, np.integer)):
        raise ValueError(f"level: expected a number in (0, 1), got {type(level).__name__}")
    return _recforge._compare_paired(dirs, bool(each), float(level))


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Run:
    """A finished run directory, as ``recforge train`` (or :func:`train`) wrote it.

    Parameters
    ----------
    directory : str or os.PathLike
        The run directory (it holds run.json).

    Attributes
    ----------
    directory : pathlib.Path
        The run directory.
    info : dict
        run.json: timings, device, ``history``, ``model``, ``status``, ``files``, ...
    metrics : dict
        metrics.json: ``{"validation": {...}, "test": {...}}`` (each ``recall@10``, ``ndcg@10``,
        ..., ``users``), the metrics ``recforge compare`` shows; empty when the run has none.
    stats : dict
        stats.json: the dataset's statistics.

    Notes
    -----
    ``user_ids`` and ``item_ids`` are not stored in a run directory: the first access re-prepares
    the run's data (like ``recforge recommend RUN``), through :meth:`open`.
    """

    def __init__(self, directory):
        self.directory = pathlib.Path(directory)
        run_json = self.directory / "run.json"
        if not run_json.is_file():
            raise ValueError(f"{self.directory}: not a finished recforge run (no run.json)")
        self.info = _read_json(run_json)
        metrics = self.directory / "metrics.json"
        self.metrics = _read_json(metrics) if metrics.is_file() else {}
        stats = self.directory / "stats.json"
        self.stats = _read_json(stats) if stats.is_file() else {}
        self._config = None
        self._source = None

    def __repr__(self):
        return f"Run({str(self.directory)!r})"

    @property
    def name(self):
        """str: The run's name (its directory's name)."""
        return self.directory.name

    @property
    def config(self):
        """dict: The resolved config (config.yaml), nested by section; unset keys are None."""
        if self._config is None:
            self._config = json.loads(_recforge._config_json(str(self.directory / "config.yaml")))
        return self._config

    @property
    def flat_config(self):
        """dict: The resolved config as ``{"section.key": value}``, handy to compare runs."""
        return {f"{s}.{k}": v for s, keys in self.config.items() for k, v in keys.items()}

    @property
    def history(self):
        """list of dict: One entry per iteration: ``iteration``, ``seconds``, ``loss`` and, when
        evaluated (``model.eval_every``), ``validation`` metrics."""
        return self.info.get("history", [])

    @property
    def model(self):
        """dict: The model's type and hyperparameters, as run.json records them."""
        return self.info.get("model")

    @property
    def train_seconds(self):
        """float: Seconds spent training (None for a run without a model)."""
        return self.info.get("train_seconds")

    @property
    def init_from(self):
        """dict or None: Where a warm-started run started (``model.init_from``): the export, its
        version and creation time, the run it came from, the users and items matched, the
        export's users not in this run's data, the lineage and the chain's users."""
        return self.info.get("init_from")

    def metrics_by_activity(self, edges=(5, 10, 20, 50, 100)):
        """Test metrics by user activity, as ``recforge evaluate RUN --by-activity``.

        The run is reopened (its data re-prepared and checked) and its test users scored again on
        the CPU at its ``eval.ks``; users are grouped by the interactions their ranking came from
        (training interactions, or fold-in interactions for held-out users), and each group's
        metrics are the means over its users: equal, to the bit, to an evaluation of those users
        alone.

        Parameters
        ----------
        edges : sequence of int, optional
            Upper ends of the groups but the last, increasing whole numbers >= 1: the default
            gives 0-5, 6-10, 11-20, 21-50, 51-100 and 101+.

        Returns
        -------
        list of dict
            One per group, in order: ``min``, ``max`` (None for the last), ``users``, and each
            metric (``"ndcg@20"``, ...; None in a group without users).

        Raises
        ------
        ValueError
            For edges that are not increasing whole numbers >= 1, a run that cannot be reopened,
            or one without test users.
        """
        if isinstance(edges, (str, bytes)) or not isinstance(edges, collections.abc.Iterable):
            raise ValueError(f"edges: expected a list of whole numbers, got {type(edges).__name__}")
        values = list(edges)
        for e in values:
            if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
                raise ValueError(
                    f"edges: expected whole numbers >= 1 in increasing order, got {e!r} "
                    f"({type(e).__name__})"
                )
        return json.loads(_recforge._by_activity(str(self.directory), [int(e) for e in values]))

    @property
    def export(self):
        """pathlib.Path or None: The run's export (``export.enabled``), if it made one."""
        inside = self.directory / "export"
        if inside.is_dir():
            return inside
        where = self.info.get("export")
        return pathlib.Path(where) if where else None

    def _factors(self, name):
        path = self.directory / name
        if not path.is_file():
            raise ValueError(f"{self.directory}: the run has no {name} (it trained no model)")
        return np.load(path, mmap_mode="r")

    @property
    def user_factors(self):
        """numpy.ndarray: users x factors float32, a read-only memory map of user_factors.npy."""
        return self._factors("user_factors.npy")

    @property
    def item_factors(self):
        """numpy.ndarray: items x factors float32, a read-only memory map of item_factors.npy."""
        return self._factors("item_factors.npy")

    def open(self):
        """Open the run for queries (opened once, then reused).

        Returns
        -------
        Export
            An :class:`Export` over the run directory: its data is re-prepared from the
            config and checked against the fingerprint saved at training time.
        """
        if self._source is None:
            self._source = Export(self.directory)
        return self._source

    @property
    def user_ids(self):
        """numpy.ndarray of str: The user id of each row of ``user_factors`` (see Notes)."""
        return self.open().user_ids

    @property
    def item_ids(self):
        """numpy.ndarray of str: The item id of each row of ``item_factors`` (see Notes)."""
        return self.open().item_ids


RecommendationList = collections.namedtuple(
    "RecommendationList", ["user", "ids", "scores", "personalised"]
)
RecommendationList.__doc__ = """One user's list from :meth:`Export.recommend_lists`.

Attributes
----------
user : str
    The user as asked.
ids : numpy.ndarray of str
    Item ids, best first (shorter than N when fewer items are eligible).
scores : numpy.ndarray of float32
    Their scores.
personalised : bool
    False for a user who opted out of personalisation: the list is then the most popular
    training items, scored by their number of training users.
"""

# The request fields the engine reports unknown ids for, by the argument they came from.
_ARGUMENT = {
    "users": "user",
    "user": "user",
    "item": "item",
    "items": "liked_items",
    "exclude": "filter_items",
    "candidates": "items",
}


def _pad(lists, n):
    """Lists of (ids, scores) as 2-D arrays of width n: short rows padded with "" and -inf."""
    ids = np.full((len(lists), n), "", dtype=object)
    scores = np.full((len(lists), n), -np.inf, dtype=np.float32)
    for row, (i, s) in enumerate(lists):
        ids[row, : len(i)] = i
        scores[row, : len(s)] = s
    return ids.astype(str), scores


class Export:
    """Answers queries from an export or a run directory, like ``recforge recommend``.

    Opens the directory once (an export: its ``current`` version, memory-mapped; a run
    directory: its data re-prepared from its config) and answers with the engine's query
    engine; NumPy is the only Python dependency. Every method releases the GIL and may be called
    from many threads at once.

    Parameters
    ----------
    path : str or os.PathLike
        An export directory (docs/export.md) or a run directory.
    pseudonym_key_file : str or os.PathLike, optional
        The key file of a pseudonymised export (``export.pseudonymize``), so that raw user ids
        may be given (pseudonyms are accepted without it).
    pseudonym_key_env : str, optional
        The name of an environment variable holding that key instead.

    Notes
    -----
    Ids are strings as the data names them (integer ids as their canonical text). An id the
    source does not know raises ValueError naming it (the engine's sentence when nothing in the
    request is known), except in ``filter_items``, where it is ignored. Users who opted out of
    personalisation (``privacy.opt_out``) get the most popular training items, scored by their
    number of training users; :meth:`opted_out` and :meth:`recommend_lists` tell them apart.
    """

    def __init__(self, path, *, pseudonym_key_file=None, pseudonym_key_env=None):
        if pseudonym_key_file is not None:
            pseudonym_key_file = os.fspath(pseudonym_key_file)
        self._s = _recforge._Source(os.fspath(path), pseudonym_key_file, pseudonym_key_env)
        self.path = pathlib.Path(path)
        manifest = self._s.manifest_json
        self._manifest = json.loads(manifest) if manifest is not None else None
        self._user_ids = None
        self._item_ids = None

    def __repr__(self):
        return f"Export({str(self.path)!r})"

    # ---- What it holds ----------------------------------------------------------------------

    @property
    def is_export(self):
        """bool: True for an export, False for a run directory."""
        return self._s.is_export

    @property
    def manifest(self):
        """dict or None: The export's manifest.json as opened (None for a run directory)."""
        return self._manifest

    @property
    def metric(self):
        """str: How ``recommend`` scores: the export's metric, ``"dot"`` for a run directory."""
        return self._s.metric

    @property
    def can_fold_in(self):
        """bool: Whether :meth:`fold_in` and :meth:`recommend_new_user` can run."""
        return self._s.can_fold_in

    @property
    def user_ids(self):
        """numpy.ndarray of str: The user id of each row of ``user_factors``."""
        if self._user_ids is None:
            self._user_ids = np.array(self._s.user_ids, dtype=str)
        return self._user_ids

    @property
    def item_ids(self):
        """numpy.ndarray of str: The item id of each row of ``item_factors``."""
        if self._item_ids is None:
            self._item_ids = np.array(self._s.item_ids, dtype=str)
        return self._item_ids

    @property
    def user_factors(self):
        """numpy.ndarray: users x factors float32, a read-only view without a copy."""
        return self._s.user_factors

    @property
    def item_factors(self):
        """numpy.ndarray: items x factors float32, a read-only view without a copy."""
        return self._s.item_factors

    def opted_out(self, user):
        """Whether ``user`` opted out of personalisation.

        Parameters
        ----------
        user : str
            A user id (raw with the pseudonym key, or as the export names it).

        Returns
        -------
        bool

        Raises
        ------
        ValueError
            For an id the source does not know (as :meth:`recommend` raises), including a raw id
            of a pseudonymised export opened without its key.
        """
        user = _one(user, "user")
        if not self._s.knows_user(user):
            # The engine's sentence for an unknown user: a request for it alone fails before
            # anything is scored.
            self._s.recommend([user], 1, [], None, False, True)
        return self._s.opted_out(user)

    # ---- Queries ----------------------------------------------------------------------------

    def _check_unknown(self, method, unknown):
        # Unknown filter_items cannot be recommended anyway: they are ignored.
        unknown = [u for u in unknown if u[1] != "exclude"]
        if unknown:
            ident, field = unknown[0]
            more = f" (and {len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""
            kind = "user" if field in ("users", "user") else "item"
            raise ValueError(
                f'{method}: {_ARGUMENT.get(field, field)} "{ident}" is not in {self.path}{more}; '
                f"expected {kind} ids of its training data"
            )

    def _lists(self, method, result, single):
        lists, unknown, k, _ = result
        self._check_unknown(method, unknown)
        if single:
            _, ids, scores, _ = lists[0]
            return np.array(ids, dtype=str), scores
        return _pad([(ids, scores) for _, ids, scores, _ in lists], k)

    def _eligible(self, filter_items, items):
        """(exclude, candidates) of a request. ``items=[]`` lets no item be recommended: every
        list is empty, as the model classes answer it (the engine refuses an empty candidate
        list, so it gets one item, excluded; the users are still checked)."""
        exclude = _strings(filter_items, "filter_items", allow_none=True) or []
        candidates = _strings(items, "items", allow_none=True)
        if candidates == [] and len(self.item_factors):
            candidates = [str(self.item_ids[0])]
            exclude = exclude + candidates
        return exclude, candidates

    def _request(self, users, N, filter_items, items, filter_already_liked_items, exact):
        exclude, candidates = self._eligible(filter_items, items)
        return self._s.recommend(
            users,
            _count(N),
            exclude,
            candidates,
            not filter_already_liked_items,
            bool(exact),
        )

    def recommend(self, user, N=10, filter_items=None, items=None,
                  filter_already_liked_items=True, exact=False):
        """Recommend items to one user or to a batch of users.

        Parameters
        ----------
        user : str or list of str
            A user id, or a list of them for a batch (scored together; an empty list gives
            arrays with no rows).
        N : int, optional
            The number of items per user, at most 2**31 - 1 (clamped to the number of items; 0
            gives arrays with no columns, as the model classes do).
        filter_items : list of str, optional
            Item ids never to recommend.
        items : list of str, optional
            When given, only these items may be recommended (scored exactly); an empty list
            gives empty lists, as the model classes' ``items=[]`` does.
        filter_already_liked_items : bool, optional
            Leave out the user's training items (default True).
        exact : bool, optional
            Score every item instead of searching an export's index (a run directory is always
            exact).

        Returns
        -------
        ids : numpy.ndarray of str
            For one user, 1-D, best first (shorter than N when fewer items are eligible); for a
            list, 2-D (users x N), rows shorter than N padded with ``""``.
        scores : numpy.ndarray of float32
            Their scores, the same shape; padding is ``-inf``.
        """
        single = isinstance(user, (str, np.str_))
        users = _strings(user, "user")
        if not users:
            # No users: no rows, of the width a batch has (N clamped to the number of items).
            n = _count(N, minimum=0)
            self._eligible(filter_items, items)
            return _pad([], min(n, len(self.item_factors)))
        return _none_when_zero(N, lambda k: self._lists("recommend", self._request(
            users, k, filter_items, items, filter_already_liked_items, exact), single))

    def recommend_lists(self, users, N=10, filter_items=None, items=None,
                        filter_already_liked_items=True, exact=False):
        """Recommend to users, with whether each list is personalised.

        Parameters are those of :meth:`recommend`.

        Returns
        -------
        list of RecommendationList
            One per user, in order: ``user``, ``ids``, ``scores``, ``personalised`` (False for
            an opted-out user, whose list holds the most popular training items).
        """
        users = _strings(users, "users")
        if not users:
            _count(N, minimum=0)
            self._eligible(filter_items, items)
            return []

        def answer(k):
            lists, unknown, _, _ = self._request(users, k, filter_items, items,
                                                 filter_already_liked_items, exact)
            self._check_unknown("recommend_lists", unknown)
            return [RecommendationList(q, np.array(i, dtype=str), s, p) for q, i, s, p in lists]

        return _none_when_zero(N, answer)

    def fold_in(self, liked_items, weights=None):
        """The factors of a new user from their items, by the model's own solve.

        Parameters
        ----------
        liked_items : list of str
            The new user's item ids.
        weights : list of float, optional
            Their raw interaction weights (finite, >= 0), weighted as in training; 1 each by
            default.

        Returns
        -------
        numpy.ndarray
            The user's factors (float32, 1-D).
        """
        vector, unknown = self._s.fold_in(_strings(liked_items, "liked_items"),
                                          _weights(weights, liked_items))
        self._check_unknown("fold_in", unknown)
        return vector

    def recommend_new_user(self, liked_items, weights=None, N=10, filter_items=None, items=None,
                           filter_already_liked_items=True, exact=False):
        """Recommend to a new user folded in from their items (see :meth:`fold_in`).

        Parameters
        ----------
        liked_items : list of str
            The new user's item ids.
        weights : list of float, optional
            Their raw interaction weights; 1 each by default.
        N, filter_items, items, exact
            As in :meth:`recommend`.
        filter_already_liked_items : bool, optional
            Leave out ``liked_items`` (default True).

        Returns
        -------
        ids : numpy.ndarray of str
        scores : numpy.ndarray of float32
        """
        liked = _strings(liked_items, "liked_items")
        exclude, candidates = self._eligible(filter_items, items)
        return _none_when_zero(N, lambda k: self._lists("recommend_new_user", self._s.recommend_new_user(
            liked,
            _weights(weights, liked),
            k,
            exclude,
            candidates,
            not filter_already_liked_items,
            bool(exact),
        ), True))

    def _similar(self, method, query, N, metric, exact):
        single = isinstance(query, (str, np.str_))
        queries = _strings(query, "item" if method == "similar_items" else "user")
        if not isinstance(metric, str):
            raise ValueError(f'metric: expected "default", "dot" or "cosine", got {metric!r}')
        if method == "similar_items" and not single and queries:
            # One call for all the items (one GEMM, or one batched index search).
            lists, unknown, k, _ = self._s.similar_items_batch(queries, _count(N), metric,
                                                               bool(exact))
            self._check_unknown(method, unknown)
            return _pad([(l[1], l[2]) for l in lists], k)
        call = getattr(self._s, method)
        results = [call(q, _count(N), metric, bool(exact)) for q in queries]
        for r in results:
            self._check_unknown(method, r[1])
        if single:
            _, ids, scores, _ = results[0][0][0]
            return np.array(ids, dtype=str), scores
        width = max((r[2] for r in results), default=0)
        return _pad([(r[0][0][1], r[0][0][2]) for r in results], width)

    def similar_items(self, item, N=10, metric="default", exact=False):
        """The items most similar to an item (itself left out).

        Parameters
        ----------
        item : str or list of str
            An item id, or a list of them (then 2-D results, padded as in :meth:`recommend`).
        N : int, optional
            The number of items (0: no columns).
        metric : {"default", "dot", "cosine"}, optional
            ``"default"`` is the source's own (an export's metric, dot for a run directory).
        exact : bool, optional
            Score every item instead of searching an export's index.

        Returns
        -------
        ids : numpy.ndarray of str
        scores : numpy.ndarray of float32
        """
        return _none_when_zero(N, lambda k: self._similar("similar_items", item, k, metric, exact))

    def similar_users(self, user, N=10, metric="default", exact=False):
        """The users most similar to a user (itself and opted-out users left out).

        Parameters
        ----------
        user : str or list of str
            A user id, or a list of them (then 2-D results, padded as in :meth:`recommend`).
            An opted-out user gets an empty list.
        N : int, optional
            The number of users (0: no columns).
        metric : {"default", "dot", "cosine"}, optional
            ``"default"`` is the source's own (an export's metric, dot for a run directory), as
            in :meth:`similar_items`.
        exact : bool, optional
            Accepted for symmetry; users are always scored exactly.

        Returns
        -------
        ids : numpy.ndarray of str
        scores : numpy.ndarray of float32
        """
        return _none_when_zero(N, lambda k: self._similar("similar_users", user, k, metric, exact))

    def explain(self, user, item, N=10):
        """Why the model scores an item for a user, as ``recforge explain --format json``.

        Parameters
        ----------
        user : str
            A user id.
        item : str or list of str
            An item id, or a list of them (then a list of results).
        N : int, optional
            The number of contributions to list, largest first.

        Returns
        -------
        dict
            ``user``, ``item``, ``method`` (``"exact_decomposition"`` for iALS, whose
            contributions sum to ``score``; ``"item_similarity"`` for bpr and softmax),
            ``sums_to_score``, ``score``, ``model_score``, ``training_items`` and
            ``contributions`` (each ``item``, ``value``, ``confidence``, ``contribution``).
        """
        single = isinstance(item, (str, np.str_))
        out = [json.loads(e) for e in
               self._s.explain(_one(user, "user"), _strings(item, "item"), _count(N))]
        return out[0] if single else out


def _one(value, name):
    if not isinstance(value, (str, np.str_)):
        raise ValueError(f"{name}: expected a str, got {type(value).__name__}")
    return _text(value, name)


# The engine's list length is a 32-bit int (a larger N was a pybind TypeError with its
# signature).
_MAX_N = 2**31 - 1


def _count(n, minimum=1):
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"N: expected an integer >= {minimum}, got {n!r}")
    if n > _MAX_N:
        raise ValueError(f"N: expected an integer of at most {_MAX_N} (2**31 - 1), got {n!r}")
    return int(n)


def _none_when_zero(n, answer):
    """N=0 (as the model classes allow): the answer to N=1, checked as any, cut to no columns.

    ``answer(k)`` answers with k >= 1 (the engine's lists have at least one place).
    """
    k = _count(n, minimum=0)
    result = answer(max(k, 1))
    if k > 0:
        return result
    if isinstance(result, list):  # recommend_lists
        return [r._replace(ids=r.ids[:0], scores=r.scores[:0]) for r in result]
    ids, scores = result
    return ids[..., :0], scores[..., :0]


def _weights(weights, items):
    if weights is None:
        return []
    try:
        w = np.asarray(weights, dtype=np.float64).ravel()
    except (TypeError, ValueError) as e:
        raise ValueError(f"weights: expected a list of numbers ({e})") from None
    n = 1 if isinstance(items, (str, np.str_)) else len(items)
    if w.size != n:
        raise ValueError(f"weights: expected one weight per item ({n}), got {w.size}")
    return [float(x) for x in w]
