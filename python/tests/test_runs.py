"""recforge.train and recforge.Run: a dict config equals its YAML file, the engine's validation
and sentences, overrides, relative paths, Ctrl-C, and what a Run reads from its directory."""

import json
import os
import pathlib
import re
import signal
import subprocess
import threading

import numpy as np
import pytest

import recforge


def config(tmp, name="r", **sections):
    c = {
        "run": {"name": name, "dir": str(tmp / "runs"), "progress": "off", "seed": 7},
        "data": {"format": "synthetic", "cache_dir": str(tmp / "cache")},
        "synthetic": {"users": 250, "items": 150, "interactions": 5000, "seed": 2},
        "split": {"method": "leave_last", "validation_fraction": 0.1},
        "model": {"factors": 6, "iterations": 3, "eval_every": 1},
        "eval": {"ks": [5, 10], "metric": "ndcg@10"},
        "train": {"threads": 1},
    }
    for section, values in sections.items():
        c.setdefault(section, {}).update(values)
    return c


def to_yaml(c):
    """The YAML file a user would write for the dict `c` (block style, plain scalars)."""
    lines = []
    for section, values in c.items():
        lines.append(f"{section}:")
        for key, value in values.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list):
                value = "[" + ", ".join(map(str, value)) + "]"
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def test_a_path_and_the_equal_dict_train_the_same_run(tmp_path):
    by_dict = config(tmp_path / "a")
    path = tmp_path / "same.yaml"
    path.write_text(to_yaml(config(tmp_path / "b")))
    a, b = recforge.train(by_dict), recforge.train(path)
    assert a.directory == tmp_path / "a" / "runs" / "r"
    assert b.directory == tmp_path / "b" / "runs" / "r"
    assert b.info["config_source"] == str(path) and a.info["config_source"] == "config dict"
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert a.metrics == b.metrics and a.metrics["test"]["users"] > 0
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    fa, fb = a.flat_config, b.flat_config
    assert {k for k in fa if fa[k] != fb[k]} == {"run.dir", "data.cache_dir"}


def test_a_run_reads_its_files(tmp_path):
    run = recforge.train(config(tmp_path), overrides=["model.factors=5"])
    d = run.directory
    assert isinstance(d, pathlib.Path) and d.is_dir()
    assert run.metrics == json.loads((d / "metrics.json").read_text())
    info = json.loads((d / "run.json").read_text())
    assert run.info == info and run.history == info["history"]
    assert [h["iteration"] for h in run.history] == [1, 2, 3]
    assert all("validation" in h for h in run.history)  # model.eval_every=1
    assert run.model["factors"] == 5 and run.train_seconds == info["train_seconds"]
    assert run.stats == json.loads((d / "stats.json").read_text())
    assert run.config["model"]["factors"] == 5 and run.config["eval"]["ks"] == [5, 10]
    assert run.flat_config["run.name"] == "r"
    # Factors: read-only memory maps of the .npy files, equal to them.
    for factors, name in [(run.user_factors, "user_factors.npy"),
                          (run.item_factors, "item_factors.npy")]:
        assert isinstance(factors, np.memmap) and not factors.flags.writeable
        np.testing.assert_array_equal(factors, np.load(d / name))
        assert factors.shape[1] == 5
    assert len(run.user_ids) == run.user_factors.shape[0]
    assert len(run.item_ids) == run.item_factors.shape[0]
    # Run(path) opens the same directory again.
    again = recforge.Run(str(d))
    assert again.metrics == run.metrics and again.config == run.config
    assert run.export is None  # export.enabled is false by default
    with pytest.raises(ValueError, match=r"not a finished recforge run \(no run.json\)"):
        recforge.Run(tmp_path)


def test_a_warm_started_run_says_where_it_started(tmp_path):
    """model.init_from through recforge.train: the run starts from an earlier run's export, and
    Run.init_from is run.json's record of it (a cold run has none)."""
    first = recforge.train(config(tmp_path, "first", export={"enabled": True}))
    assert first.init_from is None
    warm = recforge.train(config(tmp_path, "warm"),
                          overrides=[f"model.init_from={first.directory}"])
    users, items = first.user_factors.shape[0], first.item_factors.shape[0]
    record = dict(warm.init_from)
    # The same data: no user of the first run is missing, so the chain carries none.
    chain = record.pop("chain_users")
    assert record.pop("seconds") >= 0  # how long opening and matching the export took
    assert chain["count"] == 0 and chain["key_checks"] == [] and len(chain["salt"]) == 64
    assert record == {
        "export": str(first.directory / "export"), "version": "v-1",
        "created": json.loads(
            (first.directory / "export" / "current" / "manifest.json").read_text())["created"],
        "source_run": str(first.directory), "users": users, "users_matched": users,
        "items": items, "items_matched": items, "users_departed": 0,
        # The first run began the chain of warm starts; this is its first warm start.
        "lineage": {"started": first.info["created"], "warm_starts": 1}}
    # The same data and seed: the warm run's first iteration starts from the first run's end,
    # so its loss is no higher than the first run's last (each CG half-step only lowers it), up
    # to the two evaluations' rounding: float32 Gram sums over at most 250 rows, γ_250 each.
    assert warm.history[0]["loss"] <= first.history[-1]["loss"] * (1 + 2 * 250 * 2.0**-24)
    with pytest.raises(ValueError, match="model.init_from"):
        recforge.train(config(tmp_path, "bad"), overrides=["model.init_from=" + str(tmp_path)])


def test_overrides_device_and_progress_are_applied_in_order(tmp_path):
    run = recforge.train(config(tmp_path), overrides=("model.factors=4", "model.factors=3",
                                                      "run.name=o"), device="cpu",
                         show_progress=False)
    assert run.directory.name == "o" and run.user_factors.shape[1] == 3
    assert run.config["train"]["device"] == "cpu" and run.config["run"]["progress"] == "off"
    assert run.info["device"] == "cpu"
    one = recforge.train(config(tmp_path), overrides="run.name=single")
    assert one.directory.name == "single"


def test_a_bad_dict_is_refused_like_the_same_file_with_the_engines_sentence(tmp_path):
    cases = [
        ({"model": {"factorz": 8}}, 'model.factorz: unknown key; did you mean "model.factors"?'),
        ({"model": {"factors": "many"}}, 'model.factors: expected an integer >= 1, got "many"'),
        ({"modle": {"factors": 8}}, 'modle: unknown section; did you mean "model"?'),
    ]
    for i, (bad, sentence) in enumerate(cases):
        c = config(tmp_path)
        for section, values in bad.items():
            c.setdefault(section, {}).update(values)
        with pytest.raises(ValueError) as from_dict:
            recforge.train(c)
        assert str(from_dict.value) == f"config dict: {sentence}"
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(to_yaml(c))
        with pytest.raises(ValueError) as from_file:
            recforge.train(path)
        # The same sentence, the file naming its line and column instead.
        assert str(from_file.value).startswith(f"{path}:")
        assert str(from_file.value).endswith(f": {sentence}")
    # A combination of values (config::check) names the key too.
    c = config(tmp_path)
    c["model"]["patience"] = 2
    c["model"]["eval_every"] = 0
    with pytest.raises(ValueError, match=r"^config dict: model\.patience"):
        recforge.train(c)
    with pytest.raises(ValueError) as e:
        recforge.train(config(tmp_path), overrides=["model.factors=0"])
    assert str(e.value) == ("--set model.factors=0: model.factors: expected an integer >= 1, "
                            "got 0")
    missing = tmp_path / "missing.csv"
    c = config(tmp_path, data={"format": "delimited", "path": str(missing)},
               split={"method": "random"})
    with pytest.raises(ValueError) as e:
        recforge.train(c)
    assert str(e.value) == f"{missing}: data file not found"
    with pytest.raises(ValueError, match=r"config: expected a path to a YAML file or a dict"):
        recforge.train(42)
    with pytest.raises(ValueError, match=r"overrides: expected a str or a list of str"):
        recforge.train(config(tmp_path), overrides=[3])
    # Nothing was left behind by the refused runs.
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_relative_paths_of_a_dict_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    data = tmp_path / "work" / "data"
    data.mkdir(parents=True)
    lines = [f"{u},{i},1" for u in range(30) for i in range(20) if (u * 7 + i * 3) % 5 < 2]
    (data / "x.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path / "work")
    c = {
        "run": {"name": "rel", "dir": "runs", "progress": "off"},
        "data": {"format": "delimited", "path": "data/x.csv", "cache_dir": "cache",
                 "min_user_interactions": 1, "min_item_interactions": 1},
        "split": {"method": "random"},
        "model": {"factors": 3, "iterations": 1},
    }
    run = recforge.train(c)
    assert run.directory == pathlib.Path("runs/rel")
    assert (tmp_path / "work" / "runs" / "rel" / "run.json").is_file()
    assert run.config["data"]["path"] == "data/x.csv"


def test_ctrl_c_during_training_raises_keyboard_interrupt_and_leaves_no_run(tmp_path):
    # Enough iterations that training is still running when the signal arrives; the signal is
    # sent once the log shows an iteration done, so it lands inside the iteration loop.
    c = config(tmp_path, model={"iterations": 20_000, "eval_every": 0},
               synthetic={"users": 400, "items": 300, "interactions": 20000})
    runs = tmp_path / "runs"
    stop = threading.Event()

    def interrupt_once_training():
        while not stop.is_set():
            for log in runs.glob("*/log.txt") if runs.exists() else []:
                try:
                    if "iteration 2/" in log.read_text():
                        os.kill(os.getpid(), signal.SIGINT)
                        return
                except FileNotFoundError:
                    pass
            stop.wait(0.01)

    watcher = threading.Thread(target=interrupt_once_training)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            recforge.train(c)
    finally:
        stop.set()
        watcher.join()
    # Neither the run nor its staging directory, nor runs/, which this run created.
    assert not runs.exists(), list(runs.iterdir())
    # The process goes on normally: a next run trains to the end.
    c["model"]["iterations"] = 2
    assert recforge.train(c).history[-1]["iteration"] == 2


def test_a_dict_without_run_name_makes_a_run_named_run(tmp_path):
    c = config(tmp_path)
    del c["run"]["name"]
    assert recforge.train(c).directory == tmp_path / "runs" / "run"
    # A second one follows run.exists like any other run, and an override names it.
    assert recforge.train(c).directory == tmp_path / "runs" / "run.1"
    assert recforge.train(c, overrides=["run.name=x"]).directory == tmp_path / "runs" / "x"


def test_a_dict_with_an_empty_run_name_makes_a_run_named_run(tmp_path):
    # Before: an empty name fell back to the config's source, a directory named "config dict".
    c = config(tmp_path, name="")
    assert recforge.train(c).directory == tmp_path / "runs" / "run"
    assert recforge.train(c, overrides=["run.name=y"]).directory == tmp_path / "runs" / "y"
    named = config(tmp_path, name="z")
    assert recforge.train(named, overrides=['run.name=""']).directory == tmp_path / "runs" / "run.1"
    assert not (tmp_path / "runs" / "config dict").exists()


def test_metrics_by_activity_are_the_clis_and_add_up_to_the_test_metrics(tmp_path):
    run = recforge.train(config(tmp_path))
    test = run.metrics["test"]
    groups = run.metrics_by_activity([15, 20])
    assert [(g["min"], g["max"]) for g in groups] == [(0, 15), (16, 20), (21, None)]
    assert sum(g["users"] for g in groups) == test["users"]
    assert all(g["users"] > 0 for g in groups)  # 20 interactions per user on average
    names = [f"{m}@{k}" for m in ("recall", "precision", "ndcg", "map", "hit_rate") for k in (5, 10)]
    for name in names:
        # The groups' means weighted by their users are the test mean. Values in [0, 1] over
        # n <= 250 users: each double sum is within n * 2^-53 of exact (recursive summation), so
        # the two sides differ by at most about 2 * (n + 5) * 2^-53 < 6e-14 < 1e-13.
        mean = sum(g["users"] * g[name] for g in groups) / test["users"]
        assert abs(mean - test[name]) < 1e-13, name
    # One group holding every user is the whole evaluation; an empty one has no means.
    whole, empty = run.metrics_by_activity([10**9])
    assert whole["users"] == test["users"] and empty["users"] == 0
    assert all(abs(whole[n] - test[n]) < 1e-13 for n in names)
    assert all(empty[n] is None for n in names)
    if os.environ.get("RECFORGE_CLI"):  # the CLI's figures, to the bit
        out = tmp_path / "by.json"
        subprocess.run([os.environ["RECFORGE_CLI"], "evaluate", str(run.directory),
                        "--activity-edges", "15,20", "--out", str(out)], check=True,
                       capture_output=True)
        assert json.loads(out.read_text())["test_by_activity"] == groups
    for bad, says in (([5, 5], "edges 5,5: expected increasing whole numbers >= 1"),
                      ([0], "edges 0: expected increasing"),
                      ([2.5], "edges: expected whole numbers >= 1 in increasing order, got 2.5"),
                      ("5,10", "edges: expected a list of whole numbers, got str")):
        with pytest.raises(ValueError, match=re.escape(says)):
            run.metrics_by_activity(bad)


def test_compare_paired_tests_runs_user_by_user_and_refuses_another_split(tmp_path):
    a = recforge.train(config(tmp_path, name="a"))
    b = recforge.train(config(tmp_path, name="b", model={"factors": 12}))
    rows = recforge.compare_paired([a, str(b.directory)])
    assert [r["metric"] for r in rows] == [
        f"{m}@{k}" for m in ("recall", "precision", "ndcg", "map", "hit_rate") for k in (5, 10)
    ]
    for r in rows:
        assert set(r) == {"column", "baseline", "metric", "users", "mean_difference", "ci_low",
                          "ci_high", "level", "t", "p", "p_holm"}
        assert (r["column"], r["baseline"], r["level"]) == ("b", "a", 0.95)
        assert r["users"] == a.metrics["test"]["users"]
        # The mean per-user difference is the difference of the two test figures (values in
        # [0, 1] averaged over a few hundred users in another order: a few ulps apart).
        expected = b.metrics["test"][r["metric"]] - a.metrics["test"][r["metric"]]
        assert abs(r["mean_difference"] - expected) < 1e-13
        assert r["ci_low"] <= r["mean_difference"] <= r["ci_high"]
        assert 0 <= r["p"] <= r["p_holm"] <= 1
    # A wider interval at a higher level, around the same mean.
    wide = recforge.compare_paired([a, b], level=0.99)
    for r, w in zip(rows, wide):
        assert w["mean_difference"] == r["mean_difference"] and w["p"] == r["p"]
        if r["ci_high"] > r["ci_low"]:
            assert w["ci_low"] < r["ci_low"] and w["ci_high"] > r["ci_high"]

    other = recforge.train(config(tmp_path, name="other", split={"leave_k": 2}))
    with pytest.raises(ValueError, match=r"runs/other holds out other test items than .*runs/a "
                                         r"\(a user \(an id of \d+ bytes?\) has other test items\)"):
        recforge.compare_paired([a, other])
    with pytest.raises(ValueError, match="one column"):
        recforge.compare_paired([a])
    with pytest.raises(ValueError, match=r"confidence level 1\.5; expected a value in \(0, 1\)"):
        recforge.compare_paired([a, b], level=1.5)
    with pytest.raises(ValueError, match="level: expected a number"):
        recforge.compare_paired([a, b], level="0.9")
    with pytest.raises(ValueError, match="runs: expected a list"):
        recforge.compare_paired(str(a.directory))
    with pytest.raises(ValueError, match="got an element of type int"):
        recforge.compare_paired([a, 3])
