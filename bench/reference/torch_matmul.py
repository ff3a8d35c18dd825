#!/usr/bin/env python3
"""The cuBLAS peer of HitGpu's dense kernels: y = x @ W.T + b (--product forward), or the backward products
dW = dz.T @ x, db = dz.sum(0), dx = (dz @ W) * (x > 0) (--product backward), in float32 with TF32 off,
n x n x n on random inputs, timed with CUDA events (median of --repeats after a warm-up). Prints one JSON line."""
import argparse, json, statistics

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--product", choices=["forward", "backward"], default="forward")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    n = args.size
    g = torch.Generator(device="cuda").manual_seed(3)
    x = torch.rand(n, n, device="cuda", generator=g) * 2 - 1
    w = torch.rand(n, n, device="cuda", generator=g) * 2 - 1
    b = torch.rand(n, device="cuda", generator=g) * 2 - 1
    dz = torch.rand(n, n, device="cuda", generator=g) * 2 - 1

    def run():
        if args.product == "backward":
            return dz.t() @ x, dz.sum(0), (dz @ w) * (x > 0)
        return torch.addmm(b, x, w.t())

    for _ in range(3):
        y = run()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y = run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    if args.product == "backward":
        reference, y = (dz.double().t() @ x.double()), y[0]
    else:
        reference = torch.addmm(b.double(), x.double(), w.double().t())
    error = ((y.double() - reference).norm() / reference.norm()).item()
    seconds = statistics.median(times)
    flops = (4 if args.product == "backward" else 2) * n**3
    print(json.dumps({"peer": f"torch {torch.__version__} (cuBLAS, TF32 off)", "product": args.product, "device": torch.cuda.get_device_name(),
                      "size": n, "seconds": seconds, "gflops": flops / seconds / 1e9, "relative_error": error}))


if __name__ == "__main__":
    main()
