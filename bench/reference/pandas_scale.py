#!/usr/bin/env python3
"""The pandas + PyTorch peer of HitGpu's data path at scale, as a user would write it.

  pandas_scale.py load FILE     read the CSV with pandas.read_csv; prints the seconds as JSON
  pandas_scale.py predict FILE  read it whole, score every song with a 15-64-32-1 PyTorch network (no_grad,
                                batches of 65536; the weights do not change the cost), write track, artist,
                                probability and verdict with DataFrame.to_csv; prints rows and seconds as JSON"""
import json, os, sys, time

import numpy as np
import pandas as pd

FEATURES = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
            "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections"]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    frame = pd.read_csv(path)
    if mode == "load":
        print(json.dumps({"peer": "pandas " + pd.__version__, "rows": len(frame), "load_seconds": time.perf_counter() - start}))
        return 0
    import torch
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    x = frame[FEATURES].to_numpy(np.float32)
    x = (x - x.mean(0)) / np.where(x.std(0) < 1e-12, 1.0, x.std(0))
    model = torch.nn.Sequential(torch.nn.Linear(15, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    p = np.empty(len(x), np.float32)
    with torch.no_grad():
        for at in range(0, len(x), 65536):
            p[at:at + 65536] = torch.sigmoid(model(torch.from_numpy(x[at:at + 65536]))).numpy()[:, 0]
    out = pd.DataFrame({"track": frame["track"], "artist": frame["artist"], "probability": p,
                        "prediction": np.where(p > 0.5, "Hit", "Not a Hit")})
    out.to_csv(path + ".pandas-predictions.csv", index=False, float_format="%.6f")
    os.remove(path + ".pandas-predictions.csv")
    print(json.dumps({"peer": "pandas " + pd.__version__ + " + pytorch " + torch.__version__, "rows": len(frame),
                      "predict_seconds": time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
