#!/usr/bin/env python3
"""Independent goldens for HitGpu's training trajectory (llm.c's habit: expected losses from a PyTorch reference).

Reads the run HitGpu wrote (tests/HitGpu.Nn.Tests/GoldenTests.cs, with HITGPU_GOLDEN_RUNS set): the
network's tensors (name, shape, place in the flat parameter array) and initial values, the training rows as the
network sees them, the labels, the batch order of every epoch and Adam's settings. Trains the same network here
in float64, written from the formulas alone (TabM's BatchEnsemble for k members:
y_i = f(((x r_i) W_i^T) s_i + b_i), W and b shared or per member, r and s where a layer has them; the loss the
mean over the batch and the members of binary cross-entropy from logits against y (1 - e) + e / 2; Adam with
Keras' epsilon in PyTorch's formulation), and writes the loss of every step before its update.

Usage: python3 bench/reference/torch_golden.py RUN.json OUT.json"""
import json, sys

import torch


def tensors_of(layer, flat):
    """The layer's tensors, as float64 leaves cut from the flat initial parameters."""
    out = {}
    for t in layer["tensors"]:
        count = 1
        for d in t["shape"]:
            count *= d
        values = torch.tensor(flat[t["offset"]:t["offset"] + count], dtype=torch.float64).reshape(t["shape"])
        out[t["name"]] = values.requires_grad_(True)
    return out


def member(tensor, i, per_member):
    return tensor[i] if per_member else tensor


def logits(layers, params, x, k):
    """(batch, k) logits: member i's pass over every layer."""
    columns = []
    for i in range(k):
        h = x
        for layer, p in zip(layers, params):
            if layer["groups"] != 1:
                raise SystemExit("grouped layers are not in these goldens")
            w = member(p["weight"], i, p["weight"].dim() == 3)
            b = member(p["bias"], i, p["bias"].dim() == 2)
            if "input_scale" in p:
                h = h * p["input_scale"][i]
            z = h @ w.T
            if "output_scale" in p:
                z = z * p["output_scale"][i]
            z = z + b
            h = torch.relu(z) if layer["activation"] == "Relu" else z
        columns.append(h[:, 0])
    return torch.stack(columns, dim=1)


def main():
    run_path, out_path = sys.argv[1], sys.argv[2]
    with open(run_path) as f:
        run = json.load(f)
    k, inputs = run["members"], run["inputs"]
    x_all = torch.tensor(run["features"], dtype=torch.float64).reshape(-1, inputs)
    y_all = torch.tensor(run["labels"], dtype=torch.float64)
    params = [tensors_of(layer, run["initial"]) for layer in run["layers"]]
    leaves = [t for p in params for t in p.values()]
    m = [torch.zeros_like(t) for t in leaves]
    v = [torch.zeros_like(t) for t in leaves]
    lr, b1, b2, eps, e = run["learningRate"], run["beta1"], run["beta2"], run["epsilon"], run["labelSmoothing"]
    batch, step, losses = run["batchSize"], 0, []
    for order in run["orders"]:
        order = torch.tensor(order, dtype=torch.long)
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            target = (y_all[rows] * (1 - e) + 0.5 * e).unsqueeze(1).expand(-1, k)
            z = logits(run["layers"], params, x_all[rows], k)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, target)  # mean over rows and members
            for t in leaves:
                t.grad = None
            loss.backward()
            step += 1
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            with torch.no_grad():
                for t, mt, vt in zip(leaves, m, v):
                    mt.mul_(b1).add_(t.grad, alpha=1 - b1)
                    vt.mul_(b2).addcmul_(t.grad, t.grad, value=1 - b2)
                    t.sub_((lr / bc1) * mt / (vt.sqrt() / bc2 ** 0.5 + eps))
            losses.append(loss.item())
    with open(out_path, "w") as f:
        json.dump({
            "name": run["name"],
            "made_by": f"python3 bench/reference/torch_golden.py (torch {torch.__version__}, float64)",
            "step_losses": losses,
        }, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
