"""Fit + predict time and peak memory of labelflow's label model on a large synthetic matrix.

A synthetic task with ``--rows`` rows, ``--lfs`` LFs and ``--classes`` classes: true
classes drawn from an imbalanced prior; each LF votes on a fraction of rows (its
coverage, 1–10 %) and, when it votes, is right with its own accuracy (0.30–0.90),
otherwise votes a uniformly random wrong class. The matrix is ``int8``, built in
chunks. Majority vote runs on the same matrix for reference; Snorkel only with
``--snorkel`` (it needs far longer at this size).

Run::

    python bench/label_model_scale.py --rows 1000000 --lfs 100 --classes 10

Human-readable lines first; the last line is one JSON object with seconds, rows/s,
peak RSS and accuracies.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lfs", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--snorkel", action="store_true", help="also fit Snorkel's LabelModel (slow)")
    return parser


def synthetic(n: int, m: int, k: int, seed: int):
    """``[n, m]`` int8 votes and ``[n]`` true classes, generated 100,000 rows at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 2.0))
    coverage = rng.uniform(0.01, 0.10, m)
    accuracy = rng.uniform(0.30, 0.90, m)
    y = rng.choice(k, size=n, p=prior)
    L = np.full((n, m), -1, dtype=np.int8)
    for start in range(0, n, 100_000):
        yc = y[start:start + 100_000]
        fires = rng.random((len(yc), m)) < coverage
        right = rng.random((len(yc), m)) < accuracy
        wrong = (yc[:, None] + rng.integers(1, k, (len(yc), m))) % k
        L[start:start + len(yc)] = np.where(fires, np.where(right, yc[:, None], wrong), -1)
    return L, y


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(cfg: argparse.Namespace) -> dict:
    import numpy as np

    from labelflow.labelmodels import LabelflowModel, MajorityVote, get_label_model

    start = time.perf_counter()
    L, y = synthetic(cfg.rows, cfg.lfs, cfg.classes, cfg.seed)
    gen_s = time.perf_counter() - start
    rss_data = peak_rss_mb()
    print(f"matrix {L.shape} int8, {np.mean(L >= 0):.1%} votes, generated in {gen_s:.1f} s; peak RSS {rss_data:.0f} MB")

    runs = {}
    models = [("labelflow", LabelflowModel(cfg.classes, device=cfg.device)), ("majority_vote", MajorityVote(cfg.classes))]
    if cfg.snorkel:
        models.append(("snorkel", get_label_model("snorkel", cfg.classes)))
    for name, model in models:
        t0 = time.perf_counter()
        model.fit(L)
        t1 = time.perf_counter()
        pred = model.predict(L, tie_policy="first")
        t2 = time.perf_counter()
        runs[name] = {"fit_seconds": round(t1 - t0, 2), "predict_seconds": round(t2 - t1, 2),
                      "seconds": round(t2 - t0, 2), "accuracy": round(float(np.mean(pred == y)), 4)}
        print(f"{name:14s} fit {t1 - t0:6.1f} s  predict {t2 - t1:6.1f} s  accuracy {runs[name]['accuracy']:.4f}"
              f"  (peak RSS so far {peak_rss_mb():.0f} MB)")
    result = {"rows": cfg.rows, "lfs": cfg.lfs, "classes": cfg.classes, "device": cfg.device,
              "seconds": runs["labelflow"]["seconds"], "fit_seconds": runs["labelflow"]["fit_seconds"],
              "predict_seconds": runs["labelflow"]["predict_seconds"],
              "rows_per_s": round(cfg.rows / runs["labelflow"]["seconds"]),
              "peak_rss_mb": round(peak_rss_mb()), "matrix_mb": round(L.nbytes / 2**20),
              "accuracy": runs["labelflow"]["accuracy"], "models": runs}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
