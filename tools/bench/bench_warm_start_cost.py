#!/usr/bin/env python3
"""What a warm start (model.init_from) costs besides training, on Gowalla or a synthetic set: opening and checking
the export, matching ids, the opt-out check through the chain of warm starts, and the chain's
users that the run and its exports carry. Three runs of one iteration each:

  base   the whole training file, cold (it begins the chain);
  left   the training file without a share of its users (--leave), warm from base: the users
         that left join the chain (chain_users.txt);
  next   the same file, warm from left, with an opt-out list of --opt-out ids none of the models
         saw: the check runs against left's users and its chain, and the chain is carried on;
  cold   the same file, cold: what left and next would cost without a warm start.

For each run: init_from.seconds (open + match + checks, from run.json), the chain's users, the
size of chain_users.txt, the process's peak resident memory (wait4's ru_maxrss) and the export's
size; and for comparison the time of `recforge info EXPORT`, which loads the whole export (index
and seen lists included).

  .venv/bin/python tools/bench/bench_warm_start_cost.py --recforge build/cpu/recforge \\
      [--config configs/gowalla-ials.yaml] [--leave 0.03] [--opt-out 1000] [--out /tmp/ws-cost]

--synthetic USERS,ITEMS,INTERACTIONS trains instead on a `recforge datagen` set (written under
--out) with an iALS config of --factors factors and no evaluation: with many users and a large
--leave, the chain's users at scale (e.g. --synthetic 2000000,100000,20000000 --leave 0.5).

Run from the repository root. Everything it writes goes under --out, which must not exist yet.
"""
import argparse
import json
import os
import random
import subprocess
import time
import zlib

import bench_warm_start as ws  # beside this script


def train(recforge, config, out, name, sets):
    """One exported one-iteration run: its directory, run.json and peak RSS in bytes (the
    process's own, from wait4, so other processes do not count)."""
    cmd = [recforge, "train", config, "--set", f"run.dir={out}/runs", "--set", f"run.name={name}",
           "--set", "run.progress=off", "--set", "model.iterations=1", "--set",
           "export.enabled=true"]
    for s in sets:
        cmd += ["--set", s]
    with open(f"{out}/{name}.log", "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{name} failed (exit {p.returncode}); see {out}/{name}.log")
    d = f"{out}/runs/{name}"
    return d, json.load(open(f"{d}/run.json")), usage.ru_maxrss * 1024


def synthetic(recforge, spec, factors, out):
    """A datagen set and an iALS config for it (no evaluation): the config's path."""
    users, items, n = (int(x) for x in spec.split(","))
    data = f"{out}/data.csv"
    subprocess.run([recforge, "datagen", "--users", str(users), "--items", str(items),
                    "--interactions", str(n), "--seed", "7", "--out", data], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = f"{out}/synthetic.yaml"
    with open(config, "w") as f:
        f.write(f"""data:
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
model:
  type: ials
  factors: {factors}
  regularization: 0.1
  unobserved_weight: 0.1
eval:
  test: false
""")
    return config, data


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
    ap.add_argument("--synthetic", help="USERS,ITEMS,INTERACTIONS: a datagen set instead")
    ap.add_argument("--factors", type=int, default=16, help="with --synthetic")
    ap.add_argument("--out", default="/tmp/ws-cost")
    a = ap.parse_args()
    ws.new_out(a.out)
    if a.synthetic:
        config, path = synthetic(a.recforge, a.synthetic, a.factors, a.out)
        rest = f"{a.out}/left.csv"
        with open(path) as src, open(rest, "w") as dst:  # user,item,...: whether a user leaves
            dst.write(src.readline())                    # is decided once per user
            for line in src:
                user = line.split(",", 1)[0]
                if zlib.crc32(f"{a.seed}:{user}".encode()) / 2**32 >= a.leave:
                    dst.write(line)
    else:
        config, path = a.config, ws.data_path(a.recforge, a.config)
        rng = random.Random(a.seed)
        rest = f"{a.out}/left.txt"
        with open(path) as src, open(rest, "w") as dst:  # adjacency lines: user item item ...
            for line in src:
                if rng.random() >= a.leave:
                    dst.write(line)
    opt_out = f"{a.out}/opt-out.txt"
    with open(opt_out, "w") as f:
        f.write("".join(f"never-seen-{i}\n" for i in range(a.opt_out)))

    base, _, base_rss = train(a.recforge, config, a.out, "base", [])
    runs = [("base", base, None, base_rss)]
    left, left_run, rss = train(a.recforge, config, a.out, "left",
                                [f"data.path={rest}", f"model.init_from={base}"])
    runs.append(("left", left, left_run, rss))
    nxt, next_run, rss = train(a.recforge, config, a.out, "next",
                               [f"data.path={rest}", f"model.init_from={left}",
                                f"privacy.opt_out={opt_out}"])
    runs.append(("next", nxt, next_run, rss))
    cold, cold_run, rss = train(a.recforge, config, a.out, "cold", [f"data.path={rest}"])
    runs.append(("cold", cold, cold_run, rss))
    t0 = time.time()
    subprocess.run([a.recforge, "info", f"{left}/export"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    info_seconds = time.time() - t0
    print(f"`recforge info` of left's export (whole load): {info_seconds:.2f} s")
    print("| run | warm start: open + match + checks, s | users matched | users departed | "
          "chain users | chain_users.txt, KiB | peak RSS, MiB | export, MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, d, run, rss in runs:
        w = (run or {}).get("init_from")
        chain = f"{d}/chain_users.txt"
        kib = f"{os.path.getsize(chain) / 1024:.0f}" if os.path.exists(chain) else "—"
        warm = (f"{w['seconds']:.3f} | {w['users_matched']} of {w['users']} | "
                f"{w['users_departed']} | {w['chain_users']['count']}" if w else
                "— | — | — | —")
        print(f"| {name} | {warm} | {kib} | {rss / 2**20:.0f} | "
              f"{size(d + '/export') / 2**20:.1f} |")


if __name__ == "__main__":
    main()
