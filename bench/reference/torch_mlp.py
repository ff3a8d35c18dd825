#!/usr/bin/env python3
"""The PyTorch peer of HitGpu's default training: the same 15-64-32-1 network (ReLU, one logit, binary
cross-entropy from logits, Adam lr 1e-3 with Keras' epsilon 1e-7), the same stratified 70/15/15 split
sizes, standardisation fitted on the training part, the same batch size and epochs, per-epoch validation.

Prints one JSON line: loop seconds (the epochs alone, after a one-epoch warm-up unless --no-warmup),
training samples per second, and the test accuracy. Runs on CPU or CUDA (--device)."""
import argparse, gzip, json, os, sys, time

import numpy as np
import pandas as pd
import torch

FEATURES = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
            "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"]


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as f:
        frame = pd.read_csv(f)
    return frame[FEATURES].to_numpy(np.float32), frame["target"].to_numpy(np.float32)


def stratified_split(y, seed, validation=0.15, test=0.15):
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for label in (0.0, 1.0):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        held = int(round(len(members) * (validation + test)))
        n_val = int(round(held * validation / (validation + test)))
        parts[0].append(members[held:]); parts[1].append(members[:n_val]); parts[2].append(members[n_val:held])
    return [np.sort(np.concatenate(p)) for p in parts]


def arguments(description):
    """The command line both peers share: data, epochs, batch, seed, device, threads, warm-up."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="CSV or CSV.gz in the dataset's format")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-warmup", action="store_true", help="time the first epoch too (whole-process runs)")
    return parser


def run(args, make_model, loss_of, probability_of, **fields):
    """Split, standardise, then train a fresh model from make_model() with Adam (lr 1e-3, Keras' epsilon) in
    shuffled batches, validating each epoch, after a one-epoch warm-up model unless --no-warmup; prints the
    JSON line. loss_of(outputs, y) is the batch loss, probability_of(outputs) P(hit) per row."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    x, y = load(args.data)
    train, val, test = stratified_split(y, args.seed)
    mean, std = x[train].mean(0), x[train].std(0)
    std[std < 1e-12] = 1.0
    xs = (x - mean) / std
    tensors = {name: (torch.tensor(xs[idx], device=device), torch.tensor(y[idx], device=device))
               for name, idx in (("train", train), ("val", val), ("test", test))}

    def make():
        model = make_model().to(device)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    xt, yt = tensors["train"]
    n = xt.shape[0]

    def epoch(model, optimizer, generator):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, args.batch_size):
            idx = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
        with torch.no_grad():  # per-epoch validation, as HitGpu does
            xv, yv = tensors["val"]
            loss_of(model(xv), yv).item()

    generator = torch.Generator().manual_seed(args.seed)
    if not args.no_warmup:
        model, optimizer = make()
        epoch(model, optimizer, generator)
    model, optimizer = make()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.epochs):
        epoch(model, optimizer, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        xe, ye = tensors["test"]
        accuracy = ((probability_of(model(xe)) > 0.5).float() == ye).float().mean().item()
    print(json.dumps({"peer": "pytorch " + torch.__version__, "device": args.device, "threads": torch.get_num_threads(), **fields,
                      "batch_size": args.batch_size, "epochs": args.epochs, "loop_seconds": seconds,
                      "samples_per_second": n * args.epochs / seconds, "test_accuracy": accuracy}))


def main():
    args = arguments(__doc__).parse_args()
    bce = torch.nn.BCEWithLogitsLoss()
    run(args, lambda: torch.nn.Sequential(torch.nn.Linear(15, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)),
        loss_of=lambda out, y: bce(out.squeeze(-1), y), probability_of=lambda out: torch.sigmoid(out.squeeze(-1)))


if __name__ == "__main__":
    sys.exit(main())
