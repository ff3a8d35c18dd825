#!/usr/bin/env python3
"""What k batched members cost, HitGpu beside PyTorch, alternately, in one session, on the embedded 90s file:
  1. the default `hitgpu train` (whole process) against PyTorch training its single 15-64-32-1 network for
     20 epochs (torch_mlp.py --no-warmup, whole process): the issue's cost goal;
  2. for each kind and k, the training loop alone (20 epochs after a one-epoch warm-up, batch 32, the study's
     network per member): HitGpu's `compare-run --ensemble k --ensemble-kind KIND` against torch_tabm.py with
     the same kind and k; and HitGpu's k-member loop against its own one-network loop.
Prints markdown tables of medians. Run through `compare.sh ensembles`, which builds HitGpu first."""
import argparse, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import BENCH, CLI, EMBEDDED, TORCH, timed  # noqa: E402  (the same commands and timer as compare.py)

TABM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "torch_tabm.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", default="1,4,8,16,32")
    parser.add_argument("--kinds", default="independent,batch,mini")
    parser.add_argument("--accelerator", default="cpu", help="HitGpu's accelerator")
    parser.add_argument("--torch-device", default="cpu")
    args = parser.parse_args()

    whole = {"hitgpu": [], "torch": []}
    loops = {}
    members = [int(k) for k in args.members.split(",")]
    kinds = args.kinds.split(",")
    for _ in range(args.rounds):
        seconds, _ = timed(["dotnet", CLI, "train", "--accelerator", args.accelerator])
        whole["hitgpu"].append(seconds)
        seconds, _ = timed([sys.executable, TORCH, "--data", EMBEDDED, "--device", args.torch_device, "--no-warmup"])
        whole["torch"].append(seconds)
        for kind in kinds:
            for k in members:
                _, out = timed(["dotnet", BENCH, "compare-run", "--accelerator", args.accelerator, "--ensemble", str(k), "--ensemble-kind", kind])
                hit = json.loads(out.strip().splitlines()[-1])
                _, out = timed([sys.executable, TABM, "--data", EMBEDDED, "--device", args.torch_device, "--kind", kind, "--members", str(k)])
                peer = json.loads(out.strip().splitlines()[-1])
                loops.setdefault((kind, k), {"hitgpu": [], "torch": []})
                loops[(kind, k)]["hitgpu"].append(hit["loop_seconds"])
                loops[(kind, k)]["torch"].append(peer["loop_seconds"])
                device = f'HitGpu {hit["device"]}, {hit["path"]}; PyTorch {peer["peer"]} on {peer["device"]}, {peer["threads"]} threads'

    med = lambda v: statistics.median(v)
    print(f"{device}; medians of {args.rounds} alternating rounds")
    print()
    print("| whole process | HitGpu `train` (defaults) | PyTorch 15-64-32-1, 20 epochs | HitGpu / PyTorch |")
    print("|---|---:|---:|---:|")
    h, t = med(whole["hitgpu"]), med(whole["torch"])
    print(f"| seconds | {h:.2f} | {t:.2f} | {h / t:.2f} |")
    print()
    print("| kind | members k | HitGpu loop (s) | PyTorch loop (s) | HitGpu / PyTorch | HitGpu k members / 1 network |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        one = med(loops[(kind, members[0])]["hitgpu"]) if members[0] == 1 else None
        for k in members:
            h, t = med(loops[(kind, k)]["hitgpu"]), med(loops[(kind, k)]["torch"])
            print(f"| {kind} | {k} | {h:.3f} | {t:.3f} | {h / t:.2f} | {h / one:.1f} |" if one else f"| {kind} | {k} | {h:.3f} | {t:.3f} | {h / t:.2f} | |")


if __name__ == "__main__":
    main()
