#!/usr/bin/env python3
"""The scaling model of distributed iALS (docs/distributed.md, "Scaling model").

Seconds per iteration on P GPUs = compute / P + communication, without overlap:
  compute        = nnz * t_nnz + (users + items) * k^2 * 2 * (cg_steps + 1) / sgemm_flops
                   t_nnz: the H200's measured cost per interaction and iteration at 256 factors
                   (bench-gpu, docs/benchmarks.md "GPU": 0.0418 s for 20,176,087 interactions,
                   at 1.03x its traffic floor, so the cost is the interactions' traffic);
                   the Gram products at the measured SGEMM rate (51.3 TFLOP/s);
  communication  = what each rank sends per iteration (the formula below, checked against the
                   bytes recforge counted in the distributed benchmark, --bench JSON) over the
                   interconnect's all-gather bus bandwidth (nccl-tests' busbw):
                   all-gather: (P-1)/P * (users + items) * k * 4 bytes, plus 4 k x k all-reduces;
                   targeted:   the rows a rank's interactions index, from other ranks.
Published bandwidths: NVSwitch all-gather busbw about 360 GB/s on 8 H100/H200 in one node
(nccl-tests, NVIDIA staff), InfiniBand NDR 400 Gb/s per GPU (one ConnectX-7 per GPU in
DGX/HGX H100/H200), 46-49 GB/s achieved per NIC (NVIDIA staff); we take 46 GB/s.

usage: python3 tools/bench/scaling_model.py [--bench /tmp/rbd/bench.json]
"""

import argparse
import json

T_NNZ = 0.0418 / 20_176_087          # s per interaction and iteration, H200, 256 factors
SGEMM = 51.3e12                       # FLOP/s, H200, measured in the same run
CG_STEPS = 3
NVSWITCH_BUSBW = 360e9                # bytes/s, all-gather within an 8-GPU node
IB_BUSBW = 46e9                       # bytes/s per GPU across nodes (one NDR NIC per GPU)


def allgather_bytes(users, items, k, p):
    """Bytes one rank sends per iteration with all-gathers (what recforge counts)."""
    return (p - 1) / p * (users + items) * k * 4 + 4 * k * k * 4


def compute_seconds(nnz, users, items, k, p):
    gram = (users + items) * k * k * 2 * (CG_STEPS + 1) / SGEMM
    return (nnz * T_NNZ * (k / 256) + gram) / p


def check_against_bench(path):
    b = json.load(open(path))
    print(f"Communication formula against the measured bytes ({path}: {b['users_kept']:,} users, "
          f"{b['items_kept']:,} items, {b['factors']} factors):")
    print("| P | measured bytes/iteration, rank 0 | formula | ratio |")
    print("|---|---|---|---|")
    for r in b["rows"]:
        p = r["ranks"]
        measured = r["bytes_per_iteration"][0]
        predicted = allgather_bytes(b["users_kept"], b["items_kept"], b["factors"], p) if p > 1 else 0
        ratio = measured / predicted if predicted else float("nan")
        print(f"| {p} | {measured:,} | {predicted:,.0f} | {ratio:.4f} |")
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", help="JSON of tools/bench/bench_dist.py")
    args = ap.parse_args()
    if args.bench:
        check_against_bench(args.bench)
    nnz, users, items, k = 1_000_000_000, 50_000_000, 5_000_000, 256
    print(f"Projection: {nnz:,} interactions, {users:,} users, {items:,} items, {k} factors, "
          f"float32, CG {CG_STEPS} steps:")
    print("| GPUs | interconnect | compute s | exchange | bytes sent per GPU | communication s | "
          "s/iteration |")
    print("|---|---|---|---|---|---|---|")
    for p, link, bw in [(8, "NVSwitch (1 node)", NVSWITCH_BUSBW), (64, "IB NDR (8 nodes)", IB_BUSBW)]:
        c = compute_seconds(nnz, users, items, k, p)
        # all-gather of both tables
        ag = allgather_bytes(users, items, k, p)
        # targeted: a rank's users touch items ~ 1-exp(-nnz/P/items) of the item table; a rank's
        # items are touched by ~1-(1-1/P)^(nnz/users) of the users (uniform spread of ids)
        f_items = 1 - pow(2.718281828, -nnz / p / items)
        f_users = 1 - (1 - 1 / p) ** (nnz / users)
        tg = (f_items * items * (p - 1) / p + f_users * users * (p - 1) / p) * k * 4
        for name, b in [("all-gather", ag), ("targeted", tg)]:
            comm = b / bw
            print(f"| {p} | {link} | {c:.3f} | {name} | {b / 1e9:.1f} GB | {comm:.3f} | "
                  f"{c + comm:.3f} |")
    # ALX's published point: WebGraph-sparse, 365.4M nodes (rows = columns), 30B edges, one
    # epoch in about 20 minutes on 256 TPU v3 cores (arXiv 2112.02194, abstract).
    wn, wnnz = 365_400_000, 30_000_000_000
    for k in (128, 256):
        c = compute_seconds(wnnz, wn, wn, k, 256)
        ag = allgather_bytes(wn, wn, k, 256)
        print(f"WebGraph-sparse shape at {k} factors on 256 GPUs (IB): compute {c:.2f} s, "
              f"all-gather {ag / 1e9:.0f} GB per GPU ({ag / IB_BUSBW:.1f} s; the other table alone "
              f"is {wn * k * 4 / 1e9:.0f} GB, more than one H200's 141 GB at 256 factors); "
              f"ALX: about 1200 s per epoch")


if __name__ == "__main__":
    main()
