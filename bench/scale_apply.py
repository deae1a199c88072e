"""Scale of LF application: the local engine on 1M and 10M rows, Ray on a local 2-worker cluster.

The rows are the real YouTube comments of ``data/youtube/*.csv``, repeated with
unique ids to ``--rows`` rows each (default 1,000,000 and 10,000,000), imported
as a labelflow project (``Project.init``), and labeled with a 20-LF suite,
:func:`build_suite`: 9 keyword and regex LFs for spam, 4 for ham, 2 length LFs
(15 expression LFs, run vectorized by polars) and 5 Python LFs (``x.text`` and
``x.AUTHOR`` tests with ``re``, ``count``, ``len``).

Each run is ``Project.apply`` (what ``labelflow apply`` does: read the project's
Parquet a chunk at a time, label, save ``store/matrix.parquet`` and the per-LF
vote cache) with the vote cache emptied first, in a fresh process, so that its
time and memory are its own:

* ``local_<rows>``: the local engine on every ``--rows`` size;
* ``local_unique_<rows>``: the same on ``--unique-rows`` rows whose texts are
  made distinct (a ``#<row>`` suffix on every comment);
* ``ray_<rows>``: ``--engine ray`` on a new local Ray cluster with
  ``--ray-cpus`` CPUs (one worker per CPU) on ``--ray-rows`` rows; its matrix is
  compared with the local engine's on the same project (``ray_identical``).

**Memoization.** The local and Ray engines call a Python LF whose code reads the
row only as ``x.NAME`` once per distinct value of those fields in a chunk (here
every Python LF). Repeated comments therefore cost the Python LFs almost nothing;
the ``local_unique`` runs, where every text is distinct and nothing is saved,
give the figure for non-repeated text. Expression LFs are never memoized.

Reported per run: ``seconds`` (the apply alone; Ray's cluster start-up is
``ray_start_seconds``), ``rows_per_s``, ``peak_rss_gb`` (``getrusage`` peak RSS
of the process, plus that of its largest forked child) and ``peak_tree_pss_gb``
(the largest sum of proportional set sizes over the process and all its
descendants, forked workers and Ray's processes included, sampled every 0.5 s),
with the machine's load average before the run; ``core_capacity`` says how many
cores' worth a pure-Python loop on every CPU gets at the start (other jobs share them).

Run::

    python bench/scale_apply.py                          # 1M and 10M local, 1M unique, 1M on Ray
    python bench/scale_apply.py --rows 100000 --unique-rows 100000 --ray-rows 100000

Human-readable lines come first; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from labelflow.conventions import ABSTAIN

ROOT = Path(__file__).resolve().parents[1]
HAM, SPAM = 0, 1

KEYWORDS = [  # (name, label, whole words or phrases)
    ("kw_subscribe", SPAM, ["subscribe", "subscribers", "sub4sub", "subs"]),
    ("kw_my_channel", SPAM, ["my channel", "my video", "my videos", "my music", "my page"]),
    ("kw_please", SPAM, ["please", "plz", "pls"]),
    ("kw_follow", SPAM, ["follow", "facebook", "twitter", "instagram"]),
    ("kw_song", HAM, ["song", "songs", "lyrics", "beat"]),
    ("kw_artist", HAM, ["psy", "katy perry", "shakira", "lmfao", "rihanna", "eminem"]),
]
REGEXES = [  # (name, label, pattern valid in Rust's regex)
    ("re_check_out", SPAM, r"check\s*(it\s*)?out"),
    ("re_money", SPAM, r"\b(free|win|winner|cash|money|earn)\b|\$\d+"),
    ("re_link", SPAM, r"https?://|www\.|\.com\b"),
    ("re_like_share", SPAM, r"\b(like|share|thumbs up)\b.{0,30}\b(comment|share|video)\b"),
    ("re_crowd", SPAM, r"\b(hey|hi|hello)\b.{0,3}\b(guys|everyone|people)\b"),
    ("re_views", HAM, r"\b(billion|million)\b|\bviews\b"),
    ("re_laughter", HAM, r"\b(lol|haha\w*|lmao|omg|wow)\b"),
]
ARTISTS = re.compile(r"\b(psy|katy|perry|eminem|shakira|lmfao|rihanna)\b", re.IGNORECASE)
LOVE = re.compile(r"\bi (love|luv|like) (this|it|you|her|him)\b", re.IGNORECASE)


def py_exclaims(x):
    n = x.text.count("!")
    return SPAM if n >= 3 else HAM if n == 1 else ABSTAIN


def py_shouting(x):
    letters = sum(c.isalpha() for c in x.text)
    return SPAM if letters > 10 and sum(c.isupper() for c in x.text) > 0.6 * letters else ABSTAIN


def py_names_artist(x):
    return HAM if len(x.text) <= 60 and ARTISTS.search(x.text) else ABSTAIN


def py_author_digits(x):
    return SPAM if sum(c.isdigit() for c in x.AUTHOR) >= 3 else ABSTAIN


def py_loves_it(x):
    return HAM if LOVE.search(x.text) else ABSTAIN


def build_suite() -> list:
    """The 20 LFs: 6 keyword, 7 regex, 2 length (expression LFs) and 5 Python LFs."""
    from labelflow import PythonLF, keyword_lf, length_lf, regex_lf

    suite = [keyword_lf(name, words, label=label) for name, label, words in KEYWORDS]
    suite += [regex_lf(name, pattern, label=label) for name, label, pattern in REGEXES]
    suite += [length_lf("len_short", label=HAM, max=20), length_lf("len_few_words", label=HAM, unit="words", max=3)]
    suite += [PythonLF(f.__name__, f) for f in (py_exclaims, py_shouting, py_names_artist, py_author_digits,
                                                 py_loves_it)]
    return suite


def make_project(workdir: Path, rows: int, unique: bool) -> Path:
    """A project of the YouTube comments repeated to ``rows`` rows (unique ids; unique texts if ``unique``);
    made once and reused."""
    import polars as pl

    from labelflow.project import Project
    from labelflow.store import ProjectStore

    root = workdir / f"youtube_{rows}{'_unique' if unique else ''}"
    if ProjectStore.of(root).dataset.is_file():
        return root
    base = pl.concat([pl.read_csv(p) for p in sorted((ROOT / "data" / "youtube").glob("*.csv"))])
    base = base.unique(maintain_order=True)
    frame = pl.concat([base] * -(-rows // base.height)).head(rows).with_columns(
        COMMENT_ID=pl.format("{}#{}", pl.col("COMMENT_ID"), pl.int_range(pl.len())))
    if unique:
        frame = frame.with_columns(CONTENT=pl.format("{} #{}", pl.col("CONTENT"), pl.int_range(pl.len())))
    raw = workdir / f"{root.name}.parquet"
    workdir.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(raw)
    del frame
    Project.init(root, sources={"train": [raw]}, classes=["HAM", "SPAM"], text="CONTENT", id="COMMENT_ID",
                 label="label")
    raw.unlink()
    return root


def measure(root: Path, engine: str, cfg) -> dict:
    """One ``Project.apply`` in a fresh process (see :func:`run_one`); its JSON report."""
    cmd = [sys.executable, __file__, "--measure", str(root), "--engine", engine, "--ray-cpus", str(cfg.ray_cpus)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["load_before"] = round(load, 2)
    return report


def run_one(root: Path, engine: str, ray_cpus: int) -> dict:
    """In this process: empty the vote cache, apply the suite, report time, memory and a hash of the matrix."""
    import hashlib
    import resource
    import shutil

    from labelflow.distributed import RayEngine
    from labelflow.project import Project
    from labelflow.store import ProjectStore

    shutil.rmtree(ProjectStore.of(root).votes, ignore_errors=True)
    project = Project.open(root)
    peak = _TreeMemory()
    report: dict = {}
    if engine == "ray":
        start = time.perf_counter()
        RayEngine(num_cpus=ray_cpus).connect()
        report["ray_start_seconds"] = round(time.perf_counter() - start, 2)
    with peak:
        start = time.perf_counter()
        matrix, cache = project.apply(lfs=build_suite(), engine=engine if engine == "local" else RayEngine())
        seconds = time.perf_counter() - start
    gb = 1024 ** 2  # ru_maxrss is in KiB
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / gb
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / gb
    digest = hashlib.blake2b(matrix.values.tobytes(), digest_size=16)
    digest.update("\n".join(matrix.ids.to_list()).encode())
    return {**report, "rows": matrix.shape[0], "lfs": matrix.shape[1], "applied": len(cache.misses),
            "seconds": round(seconds, 2), "rows_per_s": round(matrix.shape[0] / seconds),
            "peak_rss_gb": round(self_rss + child_rss, 3), "peak_tree_pss_gb": round(peak.gb, 3),
            "coverage": round(float((matrix.values != ABSTAIN).any(axis=1).mean()), 4),
            "matrix_hash": digest.hexdigest()}


class _TreeMemory:
    """Context manager sampling the summed PSS of this process and its descendants every 0.5 s; ``gb``: the peak."""

    def __init__(self) -> None:
        self.gb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_full_info().pss
                except (psutil.Error, OSError):
                    pass
            self.gb = max(self.gb, total / 1024 ** 3)
            if self._stop.wait(0.5):
                return

    def __enter__(self) -> "_TreeMemory":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(cfg) -> dict:
    """Build the projects, run every configuration, print one line each and the JSON summary."""
    from apply_throughput import core_capacity  # bench/ is this script's folder

    workdir = Path(cfg.workdir)
    cpus = os.cpu_count()
    capacity = core_capacity(cpus)
    print(f"20 LFs (15 expression, 5 Python); CPUs: {cpus} (a pure-Python loop on {cpus} processes gets "
          f"{capacity:.2f} cores' worth now); load average now: {os.getloadavg()[0]:.2f}")
    print("Python LFs read the row only as x.text / x.AUTHOR, so they run once per distinct value in a chunk "
          "(memoized); the local_unique runs have distinct texts, so nothing is saved there")
    runs: dict[str, dict] = {}

    def run(key: str, root: Path, engine: str) -> None:
        runs[key] = r = measure(root, engine, cfg)
        print(f"{key:<22} {r['rows']:>11,} rows  {r['seconds']:8.1f} s  {r['rows_per_s']:>10,} rows/s  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB (tree PSS {r['peak_tree_pss_gb']:.2f} GB)  "
              f"load before {r['load_before']:.1f}" + (f"  (cluster start {r['ray_start_seconds']} s)"
                                                         if "ray_start_seconds" in r else ""), flush=True)

    for rows in cfg.rows:
        run(f"local_{rows}", make_project(workdir, rows, unique=False), "local")
    for rows in cfg.unique_rows:
        run(f"local_unique_{rows}", make_project(workdir, rows, unique=True), "local")
    identical = None
    if cfg.ray_rows:
        root = make_project(workdir, cfg.ray_rows, unique=False)
        if f"local_{cfg.ray_rows}" not in runs:
            run(f"local_{cfg.ray_rows}", root, "local")
        run(f"ray_{cfg.ray_rows}", root, "ray")
        identical = runs[f"ray_{cfg.ray_rows}"]["matrix_hash"] == runs[f"local_{cfg.ray_rows}"]["matrix_hash"]
        print(f"Ray and local matrices identical: {identical}")
    summary = {"lfs": 20, "python_lfs": 5, "cpus": cpus, "core_capacity": round(capacity, 2),
               "memoized_python_lfs": True, "ray_identical": identical,
               **{f"{key}_{field}": r[field] for key, r in runs.items()
                  for field in ("rows_per_s", "seconds", "peak_rss_gb", "peak_tree_pss_gb", "load_before")}}
    print(json.dumps(summary))
    if identical is False:
        raise SystemExit("the Ray and local label matrices differ")
    return summary


def make_parser() -> argparse.ArgumentParser:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000],
                        help="row counts for the local engine (default 1000000 10000000)")
    parser.add_argument("--unique-rows", type=int, nargs="*", default=[1_000_000],
                        help="row counts with distinct texts (default 1000000)")
    parser.add_argument("--ray-rows", type=int, default=1_000_000, help="rows for the Ray run; 0 skips it")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs (workers) of the local Ray cluster (default 2)")
    parser.add_argument("--workdir", default="/tmp/labelflow-scale", help="where the projects are made (reused)")
    parser.add_argument("--measure", metavar="PROJECT", help=argparse.SUPPRESS)  # one run, in a child process
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    args = make_parser().parse_args()
    if args.measure:
        print(json.dumps(run_one(Path(args.measure), args.engine, args.ray_cpus)))
    else:
        main(args)
