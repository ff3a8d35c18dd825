#!/usr/bin/env python3
"""HitGpu against the PyTorch reference, alternately, in one session, on the same data: whole-process time
of the real commands (`hitgpu train --study`, the same single network, and `torch_mlp.py --no-warmup`) and the training loop alone (both after
a one-epoch warm-up). Prints a markdown table of medians and the ratio HitGpu / PyTorch for each figure.
Run through compare.sh, which builds HitGpu first."""
import argparse, json, os, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLI = os.path.join(ROOT, "src", "HitGpu.Cli", "bin", "Release", "net10.0", "hitgpu.dll")
BENCH = os.path.join(ROOT, "bench", "HitGpu.Bench", "bin", "Release", "net10.0", "HitGpu.Bench.dll")
TORCH = os.path.join(HERE, "reference", "torch_mlp.py")
EMBEDDED = os.path.join(ROOT, "src", "HitGpu.Nn", "Data", "dataset-of-90s.csv.gz")


def timed(command):
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return seconds, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-sizes", default="32,256")
    parser.add_argument("--accelerator", default="cpu", help="HitGpu's accelerator")
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    rows = []
    info = {}
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        figures = {k: [] for k in ("hit_whole", "torch_whole", "hit_loop", "torch_loop", "hit_acc", "torch_acc")}
        for _ in range(args.rounds):
            seconds, _ = timed(["dotnet", CLI, "train", "--study", "--accelerator", args.accelerator, "--batch-size", str(batch), "--epochs", str(args.epochs)])
            figures["hit_whole"].append(seconds)
            seconds, _ = timed([sys.executable, TORCH, "--data", EMBEDDED, "--device", args.torch_device, "--batch-size", str(batch),
                                "--epochs", str(args.epochs), "--no-warmup"])
            figures["torch_whole"].append(seconds)
            _, out = timed(["dotnet", BENCH, "compare-run", "--accelerator", args.accelerator, "--batch-size", str(batch), "--epochs", str(args.epochs)])
            hit = json.loads(out.strip().splitlines()[-1])
            figures["hit_loop"].append(hit["loop_seconds"]); figures["hit_acc"].append(hit["test_accuracy"])
            _, out = timed([sys.executable, TORCH, "--data", EMBEDDED, "--device", args.torch_device, "--batch-size", str(batch), "--epochs", str(args.epochs)])
            torch_run = json.loads(out.strip().splitlines()[-1])
            figures["torch_loop"].append(torch_run["loop_seconds"]); figures["torch_acc"].append(torch_run["test_accuracy"])
            info = {"hitgpu": hit["device"] + ", " + hit["path"], "pytorch": f'{torch_run["peer"]} on {torch_run["device"]}, {torch_run["threads"]} threads'}
        med = {k: statistics.median(v) for k, v in figures.items()}
        rows.append((f"batch {batch}: whole process, {args.epochs} epochs (s)", med["hit_whole"], med["torch_whole"]))
        rows.append((f"batch {batch}: training loop alone (s)", med["hit_loop"], med["torch_loop"]))
        rows.append((f"batch {batch}: training samples/s (loop)", 3864 * args.epochs / med["hit_loop"], 3864 * args.epochs / med["torch_loop"]))
        rows.append((f"batch {batch}: test accuracy (seed 0)", med["hit_acc"], med["torch_acc"]))

    print(f"HitGpu: {info.get('hitgpu')}; PyTorch: {info.get('pytorch')}; medians of {args.rounds} alternating rounds")
    print()
    print("| figure | HitGpu | PyTorch | HitGpu / PyTorch |")
    print("|---|---:|---:|---:|")
    for name, hit, torch_value in rows:
        print(f"| {name} | {hit:.3f} | {torch_value:.3f} | {hit / torch_value:.2f} |")


if __name__ == "__main__":
    main()
