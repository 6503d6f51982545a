#!/usr/bin/env python3
"""Distributed iALS on one machine: communication and memory per rank at P = 1, 2, 4
(docs/benchmarks.md, "Distributed iALS"; the scaling model of docs/distributed.md reads its
JSON).

Writes a synthetic set with `recforge datagen` (once, kept in --work), then trains it with
`mpirun -np P recforge train --distributed` (the distributed path at P = 1 too) and reads each
run's run.json: bytes each rank sent in the last iteration (the per-iteration volume of
the exchanges and all-reduces), bytes sent while preparing the data, peak RSS of each rank,
seconds per iteration, the exchange chosen for each half, and the loss. Prints a Markdown table
and writes the figures as JSON (--json).

usage: .venv/bin/python tools/bench/bench_dist.py --recforge build/release/recforge
           [--work /tmp/recforge-bench-dist] [--ranks 1 2 4] [--interactions 20000000]
           [--users 1000000] [--items 200000] [--factors 64] [--iterations 3] [--threads 1]
           [--json out.json]
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mpirun(np_):
    """The launcher line the tests use (tests/dist/mpirun.sh), for `np_` ranks."""
    return ["bash", str(ROOT / "tests/dist/mpirun.sh"), "-np", str(np_)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", required=True)
    ap.add_argument("--work", default="/tmp/recforge-bench-dist")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    binary = str(Path(args.recforge).resolve())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"syn-{args.users}-{args.items}-{args.interactions}.csv"
    if not data.exists():
        t0 = time.time()
        subprocess.run([binary, "datagen", "--users", str(args.users), "--items", str(args.items),
                        "--interactions", str(args.interactions), "--seed", "7", "--out",
                        str(data)], check=True)
        print(f"datagen: {data} ({data.stat().st_size / 1e9:.2f} GB) in {time.time() - t0:.0f} s",
              file=sys.stderr)
    config = work / "bench.yaml"
    config.write_text(f"""run:
  dir: {work / 'runs'}
  exists: overwrite
  progress: off
data:
  format: delimited
  path: {data}
  header: true
  user_col: user
  item_col: item
  weight_col: weight
  cache: false
split:
  method: random
  test_fraction: 0.1
weighting:
  scheme: log
  alpha: 1.0
model:
  type: ials
  factors: {args.factors}
  iterations: {args.iterations}
  regularization: 0.1
  unobserved_weight: 0.1
train:
  threads: {args.threads}
eval:
  test: false
""")
    rows = []
    for p in args.ranks:
        name = f"p{p}"
        cmd = mpirun(p) + [binary, "train", str(config), "--distributed", "--set",
                           f"run.name={name}"]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode != 0:
            sys.exit(f"bench_dist: P={p} failed ({shlex.join(cmd)}):\n{r.stdout}\n{r.stderr}")
        run = json.loads((work / "runs" / name / "run.json").read_text())
        d = run["distributed"]
        hist = run["history"]
        rows.append({
            "ranks": p,
            "bytes_per_iteration": d["bytes_sent_per_iteration"],
            "bytes_preparing_data": d["bytes_sent_preparing_data"],
            "peak_rss_bytes": d["peak_rss_bytes"],
            "exchange": d["exchange"],
            "seconds_per_iteration": [h["seconds"] for h in hist],
            "loss": hist[-1]["loss"],
            "train_seconds": run["train_seconds"],
            "wall_seconds": wall,
        })
        print(f"P={p}: done in {wall:.0f} s", file=sys.stderr)
    stats = json.loads((work / "runs" / f"p{args.ranks[0]}" / "stats.json").read_text())
    info = {"interactions_requested": args.interactions, "users": args.users,
            "items": args.items, "users_kept": stats["users"], "items_kept": stats["items"],
            "train_interactions": stats["train"]["interactions"], "factors": args.factors,
            "threads_per_rank": args.threads, "cpus": os.cpu_count(), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    mib = 1 << 20
    print(f"| P | bytes sent per iteration per rank (MiB) | preparing the data (MiB, per rank) "
          f"| peak RSS per rank (MiB) | s/iteration (median) | exchange user / item half "
          f"| final loss |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        spi = sorted(r["seconds_per_iteration"])[len(r["seconds_per_iteration"]) // 2]
        fmt = lambda v: ", ".join(f"{x / mib:.1f}" for x in v)
        print(f"| {r['ranks']} | {fmt(r['bytes_per_iteration'])} | {fmt(r['bytes_preparing_data'])} "
              f"| {fmt(r['peak_rss_bytes'])} | {spi:.2f} | {r['exchange']['user_half']} / "
              f"{r['exchange']['item_half']} | {r['loss']:.6g} |")


if __name__ == "__main__":
    main()
