"""recforge.Export: answers equal the CLI's (recommend, similar, explain, fold-in) and NumPy's
brute force over the exported factors; batches, opted-out users, pseudonymised exports, no SciPy,
concurrent queries."""

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import recforge

CLI = os.environ.get("RECFORGE_CLI")
needs_cli = pytest.mark.skipif(not CLI, reason="RECFORGE_CLI (the recforge binary) is not set")

# Float32 rounding of a dot product of d terms: |fl(x.y) - x.y| <= d * eps32 * sum|x_i y_i|
# (the standard bound for recursive or blocked summation), with the reference in double.
EPS32 = float(np.finfo(np.float32).eps)

OPTED_OUT = ["3", "7"]
KEY = "a-pseudonym-key-of-the-tests-0123456789"


def base_config(tmp, name):
    return {
        "run": {"name": name, "dir": str(tmp / "runs"), "progress": "off", "seed": 5},
        "data": {"format": "synthetic", "cache_dir": str(tmp / "cache"),
                 "min_user_interactions": 2, "min_item_interactions": 2},
        "synthetic": {"users": 300, "items": 200, "interactions": 6000, "seed": 3},
        "split": {"method": "leave_last", "validation_fraction": 0.1},
        "model": {"factors": 8, "iterations": 3},
        "train": {"threads": 1},
        "export": {"enabled": True},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    (tmp / "opt_out.txt").write_text("\n".join(OPTED_OUT) + "\n")
    (tmp / "key.txt").write_text(KEY + "\n")
    plain = base_config(tmp, "plain")
    plain["privacy"] = {"opt_out": str(tmp / "opt_out.txt")}
    run = recforge.train(plain)
    pseudo = base_config(tmp, "pseudo")
    pseudo["export"].update(pseudonymize=True, pseudonym_key_file=str(tmp / "key.txt"))
    pseudo_run = recforge.train(pseudo)
    return {"tmp": tmp, "run": run, "export": run.export, "pseudo": pseudo_run.export,
            "key": tmp / "key.txt"}


@pytest.fixture(scope="module")
def exp(trained):
    return recforge.Export(trained["export"])


# The recforge binary re-executes itself with other OpenBLAS kernels when the ones loaded are a
# slow fallback (core/blas.h, ensure_blas_kernels); this process keeps those it loaded. The CLI
# keeps them too here, so that both compute with the same kernels and answer bit for bit.
CLI_ENV = {**os.environ, "RECFORGE_KEEP_BLAS": "1"}


def cli(*args):
    out = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, check=True,
                         env=CLI_ENV)
    return out.stdout


def cli_json(*args):
    return json.loads(cli(*args, "--format", "json"))


def seen_rows(path):
    indptr = np.load(pathlib.Path(path) / "seen_indptr.npy")
    indices = np.load(pathlib.Path(path) / "seen_indices.npy")
    return [indices[indptr[u]:indptr[u + 1]] for u in range(len(indptr) - 1)]


def assert_top_k(ids, scores, ref, eligible, tolerance, item_ids):
    """ids/scores are a correct top-k of the reference scores `ref` (double) over `eligible`."""
    rows = np.array([np.flatnonzero(item_ids == i)[0] for i in ids])
    assert np.all(eligible[rows])
    np.testing.assert_allclose(scores, ref[rows], rtol=0, atol=tolerance)
    assert np.all(np.diff(scores) <= 0)
    rest = eligible.copy()
    rest[rows] = False
    if rest.any():
        assert scores[-1] >= ref[rest].max() - tolerance


@needs_cli
def test_recommend_equals_the_cli_for_several_users(exp, trained):
    for user in exp.user_ids[:6]:
        ids, scores = exp.recommend(user, N=7)
        cli = cli_json("recommend", trained["export"], "--user", user, "--k", 7)
        assert cli["personalised"] is True
        assert list(ids) == [e["item"] for e in cli["items"]]
        assert scores.dtype == np.float32
        assert list(scores) == [np.float32(e["score"]) for e in cli["items"]]
    user = exp.user_ids[1]
    filt, cand = list(exp.item_ids[:20:2]), list(exp.item_ids[10:60])
    ids, scores = exp.recommend(user, N=5, filter_items=filt, items=cand)
    cli = cli_json("recommend", trained["export"], "--user", user, "--k", 5,
                   "--exclude", ",".join(filt), "--candidates", ",".join(cand))
    assert list(ids) == [e["item"] for e in cli["items"]]
    assert set(ids) <= set(cand) - set(filt)


def test_recommend_is_a_top_k_of_numpy_brute_force(exp, trained):
    users, items = exp.user_factors.astype(np.float64), exp.item_factors.astype(np.float64)
    seen = seen_rows(trained["export"])
    d = items.shape[1]
    for row in range(0, 40, 3):
        user = exp.user_ids[row]
        ref = items @ users[row]
        tol = d * EPS32 * (np.abs(items) @ np.abs(users[row])).max()
        eligible = np.ones(len(items), bool)
        eligible[seen[row]] = False
        ids, scores = exp.recommend(user, N=10, exact=True)
        assert len(ids) == 10
        assert_top_k(ids, scores, ref, eligible, tol, exp.item_ids)
        # filter_already_liked_items=False: training items are eligible too.
        ids, scores = exp.recommend(user, N=10, exact=True, filter_already_liked_items=False)
        assert_top_k(ids, scores, ref, np.ones(len(items), bool), tol, exp.item_ids)


@needs_cli
def test_batch_recommend_equals_the_clis_batch_and_pads_short_lists(exp, trained):
    users = list(exp.user_ids[10:15])
    ids, scores = exp.recommend(users, N=4)
    assert ids.shape == scores.shape == (5, 4)
    cli = cli_json("recommend", trained["export"], "--users", ",".join(users), "--k", 4)
    assert [c["user"] for c in cli] == users
    for row, c in enumerate(cli):
        assert list(ids[row]) == [e["item"] for e in c["items"]]
        assert list(scores[row]) == [np.float32(e["score"]) for e in c["items"]]
    # Three candidates, some of them training items of some users: shorter lists are padded.
    seen = seen_rows(trained["export"])
    rows = [int(np.flatnonzero(exp.user_ids == u)[0]) for u in users]
    cand = [str(exp.item_ids[seen[rows[0]][0]]), str(exp.item_ids[seen[rows[1]][0]]),
            str(exp.item_ids[-1])]
    ids, scores = exp.recommend(users, N=4, items=cand, exact=True)
    assert ids.shape == (5, 4)
    lengths = []
    factors = exp.item_factors.astype(np.float64)
    d = factors.shape[1]
    for row, user in enumerate(users):
        one_ids, one_scores = exp.recommend(user, N=4, items=cand, exact=True)
        n = len(one_ids)
        lengths.append(n)
        assert list(ids[row, :n]) == list(one_ids)
        # A batch is one GEMM, a single user a GEMV: each within the float32 dot bound.
        x = np.abs(exp.user_factors[rows[row]].astype(np.float64))
        tol = 2 * d * EPS32 * (np.abs(factors) @ x).max()
        np.testing.assert_allclose(scores[row, :n], one_scores, rtol=0, atol=tol)
        assert list(ids[row, n:]) == [""] * (4 - n)
        assert np.all(np.isneginf(scores[row, n:]))
    assert min(lengths) < 3 and max(lengths) == 3


@needs_cli
def test_similar_items_and_users_equal_the_cli_and_brute_force(exp, trained):
    items = exp.item_factors.astype(np.float64)
    users = exp.user_factors.astype(np.float64)
    d = items.shape[1]
    for item in exp.item_ids[:4]:
        ids, scores = exp.similar_items(item, N=5)
        cli = cli_json("similar", trained["export"], "--item", item, "--k", 5)
        assert list(ids) == [e["item"] for e in cli["items"]]
        assert list(scores) == [np.float32(e["score"]) for e in cli["items"]]
        row = int(np.flatnonzero(exp.item_ids == item)[0])
        unit = items / np.linalg.norm(items, axis=1, keepdims=True)
        ref = unit @ unit[row]
        eligible = np.ones(len(items), bool)
        eligible[row] = False
        ids, scores = exp.similar_items(item, N=5, metric="cosine", exact=True)
        # Unit vectors: each term and the normalisation rounds; bound (d + 2) eps.
        assert_top_k(ids, scores, ref, eligible, (d + 2) * EPS32 * 2, exp.item_ids)
    for user in exp.user_ids[:3]:
        ids, scores = exp.similar_users(user, N=4)
        cli = cli_json("similar", trained["export"], "--user", user, "--k", 4)
        assert list(ids) == [e["user"] for e in cli["users"]]
        row = int(np.flatnonzero(exp.user_ids == user)[0])
        ref = users @ users[row]
        eligible = np.ones(len(users), bool)
        eligible[row] = False
        tol = d * EPS32 * (np.abs(users) @ np.abs(users[row])).max()
        assert_top_k(ids, scores, ref, eligible, tol, exp.user_ids)
    # A list of items (one library call): 2-D, one row per item, each row the item's own list
    # and scores, to the bit, through the index and exactly, by dot and cosine.
    items = list(exp.item_ids[:7]) + [exp.item_ids[3]]
    for metric, exact in [("default", False), ("cosine", False), ("dot", True)]:
        ids, scores = exp.similar_items(items, N=5, metric=metric, exact=exact)
        assert ids.shape == (8, 5) and scores.shape == (8, 5)
        for row, item in enumerate(items):
            one_ids, one_scores = exp.similar_items(item, N=5, metric=metric, exact=exact)
            assert list(ids[row]) == list(one_ids)
            assert scores[row].tobytes() == one_scores.tobytes()


@needs_cli
def test_explain_equals_the_cli_and_sums_to_the_score(exp, trained):
    for user, item in [(exp.user_ids[0], exp.item_ids[5]), (exp.user_ids[4], exp.item_ids[9])]:
        e = exp.explain(user, item, N=3)
        assert e == cli_json("explain", trained["export"], "--user", user, "--item", item,
                             "--top", 3)
        assert e["method"] == "exact_decomposition" and e["sums_to_score"] is True
        everything = exp.explain(user, item, N=10_000)
        assert len(everything["contributions"]) == everything["training_items"]
        total = sum(c["contribution"] for c in everything["contributions"])
        assert abs(total - everything["score"]) <= everything["tolerance"]
    both = exp.explain(exp.user_ids[0], [exp.item_ids[5], exp.item_ids[9]], N=3)
    assert [b["item"] for b in both] == [exp.item_ids[5], exp.item_ids[9]]


@needs_cli
def test_fold_in_equals_the_cli_and_scores_by_the_folded_vector(exp, trained):
    liked = list(exp.item_ids[[3, 17, 40, 41]])
    weights = [1.0, 2.0, 0.5, 4.0]
    ids, scores = exp.recommend_new_user(liked, weights, N=6)
    cli = cli_json("recommend", trained["export"], "--items", ",".join(liked), "--weights",
                   "1,2,0.5,4", "--k", 6)
    assert list(ids) == [e["item"] for e in cli["items"]]
    assert list(scores) == [np.float32(e["score"]) for e in cli["items"]]
    assert not set(ids) & set(liked)
    vector = exp.fold_in(liked, weights)
    assert vector.shape == (exp.item_factors.shape[1],) and vector.dtype == np.float32
    items = exp.item_factors.astype(np.float64)
    ref = items @ vector.astype(np.float64)
    tol = items.shape[1] * EPS32 * (np.abs(items) @ np.abs(vector.astype(np.float64))).max()
    eligible = ~np.isin(exp.item_ids, liked)
    ids, scores = exp.recommend_new_user(liked, weights, N=6, exact=True)
    assert_top_k(ids, scores, ref, eligible, tol, exp.item_ids)
    # Weights change the answer (they are used).
    assert not np.array_equal(exp.fold_in(liked), vector)
    with pytest.raises(ValueError, match=r"weights: expected one weight per item \(4\), got 2"):
        exp.fold_in(liked, [1.0, 2.0])


@needs_cli
def test_opted_out_users_get_the_popularity_list_flagged(exp, trained):
    seen = seen_rows(trained["export"])
    counts = np.bincount(np.concatenate(seen), minlength=len(exp.item_ids)).astype(np.float64)
    user = OPTED_OUT[0]
    assert exp.opted_out(user) and not exp.opted_out(exp.user_ids[0])
    assert user not in set(exp.user_ids)  # opted out at training: no row
    ids, scores = exp.recommend(user, N=8)
    assert_top_k(ids, scores, counts, np.ones(len(counts), bool), 0.0, exp.item_ids)
    lists = exp.recommend_lists([user, exp.user_ids[0]], N=8)
    assert [(l.user, l.personalised) for l in lists] == [(user, False), (exp.user_ids[0], True)]
    assert list(lists[0].ids) == list(ids)
    cli = cli_json("recommend", trained["export"], "--user", user, "--k", 8)
    assert cli["personalised"] is False
    assert list(ids) == [e["item"] for e in cli["items"]]
    # The batch answers them the same way; similar_users gives them nothing.
    batch_ids, _ = exp.recommend([exp.user_ids[0], user], N=8)
    assert list(batch_ids[1]) == list(ids)
    assert len(exp.similar_users(user, N=3)[0]) == 0
    assert not set(OPTED_OUT) & set(exp.similar_users(exp.user_ids[0], N=50)[0])


@needs_cli
def test_pseudonymised_export_answers_raw_ids_with_the_key(trained):
    path, key = trained["pseudo"], trained["key"]
    keyed = recforge.Export(path, pseudonym_key_file=key)
    keyless = recforge.Export(path)
    raw = recforge.Export(trained["export"]).user_ids[0]
    assert raw not in set(keyless.user_ids)  # the export holds pseudonyms only
    ids, scores = keyed.recommend(raw, N=5)
    cli = cli_json("recommend", path, "--user", raw, "--k", 5, "--pseudonym-key-file", key)
    assert list(ids) == [e["item"] for e in cli["items"]]
    # Its pseudonym works without the key and gives the same list.
    row = keyed.recommend_lists([raw], N=5)[0]
    assert list(row.ids) == list(ids)
    pseudonym = [u for u in keyless.user_ids
                 if list(keyless.recommend(u, N=5)[0]) == list(ids)]
    assert len(pseudonym) >= 1
    with pytest.raises(ValueError, match=f'user "{raw}" is not in this export'):
        keyless.recommend(raw)
    with pytest.raises(ValueError, match="give one of them, not both"):
        recforge.Export(path, pseudonym_key_file=key, pseudonym_key_env="SOME_VAR")
    os.environ["RECFORGE_TEST_KEY"] = KEY
    try:
        by_env = recforge.Export(path, pseudonym_key_env="RECFORGE_TEST_KEY")
        assert list(by_env.recommend(raw, N=5)[0]) == list(ids)
    finally:
        del os.environ["RECFORGE_TEST_KEY"]


def test_unknown_ids_and_bad_arguments_raise_one_sentence(exp, trained):
    with pytest.raises(ValueError) as e:
        exp.recommend("no-such-user")
    assert str(e.value) == (f'{trained["export"]}: user "no-such-user" is not in this export; '
                            "expected a user id of its training data")
    with pytest.raises(ValueError, match=r'recommend: user "nobody" is not in .*; expected user '):
        exp.recommend([exp.user_ids[0], "nobody"])
    with pytest.raises(ValueError, match=r'recommend: items "zz" is not in'):
        exp.recommend(exp.user_ids[0], items=[exp.item_ids[0], "zz"])
    # Unknown filter_items are ignored (they could not be recommended anyway).
    assert list(exp.recommend(exp.user_ids[0], filter_items=["zz"])[0]) == list(
        exp.recommend(exp.user_ids[0])[0])
    with pytest.raises(ValueError, match=r"similar_items: item \"zz\"|\"zz\" is not in"):
        exp.similar_items(["zz", exp.item_ids[0]])
    # N=0 is empty arrays, as the model classes answer; the users and items are still checked.
    user, item = exp.user_ids[0], exp.item_ids[0]
    for ids, scores, shape in [(*exp.recommend(user, N=0), (0,)),
                               (*exp.recommend([user, exp.user_ids[1]], N=0), (2, 0)),
                               (*exp.recommend_new_user([item], N=0), (0,)),
                               (*exp.similar_items(item, N=0), (0,)),
                               (*exp.similar_items([item, exp.item_ids[1]], N=0), (2, 0)),
                               (*exp.similar_users(user, N=0), (0,))]:
        assert ids.shape == shape and scores.shape == shape
        assert ids.dtype.kind == "U" and scores.dtype == np.float32
    lists = exp.recommend_lists([user], N=0)
    assert len(lists) == 1 and lists[0].user == user and lists[0].ids.shape == (0,)
    with pytest.raises(ValueError, match=r'recommend: user "nobody" is not in'):
        exp.recommend([user, "nobody"], N=0)
    with pytest.raises(ValueError, match=r"N: expected an integer >= 0, got -1"):
        exp.recommend(user, N=-1)
    with pytest.raises(ValueError, match=r"user: expected a str or a list of str, got int"):
        exp.recommend(5)
    with pytest.raises(ValueError, match=r'metric: expected "default", "dot" or "cosine"'):
        exp.similar_items(exp.item_ids[0], metric="l2")


def test_properties_are_read_only_views_of_the_export(exp, trained):
    path = pathlib.Path(trained["export"])
    for view, name in [(exp.user_factors, "user_factors.npy"),
                       (exp.item_factors, "item_factors.npy")]:
        assert view.dtype == np.float32 and not view.flags.writeable and not view.flags.owndata
        np.testing.assert_array_equal(view, np.load(path / name))
        with pytest.raises(ValueError):
            view[0, 0] = 1.0
    assert list(exp.user_ids) == (path / "user_ids.txt").read_text().splitlines()
    assert list(exp.item_ids) == (path / "item_ids.txt").read_text().splitlines()
    assert exp.manifest == json.loads((path / "manifest.json").read_text())
    assert exp.is_export and exp.can_fold_in and exp.metric == "dot"
    # A run directory serves the same exact answers (no manifest).
    on_run = recforge.Export(trained["run"].directory)
    assert on_run.manifest is None and not on_run.is_export
    user = exp.user_ids[2]
    ids, scores = on_run.recommend(user, N=5)
    assert list(ids) == list(exp.recommend(user, N=5, exact=True)[0])
    assert list(on_run.user_ids) == list(trained["run"].user_ids)


def test_without_scipy_every_method_works(trained):
    script = f"""
import sys
sys.modules["scipy"] = None
import recforge
e = recforge.Export({str(trained["export"])!r})
u, i = e.user_ids[0], e.item_ids[0]
e.recommend(u); e.recommend([u, e.user_ids[1]]); e.recommend_lists([u])
e.recommend_new_user([i, e.item_ids[1]]); e.fold_in([i])
e.similar_items(i); e.similar_users(u); e.explain(u, i); e.opted_out(u)
e.user_factors, e.item_factors, e.manifest, e.metric
r = recforge.Run({str(trained["run"].directory)!r})
r.metrics, r.config, r.user_factors, r.history
assert sys.modules["scipy"] is None
print("every method answered")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "every method answered"


def test_concurrent_queries_equal_sequential_ones(exp):
    users = list(exp.user_ids[:60])

    def query(user):
        ids, scores = exp.recommend(user, N=10)
        sim_ids, sim_scores = exp.similar_items(ids[0], N=5)
        new_ids, _ = exp.recommend_new_user(list(ids[:3]), N=5)
        return list(ids), scores.tobytes(), list(sim_ids), sim_scores.tobytes(), list(new_ids)

    sequential = [query(u) for u in users]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(query, users)) == sequential


def test_n_past_the_engines_limit_and_ids_that_are_not_text_are_one_sentence(exp):
    # Before: pybind's TypeError with its signature dump (N), or the engine's message cut at the
    # NUL, naming another, valid id.
    user, item = exp.user_ids[0], exp.item_ids[0]
    for call in (lambda: exp.recommend(user, N=2**31), lambda: exp.similar_items(item, N=2**40),
                 lambda: exp.recommend_lists([user], N=2**31),
                 lambda: exp.explain(user, item, N=2**31)):
        with pytest.raises(ValueError) as e:
            call()
        assert str(e.value).startswith("N: expected an integer of at most 2147483647 (2**31 - 1), "
                                       "got ")
    # The limit itself is taken, clamped to the number of items.
    assert list(exp.recommend(user, N=2**31 - 1)[0]) == list(
        exp.recommend(user, N=len(exp.item_ids))[0])
    with pytest.raises(ValueError) as e:
        exp.recommend("\ud800")
    assert str(e.value) == ("user: the id '\\ud800' is not valid text (a lone surrogate at index "
                            "0, which UTF-8 cannot encode)")
    with pytest.raises(ValueError, match=r"^item: the id 'a\\udc80' is not valid text"):
        exp.similar_items(["12", "a\udc80"])
    with pytest.raises(ValueError) as e:
        exp.recommend(user + "\x00junk")
    assert str(e.value) == (f"user: the id {user + chr(0) + 'junk'!r} holds a NUL character (at "
                            f"index {len(user)}); expected text without one")
    with pytest.raises(ValueError, match=r"^liked_items: the id .* holds a NUL character"):
        exp.recommend_new_user([item, "1\x00"])
    with pytest.raises(ValueError, match=r"^user: the id .* holds a NUL character"):
        exp.opted_out("1\x00")
    with pytest.raises(ValueError, match=r"^filter_items: the id .* holds a NUL character"):
        exp.recommend(user, filter_items=["\x00"])


def test_opted_out_of_an_unknown_id_raises_as_recommend_does(exp, trained):
    # Before: False, as for a known user who did not opt out.
    for source, user in [(exp, "no-such-user"),
                         (recforge.Export(trained["pseudo"]), exp.user_ids[0])]:  # raw, no key
        with pytest.raises(ValueError) as by_recommend:
            source.recommend(user)
        with pytest.raises(ValueError) as by_opted_out:
            source.opted_out(user)
        assert str(by_opted_out.value) == str(by_recommend.value)
        assert f'user "{user}" is not in this export' in str(by_opted_out.value)
    keyed = recforge.Export(trained["pseudo"], pseudonym_key_file=trained["key"])
    assert keyed.opted_out(exp.user_ids[0]) is False
    assert exp.opted_out(OPTED_OUT[0]) is True  # opted out at training: no row, still known


def test_an_empty_batch_and_an_empty_candidate_list_give_empty_answers(exp):
    # Before: the engine's "none of the 0 users asked for" and "none of the 0 candidate items".
    ids, scores = exp.recommend([], N=5)
    assert ids.shape == scores.shape == (0, 5) and ids.dtype.kind == "U"
    assert scores.dtype == np.float32
    ids, scores = exp.recommend([], N=10**6)  # as a batch's width: N clamped to the items
    assert ids.shape == (0, len(exp.item_ids))
    assert exp.recommend([], N=0)[0].shape == (0, 0)
    assert exp.recommend_lists([]) == []
    with pytest.raises(ValueError, match=r"N: expected an integer >= 0, got -1"):
        exp.recommend([], N=-1)
    with pytest.raises(ValueError, match=r"filter_items: expected a str or a list of str"):
        exp.recommend_lists([], filter_items=5)
    # items=[]: no item may be recommended, so every list is empty, as the model classes'
    # items=[] (1-D arrays of length 0 for one user; a batch's rows all padding).
    user, other = exp.user_ids[0], exp.user_ids[1]
    ids, scores = exp.recommend(user, N=5, items=[])
    assert ids.shape == scores.shape == (0,) and ids.dtype.kind == "U"
    assert scores.dtype == np.float32
    ids, scores = exp.recommend([user, other], N=5, items=[])
    assert ids.tolist() == [[""] * 5] * 2 and np.all(scores == -np.inf)
    lists = exp.recommend_lists([user, OPTED_OUT[0]], N=5, items=[])
    assert [(l.user, l.ids.tolist(), l.personalised) for l in lists] == [
        (user, [], True), (OPTED_OUT[0], [], False)]
    assert exp.recommend_new_user([exp.item_ids[0]], N=5, items=[])[0].shape == (0,)
    # The users and liked items are checked as in any request.
    with pytest.raises(ValueError, match=r'user "nobody" is not in this export'):
        exp.recommend("nobody", items=[])
    with pytest.raises(ValueError, match=r'recommend: user "nobody" is not in'):
        exp.recommend([user, "nobody"], items=[])
    with pytest.raises(ValueError, match=r'recommend_new_user: liked_items "zz" is not in'):
        exp.recommend_new_user([exp.item_ids[0], "zz"], items=[])


def test_fold_in_weights_that_are_not_numbers_name_weights(exp):
    # Before: NumPy's bare "could not convert string to float: 'a'".
    with pytest.raises(ValueError) as e:
        exp.fold_in([exp.item_ids[0]], weights=["a"])
    assert str(e.value) == ("weights: expected a list of numbers (could not convert string to "
                            "float: 'a')")
    with pytest.raises(ValueError, match=r"^weights: expected a list of numbers"):
        exp.recommend_new_user([exp.item_ids[0]], weights=[object()])


def test_similar_users_default_is_the_exports_metric(trained):
    config = base_config(trained["tmp"], "cosine")
    config["index"] = {"metric": "cosine"}
    cosine = recforge.Export(recforge.train(config).export)
    assert cosine.metric == "cosine"
    user = cosine.user_ids[0]
    ids, scores = cosine.similar_users(user, N=5)
    cos_ids, cos_scores = cosine.similar_users(user, N=5, metric="cosine")
    assert list(ids) == list(cos_ids) and np.array_equal(scores, cos_scores)
    assert np.all(scores <= 1 + 1e-6)
    assert not np.array_equal(scores, cosine.similar_users(user, N=5, metric="dot")[1])
    doc = " ".join(recforge.Export.similar_users.__doc__.split())
    assert ("``\"default\"`` is the source's own (an export's metric, dot for a run "
            "directory)") in doc
