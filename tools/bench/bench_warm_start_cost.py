#!/usr/bin/env python3
"""What a warm start (model.init_from) costs besides training, on Gowalla: opening and checking
the export, matching ids, the opt-out check through the chain of warm starts, and the chain's
users that the run and its exports carry. Three runs of one iteration each:

  base   the whole training file, cold (it begins the chain);
  left   the training file without a share of its users (--leave), warm from base: the users
         that left join the chain (chain_users.txt);
  next   the same file, warm from left, with an opt-out list of --opt-out ids none of the models
         saw: the check runs against left's users and its chain, and the chain is carried on.

For each warm run: init_from.seconds (open + match + checks, from run.json), the chain's users,
the size of chain_users.txt, and the export's size beside base's; and for comparison the time of
`recforge info EXPORT`, which loads the whole export (index and seen lists included).

  .venv/bin/python tools/bench/bench_warm_start_cost.py --recforge build/cpu/recforge \\
      [--config configs/gowalla-ials.yaml] [--leave 0.03] [--opt-out 1000] [--out /tmp/ws-cost]

Run from the repository root. Everything it writes goes under --out, which must not exist yet.
"""
import argparse
import json
import os
import random
import subprocess
import time

import bench_warm_start as ws  # beside this script


def train(recforge, config, out, name, sets):
    """One exported one-iteration run (bench_warm_start.train): its directory and run.json."""
    d = ws.train(recforge, config, out, name,
                 ["model.iterations=1", "export.enabled=true", *sets])["dir"]
    return d, json.load(open(f"{d}/run.json"))


def size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs
               if not os.path.islink(os.path.join(r, f)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", default="build/cpu/recforge")
    ap.add_argument("--config", default="configs/gowalla-ials.yaml")
    ap.add_argument("--leave", type=float, default=0.03, help="share of users who leave")
    ap.add_argument("--opt-out", type=int, default=1000, help="ids on the opt-out list")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/ws-cost")
    a = ap.parse_args()
    ws.new_out(a.out)
    path = ws.data_path(a.recforge, a.config)
    rng = random.Random(a.seed)
    rest = f"{a.out}/left.txt"
    with open(path) as src, open(rest, "w") as dst:  # adjacency lines: user item item ...
        for line in src:
            if rng.random() >= a.leave:
                dst.write(line)
    opt_out = f"{a.out}/opt-out.txt"
    with open(opt_out, "w") as f:
        f.write("".join(f"never-seen-{i}\n" for i in range(a.opt_out)))

    base, _ = train(a.recforge, a.config, a.out, "base", [])
    left, left_run = train(a.recforge, a.config, a.out, "left",
                              [f"data.path={rest}", f"model.init_from={base}"])
    nxt, next_run = train(a.recforge, a.config, a.out, "next",
                             [f"data.path={rest}", f"model.init_from={left}",
                              f"privacy.opt_out={opt_out}"])
    t0 = time.time()
    subprocess.run([a.recforge, "info", f"{left}/export"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    info_seconds = time.time() - t0
    print(f"export of base: {size(base + '/export') / 2**20:.1f} MiB; "
          f"`recforge info` of left's export (whole load): {info_seconds:.2f} s")
    print("| run | warm start: open + match + checks, s | users matched | users departed | "
          "chain users | chain_users.txt, KiB | export, MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, d, run in (("left", left, left_run), ("next", nxt, next_run)):
        w = run["init_from"]
        chain = f"{d}/chain_users.txt"
        kib = os.path.getsize(chain) / 1024 if os.path.exists(chain) else 0
        print(f"| {name} | {w['seconds']:.3f} | {w['users_matched']} of {w['users']} | "
              f"{w['users_departed']} | {w['chain_users']['count']} | {kib:.0f} | "
              f"{size(d + '/export') / 2**20:.1f} |")


if __name__ == "__main__":
    main()
