#!/usr/bin/env python3
"""The issue's tabular peers (logistic regression, random forest, gradient boosting, XGBoost, library
defaults) on HitGpu's own splits: for each decade and seed, `hitgpu train --save-splits` writes the exact
train and test parts that `hitgpu accuracy` uses, and each peer is fitted on the train part and scored on
the test part at threshold 0.5. Prints a markdown table of mean +- sample std of test accuracy (%); with
--ours (HitGpu's docs/ACCURACY.md, whose per-seed table `hitgpu accuracy --out` writes), also the paired
differences: per decade, the mean over seeds of (ours - the best tree on the same split) with its standard error.
--json writes every peer's per-seed accuracies.

Needs scikit-learn and xgboost (Debian: python3-sklearn python3-xgboost python3-pandas)."""
import argparse, json, os, re, subprocess, tempfile

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

FEATURES = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
            "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"]
PEERS = {
    "logistic regr.": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "random forest": lambda seed: RandomForestClassifier(random_state=seed, n_jobs=-1),
    "gradient boosting": lambda seed: GradientBoostingClassifier(random_state=seed),
    "XGBoost": lambda seed: XGBClassifier(random_state=seed, n_jobs=2),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hitgpu", required=True, help="the hitgpu executable")
    parser.add_argument("--data-dir", required=True, help="folder with dataset-of-60s.csv ... dataset-of-10s.csv")
    parser.add_argument("--decades", default="60s,70s,80s,90s,00s,10s")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--json", help="write the per-seed accuracies here")
    parser.add_argument("--ours", help="HitGpu's accuracy report (docs/ACCURACY.md) for the paired table")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    per_seed = {}
    for decade in args.decades.split(","):
        scores = {name: [] for name in PEERS}
        per_seed[decade] = scores
        for seed in seeds:
            with tempfile.TemporaryDirectory() as folder:
                subprocess.run([args.hitgpu, "train", "--data", os.path.join(args.data_dir, f"dataset-of-{decade}.csv"), "--seed", str(seed),
                                "--study", "--epochs", "1", "--accelerator", "cpu", "--save-splits", folder],
                               check=True, stdout=subprocess.DEVNULL)
                train = pd.read_csv(os.path.join(folder, "train.csv"))
                test = pd.read_csv(os.path.join(folder, "test.csv"))
            for name, make in PEERS.items():
                model = make(seed).fit(train[FEATURES].to_numpy(np.float64), train["target"].to_numpy())
                scores[name].append(100 * (model.predict(test[FEATURES].to_numpy(np.float64)) == test["target"].to_numpy()).mean())
        rows.append((decade, {name: (np.mean(v), np.std(v, ddof=1)) for name, v in scores.items()}))
        print(decade, "  ".join(f"{name} {m:.2f}" for name, (m, _) in rows[-1][1].items()), flush=True)
    print()
    print("| decade | " + " | ".join(PEERS) + " |")
    print("|---|" + "---|" * len(PEERS))
    for decade, result in rows:
        print(f"| {decade} | " + " | ".join(f"{m:.1f} ± {s:.1f}" for m, s in result.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({decade: {name: per_seed[decade][name] for name in PEERS} for decade, _ in rows}, f, indent=1)
    if args.ours:
        paired(rows, per_seed, ours_per_seed(args.ours))


def ours_per_seed(report):
    """The per-seed test accuracies of `hitgpu accuracy --out`'s table ("| 60s | 77.93 | 79.48 | ... |")."""
    text = open(report, encoding="utf-8").read()
    table = text[text.index("Test accuracy per seed"):]
    return {m.group(1): [float(v) for v in m.group(2).split("|") if v.strip()]
            for m in re.finditer(r"^\| (\d0s) \|((?: [\d.]+ \|)+)$", table, re.M)}


def paired(rows, per_seed, ours):
    """Per decade: ours, the best tree by mean, and the mean over seeds of ours - that tree on the same split, with its standard error."""
    print()
    print("| decade | ours | best tree on our splits | its accuracy | ours − best tree, paired (± s.e.) |")
    print("|---|---:|---|---:|---:|")
    all_ours, all_best = [], []
    for decade, result in rows:
        if decade not in ours:
            continue
        best = max(result, key=lambda name: result[name][0])
        diffs = np.array(ours[decade]) - np.array(per_seed[decade][best])
        all_ours.append(np.mean(ours[decade])); all_best.append(result[best][0])
        print(f"| {decade} | {np.mean(ours[decade]):.2f} | {best} | {result[best][0]:.2f} | {diffs.mean():+.2f} ± {diffs.std(ddof=1) / np.sqrt(len(diffs)):.2f} |")
    if all_ours:
        print(f"| mean of the decades | {np.mean(all_ours):.2f} | each decade's best | {np.mean(all_best):.2f} | {np.mean(all_ours) - np.mean(all_best):+.2f} |")
    # The goal's second half: the six-decade mean against the tree whose six-decade mean is best, paired over
    # the decade-and-seed runs.
    decades = [d for d, _ in rows if d in ours]
    if len(decades) == len(rows):
        overall = {name: np.mean([np.mean(per_seed[d][name]) for d in decades]) for name in PEERS}
        best = max(overall, key=overall.get)
        diffs = np.concatenate([np.array(ours[d]) - np.array(per_seed[d][best]) for d in decades])
        print(f"| six-decade mean against the best tree overall | {np.mean(all_ours):.2f} | {best} | {overall[best]:.2f} | "
              f"{diffs.mean():+.2f} ± {diffs.std(ddof=1) / np.sqrt(len(diffs)):.2f} |")


if __name__ == "__main__":
    main()
