#!/usr/bin/env python3
"""Warm start (model.init_from) against cold starts, as a nightly retraining sees it: a "day 1"
model trained on Gowalla's training file without a random share of its interactions (and of its
users: today's new users), then "day 2" models on the whole file, cold and warm-started from the
day-1 export, at a few iteration counts. Reports each run's test Recall@20 / NDCG@20, its
training time, and how far it moved from day 1: the mean top-20 overlap of the users both days
share (`recforge recommend --all`) and the mean cosine between the two days' rows of each item
once day 1's are rotated onto today's (factors are defined up to a rotation).

  .venv/bin/python tools/bench/bench_warm_start.py --recforge build/cpu/recforge \\
      --config configs/gowalla-ials.yaml [--drop 0.05] [--new-users 0.03] [--iterations 1 2 4] \\
      [--cold-iterations N...] [--model-seeds 1 2 3] [--warm-set KEY=VALUE]... \\
      [--out /tmp/warm-start]

A non-deterministic trainer (BPR, softmax and CCL on several threads: Hogwild) needs
--model-seeds with at least 3 seeds; each row is then the mean ± sample sd over them.

Run from the repository root (the config's data paths are relative to it). Everything it writes
goes under --out (the day-1 file, runs, recommendation lists), which must not exist yet.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time

import numpy as np


def train(recforge, config, out, name, sets):
    cmd = [recforge, "train", config, "--set", f"run.dir={out}/runs", "--set", f"run.name={name}",
           "--set", "run.progress=off"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    d = f"{out}/runs/{name}"
    run = json.load(open(f"{d}/run.json"))
    test = json.load(open(f"{d}/metrics.json"))["test"]
    return {"dir": d, "wall": wall, "train": run["train_seconds"], "recall": test["recall@20"],
            "ndcg": test["ndcg@20"], "init_from": run.get("init_from")}


def new_out(path):
    """Creates --out, which must not exist yet (everything a benchmark writes goes there)."""
    if os.path.exists(path):
        sys.exit(f"--out {path} exists; give a new directory")
    os.makedirs(path)


def data_path(recforge, config):
    """The data.path of a config as recforge resolves it (`recforge config`'s
    `  path: "FILE"  # where it was set` line)."""
    cfg = subprocess.run([recforge, "config", config], check=True, capture_output=True,
                         text=True).stdout
    return next(l.split(":", 1)[1].split("#")[0].strip().strip('"') for l in cfg.splitlines()
                if l.startswith("  path:"))


def lists(recforge, run_dir, path):
    subprocess.run([recforge, "recommend", run_dir, "--all", "--k", "20", "--out", path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            out.setdefault(row["user"], set()).add(row["item"])
    return out


def items(export):
    ids = open(f"{export}/item_ids.txt").read().split("\n")[:-1]
    return ids, np.load(f"{export}/item_factors.npy").astype(np.float64)


def aligned_cosine(day1, now):
    """Mean cosine between the two days' rows of each shared item after the rotation that best
    aligns day 1 with today (orthogonal Procrustes): factors are defined up to a rotation (the
    iALS CG solver works in, and leaves its rows in, the Gram matrix's eigenbasis), so raw
    coordinates are not comparable between models; the geometry is."""
    ids1, rows1 = day1
    ids2, rows2 = now
    at = {x: j for j, x in enumerate(ids1)}
    shared = [(at[x], j) for j, x in enumerate(ids2) if x in at]
    a = rows1[[p for p, _ in shared]]
    b = rows2[[q for _, q in shared]]
    u, _, vt = np.linalg.svd(a.T @ b)
    a = a @ (u @ vt)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return float(cos.mean()), len(shared)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", default="build/cpu/recforge")
    ap.add_argument("--config", default="configs/gowalla-ials.yaml")
    ap.add_argument("--drop", type=float, default=0.05, help="share of interactions day 1 lacks")
    ap.add_argument("--new-users", type=float, default=0.03, help="share of users day 1 lacks")
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--cold-iterations", type=int, nargs="*",
                    help="iteration counts of the cold day-2 runs (default: --iterations)")
    ap.add_argument("--model-seeds", type=int, nargs="+",
                    help="train each day-2 row once per model.seed and report mean ± sample sd "
                         "(non-deterministic trainers: at least 3); default: the config's seed")
    ap.add_argument("--warm-set", action="append", default=[],
                    help="KEY=VALUE for an extra warm row family (repeatable; all in one family), "
                         "e.g. model.learning_rate=0.0003")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/warm-start")
    a = ap.parse_args()
    new_out(a.out)
    path = data_path(a.recforge, a.config)
    rng = random.Random(a.seed)
    day1 = f"{a.out}/day1.txt"
    kept = dropped = 0
    with open(path) as src, open(day1, "w") as dst:  # adjacency lines: user item item ...
        for line in src:
            f = line.split()
            if len(f) < 2 or rng.random() < a.new_users:
                continue
            its = [i for i in f[1:] if rng.random() >= a.drop]
            dropped += len(f) - 1 - len(its)
            if its:
                dst.write(" ".join([f[0]] + its) + "\n")
                kept += len(its)
    print(f"day 1: {kept} interactions ({dropped} dropped, users dropped with p={a.new_users})")
    base = train(a.recforge, a.config, a.out, "day1", [f"data.path={day1}", "export.enabled=true"])
    print(f"day 1 model: test Recall@20 {base['recall']:.4f} NDCG@20 {base['ndcg']:.4f}, "
          f"{base['train']:.1f} s training")
    day1_lists = lists(a.recforge, base["dir"], f"{a.out}/day1-lists.csv")
    day1_items = items(f"{base['dir']}/export")
    families = [("cold", [], a.iterations if a.cold_iterations is None else a.cold_iterations),
                ("warm", [f"model.init_from={base['dir']}"], a.iterations)]
    if a.warm_set:
        families.append((f"warm, {', '.join(a.warm_set)}",
                         [f"model.init_from={base['dir']}", *a.warm_set], a.iterations))
    seeds = a.model_seeds or [None]
    rows, matched, counts = [], None, None
    for f, (start, extra, iterations) in enumerate(families):
        for n in iterations:
            runs = []
            for seed in seeds:
                name = f"f{f}-{n}" + ("" if seed is None else f"-s{seed}")
                sets = [f"model.iterations={n}", "export.enabled=true", *extra]
                if seed is not None:
                    sets.append(f"model.seed={seed}")
                r = train(a.recforge, a.config, a.out, name, sets)
                now = lists(a.recforge, r["dir"], f"{a.out}/{name}-lists.csv")
                shared = [u for u in now if u in day1_lists]
                overlap = sum(len(now[u] & day1_lists[u]) for u in shared) / (20 * len(shared))
                cosine, common = aligned_cosine(day1_items, items(f"{r['dir']}/export"))
                runs.append((r["recall"], r["ndcg"], r["train"], overlap, cosine))
                counts = (len(shared), common)
                matched = matched or r["init_from"]
            rows.append((start, n, np.array(runs)))

    def cell(values, digits):
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"

    print(f"day 2: {len(seeds)} run(s) per row" +
          ("" if seeds == [None] else f" (model.seed {', '.join(map(str, seeds))}; mean ± sample sd)"))
    print("| start | iterations | test Recall@20 | test NDCG@20 | training s | top-20 overlap with "
          "day 1 | item cosine with day 1, aligned |")
    print("|---|---|---|---|---|---|---|")
    for start, n, v in rows:
        print(f"| {start} | {n} | {cell(v[:, 0], 4)} | {cell(v[:, 1], 4)} | {cell(v[:, 2], 1)} | "
              f"{cell(v[:, 3], 3)} | {cell(v[:, 4], 3)} |")
    print(f"(overlap over {counts[0]} users in both days' lists, cosine over {counts[1]} items)")
    print("warm start matched:", json.dumps(matched))


if __name__ == "__main__":
    main()
