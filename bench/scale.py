#!/usr/bin/env python3
"""Scale benchmark: N-row song files made by resampling the embedded 90s file with small noise (HitGpu.Bench
resample), then, for each N and in one run, HitGpu beside pandas + PyTorch on the same file:
  load     HitGpu.Bench load (SongData.Load)          vs pandas.read_csv
  train    hitgpu train --study --epochs 2 (whole process; epoch time = the second epoch's line)
           vs torch_mlp.py --epochs 2 --no-warmup (loop seconds / 2)
  predict  hitgpu predict --out (whole process)       vs pandas_scale.py predict (read, score, write)
Peak RSS of every whole process by /usr/bin/time. Prints a markdown table (ratios HitGpu / peer) and
writes the raw JSON lines to WORK/scale.jsonl. Files are generated outside the repository and never kept."""
import argparse, json, os, re, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(command, env=None):
    """Runs a command under /usr/bin/time; returns (stdout, seconds, peak RSS in MB)."""
    result = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *command], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    seconds, kb = re.findall(r"TIME ([\d.]+) (\d+)", result.stderr)[-1]
    return result.stdout, float(seconds), int(kb) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    parser.add_argument("--work", default="/tmp/hitgpu-scale")
    parser.add_argument("--python", default="/usr/bin/python3", help="a python with pandas and torch (Debian: python3-pandas python3-torch)")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cli, bench = os.path.join(args.work, "cli"), os.path.join(args.work, "bench")
    for project, out in (("src/HitGpu.Cli", cli), ("bench/HitGpu.Bench", bench)):
        subprocess.run(["dotnet", "build", os.path.join(ROOT, project), "-c", "Release", "-o", out, "-v", "q", "-nologo"], check=True)
    hitgpu, hitbench = os.path.join(cli, "hitgpu"), os.path.join(bench, "HitGpu.Bench")
    reference = os.path.join(ROOT, "bench", "reference")
    rows, log = [], open(os.path.join(args.work, "scale.jsonl"), "a")
    for n in [int(s) for s in args.sizes.split(",")]:
        data = os.path.join(args.work, f"songs-{n}.csv")
        if not os.path.exists(data):
            subprocess.run([hitbench, "resample", "--rows", str(n), "--out", data, "--seed", "1"], check=True)
        model, predictions = data + ".hitgpu", data + ".predictions.csv"
        r = {"rows": n, "csv_mb": os.path.getsize(data) / 2**20}
        out, _, _ = timed([hitbench, "load", "--data", data])
        r["hitgpu_load_s"] = json.loads(out)["load_seconds"]
        out, _, _ = timed([args.python, os.path.join(reference, "pandas_scale.py"), "load", data])
        r["pandas_load_s"] = json.loads(out)["load_seconds"]
        out, r["hitgpu_train_s"], r["hitgpu_train_mb"] = timed(
            [hitgpu, "train", "--study", "--epochs", "2", "--accelerator", "cpu", "--data", data, "--out", model])
        r["hitgpu_epoch_s"] = float(re.search(r"^epoch 2/2 .* ([\d.]+) s$", out, re.M).group(1))
        out, r["torch_train_s"], r["torch_train_mb"] = timed(
            [args.python, os.path.join(reference, "torch_mlp.py"), "--data", data, "--epochs", "2", "--no-warmup"])
        r["torch_epoch_s"] = json.loads(out.strip().splitlines()[-1])["loop_seconds"] / 2
        _, seconds, r["hitgpu_predict_mb"] = timed([hitgpu, "predict", "--accelerator", "cpu", "--model", model, "--data", data, "--out", predictions])
        r["hitgpu_predict_rows_s"] = n / seconds
        _, seconds, r["pandas_predict_mb"] = timed([args.python, os.path.join(reference, "pandas_scale.py"), "predict", data])
        r["pandas_predict_rows_s"] = n / seconds
        for path in (model, predictions):
            os.remove(path)
        log.write(json.dumps(r) + "\n")
        log.flush()
        rows.append(r)
        print(json.dumps(r), file=sys.stderr)
    print("| rows | CSV | load: HitGpu / pandas | epoch: HitGpu / PyTorch | train peak RSS: HitGpu / pandas+PyTorch | predict songs/s: HitGpu / pandas+PyTorch | predict peak RSS: HitGpu / pandas+PyTorch |")
    print("|---:|---:|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rows']:,} | {r['csv_mb']:.0f} MB "
              f"| {r['hitgpu_load_s']:.2f} s / {r['pandas_load_s']:.2f} s = **{r['hitgpu_load_s'] / r['pandas_load_s']:.2f}** "
              f"| {r['hitgpu_epoch_s']:.2f} s / {r['torch_epoch_s']:.2f} s = **{r['hitgpu_epoch_s'] / r['torch_epoch_s']:.2f}** "
              f"| {r['hitgpu_train_mb']:.0f} / {r['torch_train_mb']:.0f} MB = **{r['hitgpu_train_mb'] / r['torch_train_mb']:.2f}** "
              f"| {r['hitgpu_predict_rows_s'] / 1e3:.0f} K / {r['pandas_predict_rows_s'] / 1e3:.0f} K "
              f"| {r['hitgpu_predict_mb']:.0f} / {r['pandas_predict_mb']:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
