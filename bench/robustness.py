"""Robustness: every CLI command on bad input and on corrupted copies of a project, classified.

Builds a tiny project (a few dozen YouTube comments from ``data/youtube``, the keyword and
regex LFs of ``lfs/youtube_spam.py``, no FM models), applies and fits it once, then runs
each case in a fresh copy in a temporary folder: a corruption of the copy (a truncated,
garbage, empty or missing store file, a hand-edited ``labelflow.json``, a read-only
project, a full disk, a stale temporary file ...) and one ``python -m labelflow ...``
subprocess with a timeout. Each result is classified:

``ok``
    the command was expected to succeed, did, and its output checks out;
``clear_error``
    nonzero exit, stderr ends with one line ``labelflow: error: ...`` (or argparse's
    ``labelflow COMMAND: error: ...``) naming the file when the case says which, no traceback;
``traceback``
    a Python traceback on stderr;
``silent_wrong``
    exit 0 where the command must fail, or an output that contradicts the input;
``hang``
    the command ran past the timeout;
``unclear``
    nonzero exit without a one-line ``labelflow: error:`` (a crash, a signal, a multi-line
    message, an error that does not name the file involved), or a valid command refused.

Run::

    python bench/robustness.py            # every case
    python bench/robustness.py --fast     # the quick subset tests/test_robustness.py runs
    python bench/robustness.py --only export,matrix --show-all

The failing cases are printed first (with the owning module, taken from the deepest
frame of a traceback); the last line is one JSON object of counts per class.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("ok", "clear_error", "traceback", "silent_wrong", "hang", "unclear")
FAILING = ("traceback", "silent_wrong", "hang", "unclear")
ERROR_LINE = re.compile(r"^labelflow(?: [\w-]+)*: error: \S")
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once
OWNERS = (  # path prefix of the deepest repo frame → who owns the fix (issue 14's split)
    ("labelflow/lf.py", "lf+apply"), ("labelflow/apply.py", "lf+apply"), ("labelflow/distributed.py", "lf+apply"),
    ("labelflow/dataset.py", "store"), ("labelflow/matrix.py", "store"), ("labelflow/annotations.py", "store"),
    ("labelflow/project", "store"), ("labelflow/fm/", "fm"), ("finetune/", "finetune+studio+trust"),
    ("labelflow/studio.py", "finetune+studio+trust"), ("labelflow/trust.py", "finetune+studio+trust"),
    ("app/", "finetune+studio+trust"), ("labelflow/labelmodels/", "labelmodels"),
    ("labelflow/cli.py", "cli"), ("labelflow/commands/", "cli"), ("labelflow/files.py", "cli"), ("labelflow/suite_edit.py", "cli"),
    ("labelflow/suggest.py", "cli"), ("labelflow/error_analysis.py", "cli"), ("labelflow/errors.py", "cli"), ("labelflow/", "labelflow"),
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100, help="rows in the fixture project (default 100)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    parser.add_argument("--fast", action="store_true", help="only the quick subset (tests/test_robustness.py)")
    parser.add_argument("--only", help="comma-separated substrings: run the cases whose name holds one")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--show-all", action="store_true", help="print every case, not only the failing ones")
    parser.add_argument("--workdir", help="keep the case folders here (default: a temporary folder, removed)")
    return parser


# --- cases ------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One command over one (corrupted) copy of the fixture project.

    ``argv`` is a shell-like string after ``python -m labelflow``; ``{p}`` is the project (relative to
    the case folder, the working directory), ``{w}`` the case folder, ``{src}`` the fixture's data.
    ``expect``: ``fail`` (must exit nonzero with a clear error), ``ok`` (must succeed, and ``check``
    must return None), ``either``. ``names``: a string the error line must contain (the file involved).
    """

    name: str
    argv: str
    setup: Callable[[Path, Path], None] | None = None
    expect: str = "fail"
    check: Callable[["Context", Path, Path, str], str | None] | None = None
    names: str | None = None
    mode: str = "normal"  # normal | readonly | diskfull | pipe
    fast: bool = False
    timeout: float | None = None
    umask: int | None = None


@dataclass
class Context:
    base: Path  # the fixture: base/proj, base/src, base/home
    reference: dict = field(default_factory=dict)


@dataclass
class Result:
    case: Case
    outcome: str
    rc: int | None
    seconds: float
    detail: str = ""
    owner: str = ""


# -- setups: each takes (work, proj) -----------------------------------------------------------------


def _first(proj: Path, pattern: str) -> Path:
    found = sorted(proj.glob(pattern))
    if not found:
        raise FileNotFoundError(f"fixture lacks {pattern}")
    return found[0]


def truncate(rel: str, frac: float = 0.5):
    def setup(work, proj):
        path = _first(proj, rel)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * frac)])
    return setup


def garbage(rel: str):
    def setup(work, proj):
        _first(proj, rel).write_bytes(b"\x00garbage, not what labelflow wrote\xff" * 20)
    return setup


def empty(rel: str):
    def setup(work, proj):
        path = proj / rel if "*" not in rel else _first(proj, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return setup


def remove(rel: str):
    def setup(work, proj):
        path = _first(proj, rel)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def as_dir(rel: str):
    def setup(work, proj):
        path = proj / rel if "*" not in rel else _first(proj, rel)
        if path.exists():
            path.unlink()
        (path / "inner").mkdir(parents=True)
    return setup


def config(**changes):
    def setup(work, proj):
        path = proj / "labelflow.json"
        raw = json.loads(path.read_text())
        for key, value in changes.items():
            if value is _DELETE:
                raw.pop(key, None)
            else:
                raw[key] = value
        path.write_text(json.dumps(raw))
    return setup


_DELETE = object()


def config_text(text: str):
    def setup(work, proj):
        (proj / "labelflow.json").write_text(text)
    return setup


def write(rel: str, text: str | bytes, *, base: str = "work"):
    def setup(work, proj):
        path = (work if base == "work" else proj) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def chain(*setups):
    def setup(work, proj):
        for s in setups:
            s(work, proj)
    return setup


def frame_edit(rel: str, edit: Callable):
    """Rewrite a Parquet file of the store through ``edit(frame) -> frame``, keeping its metadata."""
    def setup(work, proj):
        import polars as pl

        path = proj / rel
        meta = pl.read_parquet_metadata(path)
        frame = edit(pl.read_parquet(path))
        frame.write_parquet(path, metadata={k: v for k, v in meta.items() if k.startswith("labelflow.")})
    return setup


def shuffle_votes(frame):
    """The votes rolled by one row against the ids: every row keeps its id and gets another row's votes."""
    import polars as pl

    votes = frame.drop("id")
    return pl.concat([frame.select("id"), votes.select(pl.all().shift(1, fill_value=-1))], how="horizontal") \
        if votes.select((pl.all() != pl.all().shift(1)).any()).row(0).count(True) else frame


def npz_nan(rel: str):
    def setup(work, proj):
        import numpy as np

        path = proj / rel
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        for k, v in arrays.items():
            if k != "__meta__" and v.dtype.kind == "f":
                arrays[k] = np.full_like(v, np.nan)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    return setup


def edit_suite(work, proj):
    with open(proj / "suite.py", "a") as fh:
        fh.write("\n# edited after it was trusted\n")


def stale_temp(work, proj):
    """A temporary file left by a killed write 10 minutes ago, and one a running write holds now."""
    from labelflow.store import ProjectStore

    folder = ProjectStore.of(proj).root
    old = time.time() - 600
    for name in (".matrix.parquet.killed.labelflow-tmp", ".matrix.parquet.abc12345.tmp"):
        (folder / name).write_bytes(b"half a file")
        os.utime(folder / name, (old, old))
    (folder / ".matrix.parquet.running.labelflow-tmp").write_bytes(b"being written")


def chmod(rel: str, mode: int):
    def setup(work, proj):
        os.chmod(proj / rel, mode)
    return setup


# -- checks: (ctx, work, proj, stdout) -> why the output is wrong, or None ----------------------------


def same_fit(ctx, work, proj, out):
    got = json.loads(out)["metrics"]
    want = ctx.reference["fit"]["metrics"]
    return None if got == want else f"fit metrics {got} differ from the unshuffled project's {want}"


def same_summary(ctx, work, proj, out):
    got = json.loads(out)["lfs"]
    return None if got == ctx.reference["summary"]["lfs"] else "summary differs from the unshuffled project's"


def same_matrix(ctx, work, proj, out):
    import polars as pl

    from labelflow.store import ProjectStore

    got = pl.read_parquet(ProjectStore.of(proj).matrix)
    want = pl.read_parquet(ProjectStore.of(ctx.base / "proj").matrix)
    return None if got.equals(want) else "the label matrix differs from the one the intact cache gives"


def export_ok(rel: str, mode: int | None = None):
    def check(ctx, work, proj, out):
        import polars as pl

        path = work / rel
        if not path.is_file():
            return f"{rel} was not written"
        frame = pl.read_parquet(path) if rel.endswith(".parquet") else pl.read_csv(path)
        probs = frame.select(pl.col("^prob_.*$")).to_numpy()
        if frame.height != ctx.reference["rows"] or not (probs == probs).all():
            return f"{rel}: {frame.height} rows (want {ctx.reference['rows']}), NaN probabilities: {not (probs == probs).all()}"
        if mode is not None and path.stat().st_mode & 0o777 != mode:
            return f"{rel} has mode {path.stat().st_mode & 0o777:o}; the umask gives {mode:o}"
        return None
    return check


def file_mode(rel: str, mode: int, *, base: str = "proj"):
    def check(ctx, work, proj, out):
        path = (proj if base == "proj" else work) / rel
        found = sorted(path.parent.glob(path.name))
        if not found:
            return f"{rel} is missing"
        got = found[0].stat().st_mode & 0o777
        return None if got == mode else f"{found[0].name} has mode {got:o}; want {mode:o}"
    return check


def all_checks(*checks):
    def check(ctx, work, proj, out):
        for c in checks:
            why = c(ctx, work, proj, out)
            if why:
                return why
        return None
    return check


def swept(ctx, work, proj, out):
    from labelflow.store import ProjectStore

    store = ProjectStore.of(proj).root
    left = [p.name for p in store.iterdir() if p.name.endswith((".labelflow-tmp", ".tmp"))]
    want = [".matrix.parquet.running.labelflow-tmp"]
    return None if sorted(left) == want else f"temporary files left in store/: {sorted(left)} (want {want})"


def accepted_mode(ctx, work, proj, out):
    mode = (proj / "suite.py").stat().st_mode & 0o777
    return None if mode == 0o644 else f"the suite file's mode changed from 644 to {mode:o}"


# -- the case list -----------------------------------------------------------------------------------

INIT = ("init {w}/new --data train={src}/train.csv --data dev={src}/dev.csv --classes HAM,SPAM "
        "--text CONTENT --id COMMENT_ID --label label")
STORE_READERS = {
    "store/dataset.parquet": ("apply", "fit", "summary", "export out.parquet", "analyze"),
    "store/matrix.parquet": ("fit", "summary", "export out.parquet", "analyze"),
    "store/models/labelflow.npz": ("export out.parquet", "analyze"),
    "store/annotations.sqlite": ("summary", "fit", "export out.parquet"),
    "store/votes/*.npz": ("apply",),
}
CORRUPTIONS = {"truncated": truncate, "garbage": garbage, "empty": empty, "dir": as_dir}
FAST = {"matrix.parquet-truncated-summary", "dataset.parquet-garbage-fit", "annotations.sqlite-garbage-summary",
        "models-labelflow.npz-truncated-export", "config-classes-string", "config-invalid-json",
        "analyze-suggest-relative", "fm-prompt-template-file-missing", "summary-broken-pipe", "export-to-directory",
        "init-over-file", "ui-host-bad", "init-cardinality-200", "apply-lf-raises", "export-mode-umask",
        "readonly-summary", "stale-temp-swept"}


def cases() -> list[Case]:
    out: list[Case] = []
    add = out.append

    # corrupt or truncated store files, under every command that reads them
    for rel, commands in STORE_READERS.items():
        short = rel.removeprefix("store/").replace("/", "-").replace("*", "x")
        for kind, make in CORRUPTIONS.items():
            for command in commands:
                cmd = command.split()[0]
                expect = "fail"
                check = None
                if rel.endswith("annotations.sqlite") and kind == "empty":
                    expect = "either"  # an empty file is an empty SQLite database
                if rel.startswith("store/votes"):
                    expect, check = "either", same_matrix  # a cache: recomputing it is right too
                add(Case(f"{short}-{kind}-{cmd}", f"{command} -p {{p}} --json" if cmd != "export" else
                         f"{command} -p {{p}}", make(rel), expect=expect, check=check,
                         names=None if expect != "fail" else Path(rel).name.replace("*", "")))

    # other damage to the store
    add(Case("dataset-missing-fit", "fit -p {p}", remove("store/dataset.parquet"), names="dataset.parquet"))
    add(Case("matrix-missing-summary", "summary -p {p}", remove("store/matrix.parquet")))
    add(Case("model-missing-export", "export out.csv -p {p}", remove("store/models/labelflow.npz")))
    add(Case("fit-record-garbage-export", "export out.csv -p {p}", garbage("store/models/labelflow.fit.json"),
             names="labelflow.fit.json"))
    add(Case("model-nan-export", "export out.parquet -p {p}", npz_nan("store/models/labelflow.npz"),
             names="labelflow.npz"))
    add(Case("matrix-votes-shuffled-fit", "fit -p {p} --json", frame_edit("store/matrix.parquet", shuffle_votes),
             names="matrix.parquet"))
    add(Case("matrix-rows-permuted-fit", "fit -p {p} --json",
             frame_edit("store/matrix.parquet", lambda f: f.reverse()), expect="ok", check=same_fit))
    add(Case("dataset-rows-permuted-summary", "summary -p {p} --json",
             frame_edit("store/dataset.parquet", lambda f: f.reverse()), expect="ok", check=same_summary))
    add(Case("matrix-vote-out-of-range-fit", "fit -p {p}",
             frame_edit("store/matrix.parquet", lambda f: f.with_columns(f[f.columns[1]].cast(int).clip(5, 5))),
             names="matrix.parquet"))
    add(Case("matrix-rows-dropped-fit", "fit -p {p}", frame_edit("store/matrix.parquet", lambda f: f.head(-3)),
             names="matrix.parquet"))
    add(Case("dataset-column-dropped-fit", "fit -p {p}",
             frame_edit("store/dataset.parquet", lambda f: f.drop("split")), names="dataset.parquet"))
    add(Case("fm-cache-garbage-apply", "apply -p {p} --json", write("store/fm.sqlite", b"garbage" * 100, base="proj"),
             expect="either"))
    add(Case("fm-output-garbage-apply", "apply -p {p}", write("store/fm/emb.parquet", b"garbage" * 100, base="proj"),
             names="emb.parquet"))

    # hand-edited labelflow.json
    bad_configs = {
        "classes-string": config(classes="HAM,SPAM"), "classes-ints": config(classes=[1, 2]),
        "classes-no-name": config(classes=[{"nam": "HAM"}, {"nam": "SPAM"}]), "classes-one": config(classes=[{"name": "A"}]),
        "classes-null": config(classes=None), "text-string": config(text="CONTENT"), "text-int": config(text=5),
        "sources-list": config(sources=["a.csv"]), "dev_sample-string": config(dev_sample="3"),
        "dev_sample-negative": config(dev_sample=-1), "seed-string": config(seed="x"),
        "hide_labels-string": config(hide_labels="train"), "duplicates-bad": config(duplicates="maybe"),
        "lfs-int": config(lfs=5), "label_model-int": config(label_model=7), "label_model-unknown": config(label_model="nope"),
        "format-string": config(format="1"), "name-null": config(name=None), "name-int": config(name=5),
        "studio_url-int": config(studio_url=5), "ray_address-int": config(ray_address=5), "id-int": config(id=5),
        "label-list": config(label=[]), "unknown-key": config(colour="blue"), "missing-classes": config(classes=_DELETE),
        "invalid-json": config_text("{not json"), "empty": config_text(""), "list": config_text("[1, 2]"),
        "dir": as_dir("labelflow.json"),
    }
    for name, setup in bad_configs.items():
        add(Case(f"config-{name}", "summary -p {p}", setup, names="labelflow.json"))
    add(Case("config-lfs-missing-apply", "apply -p {p}", config(lfs="missing.py"), names="missing.py"))
    add(Case("config-ray_address-int-apply", "apply -p {p}", config(ray_address=5), names="labelflow.json"))
    add(Case("config-text-int-export", "export out.csv -p {p}", config(text=5), names="labelflow.json"))

    # read-only project (a read-only bind mount when root, else chmod a-w)
    for command, expect in (("summary", "either"), ("export {w}/out/out.csv", "either"), ("analyze", "either"),
                            ("fit", "fail"), ("apply", "either")):
        cmd = command.split()[0]
        add(Case(f"readonly-{cmd}", f"{command} -p {{p}}", mode="readonly", expect=expect))

    # a full disk
    for command in ("apply", "fit", "export proj/out.parquet"):
        cmd = command.split()[0]
        setup = remove("store/matrix.parquet") if cmd == "apply" else None
        add(Case(f"diskfull-{cmd}", f"{command} -p {{p}}", setup, mode="diskfull"))
    add(Case("diskfull-init", INIT.replace("{w}/new", "proj/new"), mode="diskfull"))

    # init
    add(Case("init-over-file", INIT.replace("{w}/new", "afile"), write("afile", "x")))
    add(Case("init-under-file", INIT.replace("{w}/new", "afile/sub"), write("afile", "x")))
    add(Case("init-data-missing", INIT.replace("{src}/dev.csv", "{w}/missing.csv"), names="missing.csv"))
    add(Case("init-data-garbage", INIT.replace("{src}/dev.csv", "{w}/bad.parquet"), write("bad.parquet", b"PAR1xx"),
             names="bad.parquet"))
    add(Case("init-data-empty-csv", INIT.replace("{src}/dev.csv", "{w}/e.csv"), write("e.csv", ""), names="e.csv"))
    add(Case("init-data-dir", INIT.replace("{src}/dev.csv", "{w}"), names=None))
    add(Case("init-classes-one", INIT.replace("HAM,SPAM", "HAM")))
    add(Case("init-classes-dup", INIT.replace("HAM,SPAM", "HAM,HAM")))
    add(Case("init-cardinality-200", INIT.replace("HAM,SPAM", ",".join(f"c{i}" for i in range(200)))))
    add(Case("init-label-column-missing", INIT.replace("--label label", "--label nope")))
    add(Case("init-text-column-missing", INIT.replace("--text CONTENT", "--text nope")))
    add(Case("init-dev-sample-negative", INIT + " --dev-sample -1"))
    add(Case("init-dev-sample-huge", INIT + " --dev-sample 100000"))
    add(Case("init-lfs-missing", INIT + " --lfs {w}/missing.py", names="missing.py"))
    add(Case("init-label-model-unknown", INIT + " --label-model nope"))
    add(Case("init-hide-unknown-split", INIT + " --hide-labels nosuch"))
    add(Case("init-describe-unknown", INIT + " --describe NOPE=x"))
    add(Case("init-empty-path", INIT.replace("dev={src}/dev.csv", "dev=")))
    add(Case("init-split-column-missing", INIT + " --split-column nope"))

    # apply
    add(Case("apply-lfs-missing", "apply -p {p} --lfs missing.py", names="missing.py"))
    add(Case("apply-lfs-syntax", "apply -p {p} --lfs bad.py", write("bad.py", "def f(:\n"), names="bad.py"))
    add(Case("apply-lfs-import-error", "apply -p {p} --lfs bad.py", write("bad.py", "import nosuchmodule_xyz\n"),
             names="bad.py"))
    add(Case("apply-lfs-empty", "apply -p {p} --lfs bad.py", write("bad.py", "x = 1\n"), names="bad.py"))
    suite_head = "from labelflow import ABSTAIN, labeling_function, keyword_lf\n"
    add(Case("apply-lf-raises", "apply -p {p} --lfs bad.py --jobs 1",
             write("bad.py", suite_head + "@labeling_function()\ndef boom(x):\n    return 1 // 0\n"), names="boom"))
    add(Case("apply-lf-vote-out-of-range", "apply -p {p} --lfs bad.py --jobs 1",
             write("bad.py", suite_head + "@labeling_function()\ndef five(x):\n    return 5\n"), names="five"))
    add(Case("apply-lf-vote-string", "apply -p {p} --lfs bad.py --jobs 1",
             write("bad.py", suite_head + "@labeling_function()\ndef s(x):\n    return 'SPAM'\n")))
    add(Case("apply-lf-duplicate-names", "apply -p {p} --lfs bad.py",
             write("bad.py", suite_head + "a = keyword_lf('k', ['x'], label=1)\nb = keyword_lf('k', ['y'], label=0)\n")))
    add(Case("apply-lf-sys-exit", "apply -p {p} --lfs bad.py", write("bad.py", "import sys\nsys.exit(3)\n"),
             names="bad.py"))
    add(Case("apply-jobs-zero", "apply -p {p} --jobs 0"))
    add(Case("apply-jobs-negative", "apply -p {p} --jobs -2"))
    add(Case("apply-untrusted", "apply -p {p}", edit_suite, names="trust"))
    add(Case("apply-not-a-project", "apply -p nowhere"))
    add(Case("apply-ray-dead", "apply -p {p} --engine ray --address 127.0.0.1:9", remove("store/votes"), timeout=90))

    # fit, summary, export, analyze
    add(Case("fit-model-unknown", "fit -p {p} --model nope"))
    add(Case("fit-seed-bad", "fit -p {p} --seed x"))
    add(Case("fit-no-train-rows", "fit -p {p}",
             frame_edit("store/dataset.parquet", lambda f: f.with_columns(split=f["split"].str.replace("train", "dev")))))
    add(Case("summary-split-unknown", "summary -p {p} --split nope"))
    add(Case("summary-broken-pipe", "summary -p {p}", mode="pipe", expect="ok"))
    add(Case("export-to-directory", "export adir -p {p} --format csv", write("adir/keep", "x"), names="adir"))
    add(Case("export-bad-extension", "export out.txt -p {p}"))
    add(Case("export-under-file", "export afile/out.csv -p {p}", write("afile", "x"), names="afile"))
    add(Case("export-split-unknown", "export out.csv -p {p} --split nope"))
    add(Case("export-model-unfitted", "export out.csv -p {p} --model snorkel"))
    add(Case("export-mode-umask", "export out.csv -p {p}", expect="ok", umask=0o022, check=export_ok("out.csv", 0o644)))
    add(Case("fit-mode-umask", "fit -p {p} --json", expect="ok", umask=0o022,
             check=all_checks(file_mode("store/models/labelflow.npz", 0o644), file_mode("store/matrix.parquet", 0o644))))
    add(Case("stale-temp-swept", "apply -p {p} --json", stale_temp, expect="ok", check=swept))
    add(Case("analyze-suggest-relative", "analyze -p {p} --suggest 2 --json", expect="ok"))
    add(Case("analyze-accept-keeps-mode", "analyze -p {p} --suggest 3 --accept --json", chmod("suite.py", 0o644),
             expect="either", check=accepted_mode, umask=0o077))
    add(Case("analyze-predictions-missing", "analyze -p {p} --predictions nope.csv", names="nope.csv"))
    add(Case("analyze-predictions-garbage", "analyze -p {p} --predictions bad.parquet",
             write("bad.parquet", b"PAR1garbage"), names="bad.parquet"))
    add(Case("analyze-predictions-columns", "analyze -p {p} --predictions p.csv", write("p.csv", "a,b\n1,2\n"),
             names="p.csv"))
    add(Case("analyze-predictions-ids", "analyze -p {p} --predictions p.csv", write("p.csv", "id,pred\nnope,1\n")))
    add(Case("analyze-kinds-unknown", "analyze -p {p} --suggest 1 --kinds nope"))
    add(Case("analyze-split-no-gold", "analyze -p {p} --split train"))
    add(Case("analyze-model-unfitted", "analyze -p {p} --model snorkel"))
    add(Case("analyze-suggest-negative", "analyze -p {p} --suggest -1 --slices -1", expect="either"))

    # fm
    prompt = "fm prompt -p {p} --template 'Comment: {{text}}' --answers SPAM=yes --answers HAM=no"
    add(Case("fm-prompt-template-file-missing",
             "fm prompt -p {p} --template-file nope.txt --answers SPAM=yes --answers HAM=no", names="nope.txt"))
    add(Case("fm-prompt-template-file-dir",
             "fm prompt -p {p} --template-file {w} --answers SPAM=yes --answers HAM=no"))
    add(Case("fm-prompt-both-templates", prompt + " --template-file x.txt"))
    add(Case("fm-prompt-answers-bad", "fm prompt -p {p} --template x --answers SPAM"))
    add(Case("fm-prompt-answers-unknown-class", "fm prompt -p {p} --template x --answers NOPE=yes --dry-run"))
    add(Case("fm-prompt-openai-no-model", prompt + " --provider openai"))
    add(Case("fm-prompt-openai-dead", prompt + f" --provider openai --model m --base-url {DEAD_URL}/v1 --limit 2",
             timeout=90))
    add(Case("fm-prompt-limit-negative", prompt + " --limit -1 --dry-run"))
    add(Case("fm-embed-model-missing", "fm embed -p {p} --model {w}/no-such-model"))
    add(Case("fm-embed-not-a-project", "fm embed -p nowhere"))
    add(Case("fm-zero-shot-no-descriptions", "fm zero-shot -p {p} --dry-run", expect="either"))

    # studio with a dead URL
    for action in ("status", "push", "pull"):
        add(Case(f"studio-{action}-dead-url", f"studio {action} -p {{p}} --url {DEAD_URL}", timeout=90,
                 names="127.0.0.1:9"))
    add(Case("studio-status-no-url", "studio status -p {p}"))
    add(Case("studio-status-bad-url", "studio status -p {p} --url notaurl"))
    add(Case("studio-push-n-negative", f"studio push -p {{p}} -n -1 --url {DEAD_URL}"))

    # ui argument checks (none of these may start a server)
    add(Case("ui-host-bad", "ui -p {p} --host bad"))
    add(Case("ui-host-bad-allow-remote", "ui -p {p} --host 'bad host!' --allow-remote", timeout=30))
    add(Case("ui-host-empty", "ui -p {p} --host ''", timeout=30))
    add(Case("ui-port-zero", "ui -p {p} --port 0"))
    add(Case("ui-port-huge", "ui -p {p} --port 70000"))
    add(Case("ui-not-a-project", "ui -p nowhere"))

    # finetune / predict argument checks (none of these may start training)
    ft = "finetune -p {p} --out run"
    add(Case("finetune-no-out", "finetune -p {p}"))
    add(Case("finetune-epochs-zero", ft + " --epochs 0"))
    add(Case("finetune-lr-negative", ft + " --lr -1"))
    add(Case("finetune-batch-zero", ft + " --batch-size 0"))
    add(Case("finetune-min-confidence", ft + " --min-confidence 2"))
    add(Case("finetune-max-length-zero", ft + " --max-length 0"))
    add(Case("finetune-labels-missing", ft + " --labels nope.parquet", names="nope.parquet"))
    add(Case("finetune-labels-garbage", ft + " --labels bad.parquet", write("bad.parquet", b"PAR1xx"),
             names="bad.parquet"))
    add(Case("finetune-labels-columns", ft + " --labels l.csv", write("l.csv", "a,b\n1,2\n"), names="l.csv"))
    add(Case("finetune-base-model-missing", ft + " --base-model {w}/no-model", names="no-model"))
    add(Case("finetune-out-is-file", "finetune -p {p} --out afile", write("afile", "x"), names="afile"))
    add(Case("finetune-resume-garbage", ft + " --resume", write("run/run.json", "{not json"), names="run"))
    add(Case("finetune-matrix-garbage", ft, garbage("store/matrix.parquet"), names="matrix.parquet"))
    add(Case("predict-model-missing", "predict --model nope data.csv", write("data.csv", "text\nhi\n"), names="nope"))
    add(Case("predict-model-empty-dir", "predict --model run data.csv",
             chain(write("data.csv", "text\nhi\n"), write("run/.keep", "")), names="run"))
    add(Case("predict-data-missing", "predict --model run nope.csv", write("run/.keep", "")))
    add(Case("predict-batch-zero", "predict --model run data.csv --batch-size 0",
             chain(write("data.csv", "text\nhi\n"), write("run/.keep", ""))))

    # bench, trust, demo, the parser
    add(Case("bench-folder-missing", "bench label-models nowhere", names="nowhere"))
    add(Case("bench-folder-empty", "bench label-models adir", write("adir/.keep", ""), names="adir"))
    add(Case("bench-label-json-garbage", "bench label-models adir", write("adir/label.json", "{not json"),
             names="label.json"))
    add(Case("bench-models-unknown", "bench label-models adir --models nope", write("adir/label.json", "{}")))
    add(Case("trust-not-a-project", "trust nowhere"))
    add(Case("trust-check-untrusted", "trust {p} --check", edit_suite, names="trust"))
    add(Case("trust-config-garbage", "trust {p}", config_text("{"), names="labelflow.json"))
    add(Case("demo-workdir-is-file", "demo --workdir afile --no-fm --no-student", write("afile", "x"), timeout=90))
    add(Case("no-command", ""))
    add(Case("unknown-command", "frobnicate"))

    for case in out:
        case.fast = case.name in FAST
    return out


# --- running ----------------------------------------------------------------------------------------


def python() -> str:
    return sys.executable


def run_cli(argv: list[str], *, cwd: Path, home: Path, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m labelflow`` (for building the fixture)."""
    env = {**os.environ, "LABELFLOW_HOME": str(home), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([python(), "-m", "labelflow", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"building the fixture: labelflow {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return proc


def build_fixture(base: Path, rows: int) -> Context:
    """``base/src`` (train/dev/test CSVs), ``base/proj`` (initialised, applied, fitted), ``base/home`` (trust)."""
    import ast

    import polars as pl

    src, proj, home = base / "src", base / "proj", base / "home"
    for d in (src, proj, home):
        d.mkdir(parents=True)
    files = sorted((REPO / "data" / "youtube").glob("Youtube0*.csv"))
    frame = pl.concat([pl.read_csv(f, columns=["COMMENT_ID", "CONTENT", "label"]) for f in files])
    frame = frame.unique("COMMENT_ID", keep="first", maintain_order=True).sample(rows, seed=0, shuffle=True)
    n_train, n_dev = rows // 2, rows // 4
    parts = {"train": frame[:n_train], "dev": frame[n_train:n_train + n_dev], "test": frame[n_train + n_dev:]}
    for split, part in parts.items():
        part.write_csv(src / f"{split}.csv")
    # the keyword, regex and length LFs of lfs/youtube_spam.py (no textblob, no FM)
    source = (REPO / "lfs" / "youtube_spam.py").read_text(encoding="utf-8")
    kept = [ast.get_source_segment(source, node) for node in ast.parse(source).body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) in ("keyword_lf", "regex_lf", "length_lf")]
    (proj / "suite.py").write_text("from labelflow import keyword_lf, length_lf, regex_lf\n\nHAM, SPAM = 0, 1\n\n"
                                   + "\n\n".join(kept) + "\n", encoding="utf-8")
    os.chmod(proj / "suite.py", 0o644)
    run_cli(["init", "proj", "--data", f"train={src}/train.csv", "--data", f"dev={src}/dev.csv", "--data",
             f"test={src}/test.csv", "--classes", "HAM,SPAM", "--text", "CONTENT", "--id", "COMMENT_ID",
             "--label", "label", "--hide-labels", "train", "--lfs", "proj/suite.py"], cwd=base, home=home, timeout=120)
    ctx = Context(base)
    dev_id = parts["dev"]["COMMENT_ID"][0]
    env = {**os.environ, "LABELFLOW_HOME": str(home), "PYTHONPATH": str(REPO)}
    subprocess.run([python(), "-c", "from labelflow.project import Project; "
                    f"Project.open('proj').annotate({dev_id!r}, 'SPAM', annotator='bench')"],
                   cwd=base, env=env, check=True, timeout=120)
    run_cli(["apply", "-p", "proj", "--json", "--jobs", "1"], cwd=base, home=home, timeout=120)
    ctx.reference["fit"] = json.loads(run_cli(["fit", "-p", "proj", "--json"], cwd=base, home=home, timeout=120).stdout)
    ctx.reference["summary"] = json.loads(run_cli(["summary", "-p", "proj", "--json"], cwd=base, home=home,
                                                  timeout=120).stdout)
    ctx.reference["rows"] = rows
    return ctx


def _umask_preexec(umask: int | None):
    def preexec():
        if umask is not None:
            os.umask(umask)
    return preexec


def _make_readonly(work: Path, proj: Path) -> Callable[[], None]:
    """Make ``proj`` read-only: a read-only bind mount when this is root (root writes through any file mode),
    else ``chmod a-w``; returns the cleanup."""
    (work / "out").mkdir()
    if os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(proj), str(proj)], capture_output=True).returncode == 0
        if bind and subprocess.run(["mount", "-o", "remount,bind,ro", str(proj)], capture_output=True).returncode == 0:
            return lambda: subprocess.run(["umount", "-l", str(proj)], capture_output=True)
        if bind:
            subprocess.run(["umount", "-l", str(proj)], capture_output=True)
    for path in [proj, *proj.rglob("*")]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    return lambda: None


def _fill_disk(work: Path, proj: Path) -> Callable[[], None]:
    """Put ``proj`` on a small filesystem and fill it; returns the cleanup. Falls back to ``RLIMIT_FSIZE``."""
    size = sum(p.stat().st_size for p in proj.rglob("*") if p.is_file()) + (1 << 20)
    mnt = work / "fs"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0 if os.geteuid() == 0 else False
    if not mounted:
        return lambda: None
    shutil.copytree(proj, mnt / "proj", symlinks=True)
    shutil.rmtree(proj)
    proj.symlink_to(mnt / "proj")
    try:  # fill it: one big file, then small ones for the last blocks
        with open(mnt / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    except OSError:
        pass
    try:
        for i in range(10000):
            (mnt / f"filler{i}").write_bytes(b"\0" * 512)
    except OSError:
        pass

    def cleanup():
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return cleanup


def _fsize_preexec(umask: int | None):
    def preexec():
        import resource
        import signal

        if umask is not None:
            os.umask(umask)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    return preexec


def run_case(ctx: Context, case: Case, root: Path, timeout: float) -> Result:
    work = root / case.name
    work.mkdir(parents=True)
    proj, home = work / "proj", work / "home"
    shutil.copytree(ctx.base / "proj", proj)
    shutil.copytree(ctx.base / "home", home)
    cleanup = lambda: None  # noqa: E731
    started = time.monotonic()
    try:
        if case.setup is not None:
            case.setup(work, proj)
        preexec = _umask_preexec(case.umask)
        if case.mode == "readonly":
            cleanup = _make_readonly(work, proj)
        elif case.mode == "diskfull":
            cleanup = _fill_disk(work, proj)
            if not proj.is_symlink():
                preexec = _fsize_preexec(case.umask)
        argv = shlex.split(case.argv.format(p="proj", w=str(work), src=str(ctx.base / "src")))
        env = {**os.environ, "LABELFLOW_HOME": str(home), "PYTHONPATH": str(REPO), "HOME": str(home),
               "PYTHONDONTWRITEBYTECODE": "1", "LABEL_STUDIO_API_KEY": "x", "OPENAI_API_KEY": "x"}
        limit = case.timeout or timeout
        started = time.monotonic()
        proc = subprocess.Popen([python(), "-m", "labelflow", *argv], cwd=work, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                preexec_fn=preexec, start_new_session=True)
        if case.mode == "pipe":  # the reader goes away at once, as `| head` does after its lines
            proc.stdout.close()
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return Result(case, "hang", None, time.monotonic() - started, f"no exit after {limit:.0f} s")
        seconds = time.monotonic() - started
        out = out or ""
        return classify(ctx, case, proc.returncode, out, err, work, proj, seconds)
    except Exception as exc:  # a broken case is reported, not fatal to the run
        return Result(case, "unclear", None, time.monotonic() - started, f"the case itself failed: {exc!r}")
    finally:
        cleanup()


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _owner(err: str) -> str:
    frames = re.findall(r'File "([^"]+)", line \d+', err)
    for frame in reversed(frames):
        try:
            rel = Path(frame).resolve().relative_to(REPO).as_posix()
        except ValueError:
            continue
        for prefix, owner in OWNERS:
            if rel.startswith(prefix):
                return f"{owner} ({rel}:{_line_of(err, frame)})"
    return "outside labelflow"


def _line_of(err: str, frame: str) -> str:
    found = re.findall(rf'File "{re.escape(frame)}", line (\d+)', err)
    return found[-1] if found else "?"


def classify(ctx: Context, case: Case, rc: int, out: str, err: str, work: Path, proj: Path, seconds: float) -> Result:
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if "Traceback (most recent call last)" in err:
        return Result(case, "traceback", rc, seconds, last[:300], _owner(err))
    if case.mode == "pipe":
        noisy = [line for line in lines if "BrokenPipe" in line or "Exception ignored" in line]
        if noisy or rc not in (0, 141):
            return Result(case, "unclear", rc, seconds, f"exit {rc}, stderr {noisy or lines[-2:]}")
        return Result(case, "ok", rc, seconds)
    if rc == 0:
        if case.expect == "fail":
            return Result(case, "silent_wrong", rc, seconds, "exit 0 where it must fail")
        why = case.check(ctx, work, proj, out) if case.check else None
        if why:
            return Result(case, "silent_wrong", rc, seconds, why)
        return Result(case, "ok", rc, seconds)
    if not ERROR_LINE.match(last):
        return Result(case, "unclear", rc, seconds, f"exit {rc}; last stderr line: {last[:300]!r}",
                      _owner(err) if "File \"" in err else "")
    errors = [i for i, line in enumerate(lines) if ERROR_LINE.match(line)]
    if len(lines) - errors[-1] != 1:
        return Result(case, "unclear", rc, seconds, "the error message spans several lines")
    if case.expect == "ok":
        return Result(case, "unclear", rc, seconds, f"a valid command was refused: {last[:300]}")
    if case.names and case.names not in last:
        return Result(case, "unclear", rc, seconds, f"the error does not name {case.names!r}: {last[:300]}")
    return Result(case, "clear_error", rc, seconds, last[:300])


def main(cfg: argparse.Namespace) -> dict:
    selected = cases()
    if cfg.fast:
        selected = [c for c in selected if c.fast]
    if cfg.only:
        keys = [k.strip() for k in cfg.only.split(",") if k.strip()]
        selected = [c for c in selected if any(k in c.name for k in keys)]
    if cfg.list:
        for c in selected:
            print(f"{c.name:45s} {c.expect:7s} labelflow {c.argv}")
        return {"cases": len(selected)}
    root = Path(cfg.workdir or tempfile.mkdtemp(prefix="labelflow-robustness-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        ctx = build_fixture(root / "base", cfg.rows)
        with ThreadPoolExecutor(max(1, cfg.jobs)) as pool:
            results = list(pool.map(lambda c: run_case(ctx, c, root / "cases", cfg.timeout), selected))
    finally:
        if not cfg.workdir:
            subprocess.run(["chmod", "-R", "u+rwX", str(root)], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
    counts = {k: sum(r.outcome == k for r in results) for k in CLASSES}
    for r in results:
        if r.outcome in FAILING or cfg.show_all:
            owner = f" [{r.owner}]" if r.owner else ""
            print(f"{r.outcome:12s} {r.case.name}{owner}: labelflow {r.case.argv}\n    {r.detail}")
    report = {"cases": len(results), **counts, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(report))
    return {"report": report, "results": results}


if __name__ == "__main__":
    main(make_parser().parse_args())
