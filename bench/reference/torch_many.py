#!/usr/bin/env python3
"""The PyTorch peers of HitGpu's many trainings at once (Trainer.TrainMany, `HitGpu.Bench many-runs`): R runs
of the study's network (15-64-32-1, ReLU, one logit, binary cross-entropy from logits, Adam lr 1e-3 with
Keras' epsilon 1e-7, batch 32), run r with seed r: its own stratified 70/15/15 split, standardisation, initial
weights and batch order, validated each epoch.

--mode sequential: PyTorch eager, the runs one after another (what a user's loop does).
--mode vmap: all R at once, each a slice of stacked parameters: torch.func (PyTorch 2) or functorch (1.13)
  vmap over grad of a functional call, one Adam over the stacked tensors (Adam is elementwise: each run's
  update is its own). Reports that it cannot where neither is installed.

Prints one JSON line: runs, mode, loop seconds (the epochs alone, after a one-epoch warm-up), total training
samples per second over all runs, and the mean test accuracy."""
import json, sys, time

import numpy as np
import torch

from torch_mlp import arguments, load, stratified_split


def network():
    return torch.nn.Sequential(torch.nn.Linear(15, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))


def prepared(x, y, seed, device):
    """Run seed's parts, standardised on its training part, as device tensors."""
    train, val, test = stratified_split(y, seed)
    mean, std = x[train].mean(0), x[train].std(0)
    std[std < 1e-12] = 1.0
    xs = (x - mean) / std
    return {name: (torch.tensor(xs[idx], device=device), torch.tensor(y[idx], device=device))
            for name, idx in (("train", train), ("val", val), ("test", test))}


def sequential(args, parts, device, epochs):
    bce = torch.nn.BCEWithLogitsLoss()
    accuracies = []
    for seed, tensors in enumerate(parts):
        torch.manual_seed(seed)
        model = network().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        generator = torch.Generator().manual_seed(seed)
        xt, yt = tensors["train"]
        n = xt.shape[0]
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, args.batch_size):
                idx = order[start:start + args.batch_size]
                optimizer.zero_grad(set_to_none=True)
                bce(model(xt[idx]).squeeze(-1), yt[idx]).backward()
                optimizer.step()
            with torch.no_grad():
                xv, yv = tensors["val"]
                bce(model(xv).squeeze(-1), yv).item()
        with torch.no_grad():
            xe, ye = tensors["test"]
            accuracies.append(((torch.sigmoid(model(xe).squeeze(-1)) > 0.5).float() == ye).float().mean().item())
    return accuracies


def vmapped(args, parts, device, epochs):
    try:
        from torch.func import functional_call, grad, stack_module_state, vmap
        api = "torch.func"
    except ImportError:
        from functorch import combine_state_for_ensemble, grad, vmap
        api = "functorch"
    models = []
    for seed in range(len(parts)):
        torch.manual_seed(seed)
        models.append(network().to(device))
    if api == "torch.func":
        params, buffers = stack_module_state(models)
        base = network().to("meta")

        def forward(p, b, x):
            return functional_call(base, (p, b), (x,))
        names = list(params)
        stacked = [params[k] for k in names]

        def as_dict(tensors):
            return dict(zip(names, tensors))
    else:
        fmodel, stacked, buffers = combine_state_for_ensemble(models)
        stacked = list(stacked)

        def forward(p, b, x):
            return fmodel(p, b, x)

        def as_dict(tensors):
            return tuple(tensors)

    def loss(p, b, x, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(forward(p, b, x).squeeze(-1), y)

    gradients = vmap(grad(loss), in_dims=(0, 0, 0, 0))
    for tensor in stacked:
        tensor.requires_grad_(False)
    optimizer = torch.optim.Adam(stacked, lr=1e-3, eps=1e-7)
    xt = torch.stack([t["train"][0] for t in parts])  # (R, n, 15): every run's training part has the same size
    yt = torch.stack([t["train"][1] for t in parts])
    xv = torch.stack([t["val"][0] for t in parts])
    yv = torch.stack([t["val"][1] for t in parts])
    runs, n = xt.shape[0], xt.shape[1]
    generators = [torch.Generator().manual_seed(seed) for seed in range(runs)]
    rows = torch.arange(runs, device=device)[:, None]
    for _ in range(epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        for start in range(0, n, args.batch_size):
            idx = order[:, start:start + args.batch_size]
            grads = gradients(as_dict(stacked), buffers, xt[rows, idx], yt[rows, idx])
            for tensor, g in zip(stacked, grads.values() if isinstance(grads, dict) else grads):
                tensor.grad = g
            optimizer.step()
        with torch.no_grad():
            vmap(loss)(as_dict(stacked), buffers, xv, yv).sum().item()
    with torch.no_grad():
        accuracies = []
        for r, tensors in enumerate(parts):
            xe, ye = tensors["test"]
            single = as_dict([t[r] for t in stacked])
            b = {k: v[r] for k, v in buffers.items()} if isinstance(buffers, dict) else tuple(v[r] for v in buffers)
            accuracies.append(((torch.sigmoid(forward(single, b, xe).squeeze(-1)) > 0.5).float() == ye).float().mean().item())
    return accuracies, api


def main():
    parser = arguments(__doc__)
    parser.add_argument("--runs", type=int, default=132)
    parser.add_argument("--mode", choices=["sequential", "vmap"], default="sequential")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y = load(args.data)
    parts = [prepared(x, y, seed, device) for seed in range(args.runs)]
    train = lambda epochs: sequential(args, parts, device, epochs) if args.mode == "sequential" else vmapped(args, parts, device, epochs)
    peer = "pytorch " + torch.__version__ + " eager, one run after another"
    try:
        if not args.no_warmup:
            train(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = train(args.epochs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    except ImportError as missing:
        print(json.dumps({"peer": "pytorch " + torch.__version__ + " vmap", "runs": args.runs, "error": f"no vmap in this PyTorch: {missing}"}))
        return 0
    if args.mode == "vmap":
        accuracies, api = result
        peer = f"pytorch {torch.__version__} {api}.vmap over stacked runs"
    else:
        accuracies = result
    n = parts[0]["train"][0].shape[0]
    print(json.dumps({"peer": peer, "device": args.device, "threads": torch.get_num_threads(), "runs": args.runs, "mode": args.mode,
                      "batch_size": args.batch_size, "epochs": args.epochs, "loop_seconds": seconds,
                      "samples_per_second": args.runs * n * args.epochs / seconds, "mean_test_accuracy": float(np.mean(accuracies))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
