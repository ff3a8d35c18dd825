#!/usr/bin/env python3
"""The issue's tabular peers (logistic regression, random forest, gradient boosting, XGBoost, library
defaults) on HitGpu's own splits: for each decade and seed, `hitgpu train --save-splits` writes the exact
train and test parts that `hitgpu accuracy` uses, and each peer is fitted on the train part and scored on
the test part at threshold 0.5. Prints a markdown table of mean +- sample std of test accuracy (%).

Needs scikit-learn and xgboost (Debian: python3-sklearn python3-xgboost python3-pandas)."""
import argparse, os, subprocess, tempfile

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
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for decade in args.decades.split(","):
        scores = {name: [] for name in PEERS}
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


if __name__ == "__main__":
    main()
