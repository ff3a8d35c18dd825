#!/usr/bin/env python3
"""The PyTorch peer of HitGpu's batched ensembles: k members of the 15-64-32-1 network trained in one pass,
written from the TabM paper's formulas (Gorishniy et al., ICLR 2025), not from its code:
  independent  k full networks (per-member weights and biases: batched matrix products)
  batch        BatchEnsemble: hidden layers ((x * r_i) W^T) * s_i + b_i with one shared W, per-member heads;
               first-layer r_i random signs, other r_i and s_i ones, biases zero
  mini         TabM-mini: x * r_i (random signs), one shared MLP, per-member heads
Every member sees the same batches; the loss is the mean of the members' binary cross-entropies; the
prediction is the members' mean probability. Same data handling as torch_mlp.py (split, standardisation,
Adam lr 1e-3 with Keras' epsilon, batch 32, per-epoch validation).

Prints one JSON line: loop seconds (after a one-epoch warm-up unless --no-warmup) and the test accuracy."""
import math, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mlp import arguments, run  # noqa: E402  (the same data handling, loop and timing as the single-network peer)


def glorot(*shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return torch.nn.Parameter(torch.empty(*shape).uniform_(-limit, limit))


class PerMember(torch.nn.Module):
    """k members' own weights: (B, k, in) -> (B, k, out)."""
    def __init__(self, k, d_in, d_out):
        super().__init__()
        self.weight = glorot(k, d_in, d_out, fan_in=d_in, fan_out=d_out)
        self.bias = torch.nn.Parameter(torch.zeros(k, d_out))

    def forward(self, x):
        return torch.einsum("bki,kio->bko", x, self.weight) + self.bias


class BatchEnsembleLinear(torch.nn.Module):
    """One shared W, per-member r (input scale), s (output scale) and bias."""
    def __init__(self, k, d_in, d_out, first):
        super().__init__()
        self.weight = glorot(d_out, d_in, fan_in=d_in, fan_out=d_out)
        r = torch.randint(0, 2, (k, d_in)).float() * 2 - 1 if first else torch.ones(k, d_in)
        self.r = torch.nn.Parameter(r)
        self.s = torch.nn.Parameter(torch.ones(k, d_out))
        self.bias = torch.nn.Parameter(torch.zeros(k, d_out))

    def forward(self, x):
        return (x * self.r) @ self.weight.T * self.s + self.bias


class Ensemble(torch.nn.Module):
    def __init__(self, kind, k, widths=(15, 64, 32, 1)):
        super().__init__()
        self.kind, self.k = kind, k
        layers = []
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            head = i == len(widths) - 2
            if kind == "independent" or head:
                layers.append(PerMember(k, d_in, d_out))
            elif kind == "batch":
                layers.append(BatchEnsembleLinear(k, d_in, d_out, first=i == 0))
            else:  # mini: shared layers
                layer = torch.nn.Linear(d_in, d_out)
                with torch.no_grad():
                    layer.weight.copy_(glorot(d_out, d_in, fan_in=d_in, fan_out=d_out)); layer.bias.zero_()
                layers.append(layer)
        self.layers = torch.nn.ModuleList(layers)
        self.r = torch.nn.Parameter(torch.randint(0, 2, (k, widths[0])).float() * 2 - 1) if kind == "mini" else None

    def forward(self, x):  # (B, in) -> (B, k) logits
        h = x.unsqueeze(1).expand(-1, self.k, -1)
        if self.r is not None:
            h = h * self.r
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)


def main():
    parser = arguments(__doc__)
    parser.add_argument("--kind", choices=["independent", "batch", "mini"], default="batch")
    parser.add_argument("--members", type=int, default=32)
    args = parser.parse_args()
    bce = torch.nn.BCEWithLogitsLoss()  # the mean over batch and members: the members' mean loss
    run(args, lambda: Ensemble(args.kind, args.members),
        loss_of=lambda logits, y: bce(logits, y.unsqueeze(1).expand_as(logits)),
        probability_of=lambda logits: torch.sigmoid(logits).mean(1), kind=args.kind, members=args.members)


if __name__ == "__main__":
    sys.exit(main())
