"""Throughput of labelflow's LF applier against Snorkel's ``PandasLFApplier``.

One suite of spam/ham rules (keywords, regular expressions, a length rule) is
built three ways from one table, :data:`RULES`:

1. labelflow expression LFs (``keyword_lf`` / ``regex_lf`` / ``length_lf``), run
   vectorized by polars;
2. labelflow Python LFs (``PythonLF``) whose functions test the text with
   ``re.search`` on the same patterns, ``in`` and ``len``;
3. Snorkel ``LabelingFunction`` objects wrapping the very same functions, applied
   with ``PandasLFApplier(lfs).apply(df, progress_bar=False)``.

The rows are the real YouTube comments of ``data/youtube/*.csv`` (or ``--data``),
repeated with unique ids to ``--rows`` rows. All three label matrices must be
identical. labelflow runs with ``cache=None``, best of ``--repeat`` runs, its
Python LFs both with the default ``n_jobs`` (every CPU) and with ``n_jobs=1``;
Snorkel runs once (best of ``--repeat`` with ``--repeat-snorkel``). Everything
runs in one process, so the ratios compare like with like.

Run::

    python bench/apply_throughput.py --rows 100000

Human-readable lines come first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAM, SPAM = 0, 1

RULES = [
    # (name, label, kind, argument). kind "words": whole-word keywords; "substrings":
    # plain substrings; "regex": a pattern valid in both Python re and Rust regex;
    # "max_chars": at most that many characters. All matching is case-insensitive.
    # Python's re.IGNORECASE folds "İ" to "i" and Rust's (?i) does not, so no rule
    # may depend on that: "eminem" is left out of "artist" ("EMİNEM FANS" is in the data).
    ("my_channel", SPAM, "words", ["my channel", "my video", "my videos", "my music", "my page"]),
    ("subscribe", SPAM, "words", ["subscribe", "subscribers", "sub4sub", "subs"]),
    ("link", SPAM, "substrings", ["http", ".com", "www."]),
    ("please", SPAM, "words", ["please", "plz", "pls"]),
    ("check_out", SPAM, "regex", r"check\s*(it\s*)?out"),
    ("money", SPAM, "regex", r"\b(free|win|winner|cash|money|earn)\b|\$\d+"),
    ("like_share", SPAM, "regex", r"\b(like|share|thumbs up)\b.{0,30}\b(comment|share|video)\b"),
    ("song", HAM, "words", ["song", "songs", "lyrics", "beat"]),
    ("artist", HAM, "words", ["psy", "katy perry", "shakira", "lmfao", "rihanna"]),
    ("views", HAM, "regex", r"\b(billion|million)\b|\bviews\b"),
    ("short", HAM, "max_chars", 20),
]


def word_pattern(words: list[str]) -> str:
    """The regex ``keyword_lf`` builds: each word, ``\\b`` on its word-character ends."""
    def bounded(w: str) -> str:
        return ("\\b" if re.match(r"\w", w[0]) else "") + re.escape(w) + ("\\b" if re.match(r"\w", w[-1]) else "")
    return "(?:" + "|".join(bounded(w) for w in words) + ")"


def rule_predicate(kind: str, arg):
    """A plain-Python test ``text -> bool`` with the rule's exact semantics."""
    if kind in ("words", "regex"):
        search = re.compile(word_pattern(arg) if kind == "words" else arg, re.IGNORECASE).search
        return lambda text: search(text) is not None
    if kind == "substrings":
        return lambda text: any(s in text.lower() for s in arg)
    if kind == "max_chars":
        return lambda text: len(text) <= arg
    raise ValueError(f"unknown rule kind {kind!r}")


def rule_function(label: int, predicate):
    """An LF body ``x -> label | -1`` reading ``x.text`` (a labelflow Row or a pandas row)."""
    def vote(x):
        return label if predicate(x.text) else -1
    return vote


def build_suites():
    """``(expression LFs, labelflow Python LFs, Snorkel LFs)`` from :data:`RULES`."""
    from labelflow import PythonLF, keyword_lf, length_lf, regex_lf
    from snorkel.labeling import LabelingFunction

    exprs, pys, snorkels = [], [], []
    for name, label, kind, arg in RULES:
        if kind == "max_chars":
            exprs.append(length_lf(name, label=label, max=arg))
        elif kind == "regex":
            exprs.append(regex_lf(name, arg, label=label))
        else:
            exprs.append(keyword_lf(name, arg, label=label, word_boundary=kind == "words"))
        func = rule_function(label, rule_predicate(kind, arg))
        pys.append(PythonLF(name, func))
        snorkels.append(LabelingFunction(name, f=func))
    return exprs, pys, snorkels


def load_rows(cfg):
    """The source comments repeated, with unique ids, to ``cfg.rows`` rows (a labelflow Dataset)."""
    import polars as pl
    from labelflow import load_dataset

    paths = [cfg.data] if cfg.data else sorted((ROOT / "data" / "youtube").glob("*.csv"))
    header = pl.read_csv(paths[0], n_rows=0).columns
    base = load_dataset(paths, classes=["ham", "spam"], text=cfg.text,
                        label="label" if "label" in header else None)
    copies = -(-cfg.rows // len(base))
    frame = pl.concat([base.frame] * copies).head(cfg.rows)
    frame = frame.with_columns(id=pl.format("{}#{}", pl.col("id"), pl.int_range(pl.len())))
    return base.replace(frame), len(base)


def best_time(fn, repeat: int):
    """``(best seconds, last result)`` of ``repeat`` calls of ``fn()``."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _spin(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i
    return total


def core_capacity(procs: int, loops: int = 3_000_000) -> float:
    """Cores' worth of CPU that ``procs`` forked processes get on a pure-Python loop (ideal: ``procs``).

    On a shared virtual machine this can fall well below ``procs``; the ``n_jobs``
    speed-up of the Python LFs is bounded by it.
    """
    import multiprocessing

    start = time.perf_counter()
    _spin(loops)
    one = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        start = time.perf_counter()
        pool.map(_spin, [loops] * procs)
        return procs * one / (time.perf_counter() - start)


def main(cfg) -> dict:
    """Apply the suite every way, check the matrices agree, print timings; returns the JSON summary."""
    import numpy as np
    from labelflow import apply_lfs
    from snorkel.labeling import PandasLFApplier

    data, n_source = load_rows(cfg)
    df_pandas = data.frame.to_pandas()
    exprs, pys, snorkels = build_suites()
    n, cpus = len(data), os.cpu_count()
    capacity = core_capacity(cpus)
    print(f"rows: {n:,} ({n_source:,} source comments repeated); LFs: {len(RULES)}; CPUs: {cpus} "
          f"(a pure-Python loop on {cpus} processes gets {capacity:.2f} cores' worth now)")

    def run(lfs, **kw):
        return apply_lfs(data, lfs, cardinality=2, cache=None, **kw).values

    applier = PandasLFApplier(snorkels)
    runs = {  # key: (label, thunk, repeats)
        "snorkel": ("Snorkel PandasLFApplier", lambda: applier.apply(df_pandas, progress_bar=False),
                    cfg.repeat if cfg.repeat_snorkel else 1),
        "expression": ("labelflow expression LFs", lambda: run(exprs), cfg.repeat),
        "python": (f"labelflow Python LFs (n_jobs={cpus})", lambda: run(pys), cfg.repeat),
        "python_1proc": ("labelflow Python LFs (n_jobs=1)", lambda: run(pys, n_jobs=1), cfg.repeat),
    }
    seconds, L = {}, {}
    for key, (_, thunk, repeats) in runs.items():
        seconds[key], L[key] = best_time(thunk, repeats)

    identical = all(np.array_equal(L[key], L["snorkel"]) for key in runs)
    for j, (name, *_) in enumerate(RULES):
        diff = sum(int((L[key][:, j] != L["snorkel"][:, j]).sum()) for key in runs)
        coverage = np.mean(L["snorkel"][:, j] >= 0)
        print(f"  {name:<12} coverage {coverage:6.1%}" + (f"  MISMATCHES {diff}" if diff else ""))
    rate = {key: n / t for key, t in seconds.items()}
    for key, (label, *_) in runs.items():
        ratio = "" if key == "snorkel" else f"  ({rate[key] / rate['snorkel']:.1f}x Snorkel)"
        print(f"{label:<38} {seconds[key]:8.3f} s  {rate[key]:>12,.0f} rows/s{ratio}")
    print(f"identical matrices: {identical}")
    summary = {"rows": n, "lfs": len(RULES), "cpus": cpus, "core_capacity": round(capacity, 2),
               "identical": identical,
               **{f"{key}_rows_per_s": round(r, 1) for key, r in rate.items()},
               **{f"{key}_ratio": round(rate[key] / rate["snorkel"], 2) for key in runs if key != "snorkel"}}
    print(json.dumps(summary))
    if not identical:
        raise SystemExit("label matrices differ")
    return summary


def make_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows to label (default 100000)")
    parser.add_argument("--data", type=Path, default=None, help="a CSV instead of data/youtube/*.csv")
    parser.add_argument("--text", default="CONTENT", help="its text column (default CONTENT)")
    parser.add_argument("--repeat", type=int, default=3, help="labelflow runs; the best counts (default 3)")
    parser.add_argument("--repeat-snorkel", action="store_true", help="best of --repeat for Snorkel too")
    return parser


if __name__ == "__main__":
    main(make_parser().parse_args())
