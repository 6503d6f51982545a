#!/usr/bin/env python3
"""Trains one config once per seed (model.seed) and reports each test metric's mean and sample
standard deviation over the seeds, the figures docs/benchmarks.md gives for trainers whose
result depends on the seed (BPR, softmax, CCL: Hogwild threads, sampled batches).

  .venv/bin/python tools/bench/seeds.py --recforge build/cpu/recforge \\
      --config configs/gowalla-bpr.yaml --seeds 1 2 3 [--set KEY=VALUE ...] [--out DIR]

Runs go to DIR/<config name>-seed-<s> (default DIR: runs/seeds); a run whose metrics.json is
already there is read, not retrained, so a killed call resumes. Prints a Markdown table (one row
per seed, then mean ± std) and writes DIR/<config name>-seeds.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

METRICS = ["recall@20", "ndcg@20", "recall@10", "ndcg@10", "recall@50", "ndcg@50"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", default="build/cpu/recforge")
    ap.add_argument("--config", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--out", default="runs/seeds")
    ap.add_argument("--name", help="run name prefix (default: the config file's stem)")
    args = ap.parse_args()
    if len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds):
        sys.exit("--seeds: give at least two distinct seeds")
    name = args.name or os.path.splitext(os.path.basename(args.config))[0]
    os.makedirs(args.out, exist_ok=True)
    per_seed = []
    for s in args.seeds:
        run = f"{name}-seed-{s}"
        d = os.path.join(args.out, run)
        if not os.path.exists(os.path.join(d, "metrics.json")):
            cmd = [args.recforge, "train", args.config, "--set", f"model.seed={s}",
                   "--set", f"run.dir={args.out}", "--set", f"run.name={run}",
                   "--set", "run.exists=overwrite", "--set", "export.enabled=false"]
            for kv in args.sets:
                cmd += ["--set", kv]
            print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
            t0 = time.time()
            subprocess.run(cmd, check=True)
            print(f"seed {s}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
        with open(os.path.join(d, "metrics.json")) as f:
            m = json.load(f)
        with open(os.path.join(d, "run.json")) as f:
            r = json.load(f)
        secs = [h["seconds"] for h in r.get("history", []) if "seconds" in h]
        per_seed.append({"seed": s, "test": m["test"], "train_seconds": sum(secs),
                         "epochs": len(secs)})
    keys = [k for k in METRICS if k in per_seed[0]["test"]]
    summary = {}
    for k in keys:
        vals = [p["test"][k] for p in per_seed]
        summary[k] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals),
                      "min": min(vals), "max": max(vals)}
    out = {"config": args.config, "sets": args.sets, "seeds": args.seeds, "per_seed": per_seed,
           "summary": summary}
    with open(os.path.join(args.out, f"{name}-seeds.json"), "w") as f:
        json.dump(out, f, indent=2)
    print("| seed | " + " | ".join(keys) + " | train s |")
    print("|---" * (len(keys) + 2) + "|")
    for p in per_seed:
        print(f"| {p['seed']} | " + " | ".join(f"{p['test'][k]:.4f}" for k in keys) +
              f" | {p['train_seconds']:.0f} |")
    print(f"| **mean ± std ({len(per_seed)} seeds)** | " +
          " | ".join(f"**{summary[k]['mean']:.4f}** ± {summary[k]['std']:.4f}" for k in keys) + " | |")


if __name__ == "__main__":
    main()
