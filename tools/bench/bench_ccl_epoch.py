#!/usr/bin/env python3
"""CPU seconds per epoch of CCL against BPR (and the sampled softmax) at the same factors on
Gowalla's training file: each model trains `--epochs` epochs with `recforge train` (no
evaluation, no export) and the median epoch time is read from run.json. Prints a Markdown table
for docs/benchmarks.md.

  .venv/bin/python tools/bench/bench_ccl_epoch.py --recforge build/cpu/recforge [--factors 64 256]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "..", "shared", "data", "gowalla", "train.txt")

# The models at a given width: the shipped Gowalla configs' loss settings.
MODELS = {
    "bpr (1 negative)": ["model.type=bpr", "model.batch_size=1024", "model.negatives=1",
                         "model.hard_negatives=1"],
    "bpr (32 hard negatives)": ["model.type=bpr", "model.batch_size=1024", "model.negatives=1",
                                "model.hard_negatives=32"],
    "softmax (1,024 negatives + in-batch)": ["model.type=softmax", "model.batch_size=1024",
                                             "model.negatives=1024", "model.in_batch=true"],
    # The margin sets how many row-negative pairs have a gradient, and so the cost of the
    # pair-by-pair products (docs/models.md): the shipped config's 0.7.
    "ccl (1,000 negatives)": ["model.type=ccl", "model.batch_size=512", "model.negatives=1000",
                              "model.in_batch=false", "model.margin=0.7"],
    "ccl (2,000 negatives, dropout 0.2)": ["model.type=ccl", "model.batch_size=512",
                                           "model.negatives=2000", "model.in_batch=false",
                                           "model.margin=0.7", "model.dropout=0.2"],
}


def run(recforge, work, name, sets, factors, epochs, threads):
    cfg = os.path.join(work, "c.yaml")
    with open(cfg, "w") as f:
        f.write(f"""run: {{name: {name}, dir: {work}/runs, progress: "off", exists: overwrite}}
data: {{format: adjacency, path: {TRAIN}}}
split: {{method: none}}
eval: {{test: false}}
export: {{enabled: false}}
train: {{threads: {threads}}}
model: {{optimizer: adam, learning_rate: 0.001, iterations: {epochs}, factors: {factors}}}
""")
    cmd = [recforge, "train", cfg] + [a for s in sets for a in ("--set", s)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(os.path.join(work, "runs", name, "run.json")) as f:
        hist = json.load(f)["history"]
    return [h["seconds"] for h in hist]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recforge", default=os.path.join(ROOT, "build", "cpu", "recforge"))
    ap.add_argument("--factors", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                    help="a subset of the models (default: all)")
    args = ap.parse_args()
    if not os.path.exists(TRAIN):
        sys.exit(f"{TRAIN} is missing: the benchmark needs ../shared/data/gowalla")
    work = tempfile.mkdtemp(prefix="rf-ccl-bench-")
    try:
        rows = []
        for k in args.factors:
            for label in args.models:
                sets = MODELS[label]
                secs = run(args.recforge, work, "m", sets, k, args.epochs, args.threads)
                rows.append((k, label, statistics.median(secs), min(secs), max(secs)))
                print(f"{k} factors, {label}: {statistics.median(secs):.2f} s/epoch", file=sys.stderr)
        print(f"| factors | model | s/epoch (median of {args.epochs}) | range |")
        print("|---|---|---|---|")
        for k, label, med, lo, hi in rows:
            print(f"| {k} | {label} | {med:.2f} | {lo:.2f}–{hi:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
