"""Tiny shared fixtures: a 4-row frame, a 2-class schema, the shipped YouTube data, a tiny project, and for the
fine-tuner a tiny BERT built from a config (no download) with small exports of soft labels."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import load_dataset

REPO = Path(__file__).resolve().parents[1]
YOUTUBE = REPO / "data" / "youtube"
HAM, SPAM = 0, 1


@pytest.fixture(scope="session", autouse=True)
def labelflow_home(tmp_path_factory):
    """Trust records and confirmed Label Studio URLs (:mod:`labelflow.trust`) go to a folder of this test session
    (``$LABELFLOW_HOME``, which the app's and the CLI's subprocesses inherit), never to the user's own."""
    before = os.environ.get("LABELFLOW_HOME")
    os.environ["LABELFLOW_HOME"] = str(tmp_path_factory.mktemp("labelflow-home"))
    yield Path(os.environ["LABELFLOW_HOME"])
    if before is None:
        os.environ.pop("LABELFLOW_HOME", None)
    else:
        os.environ["LABELFLOW_HOME"] = before


@pytest.fixture
def tiny_frame() -> pl.DataFrame:
    """Four comments with an author and a nullable numeric column."""
    return pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["Check out my channel!", "I love this song", "FREE cash at www.win.com", "mystery song"],
            "author": ["bot1", "ann", "bot2", "bob"],
            "likes": [3, 120, None, 45],
        }
    )


@pytest.fixture
def tiny_dataset(tiny_frame):
    return load_dataset(tiny_frame, classes=["HAM", "SPAM"], id="id")


@pytest.fixture(scope="session")
def youtube():
    """All five YouTube files: 1,956 rows, 1,953 once the three exact duplicates are dropped."""
    files = sorted(YOUTUBE.glob("Youtube0*.csv"))
    return load_dataset(files, classes=["HAM", "SPAM"], text="CONTENT", id="COMMENT_ID", label="label",
                        duplicates="drop_identical")


@pytest.fixture
def write_csv(tmp_path):
    """Write text to ``tmp_path/name`` and return its path."""

    def write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


# --- a tiny project: 8 train, 4 dev, 4 test rows and a 5-LF suite -------------------------------------

PROJECT_DATA = {
    "train": [("t0", "subscribe to my channel", 1), ("t1", "love this song", 0), ("t2", "free cash http://x.com", 1),
              ("t3", "great song", 0), ("t4", "check out http://spam.com", 1), ("t5", "song of the year", 0),
              ("t6", "subscribe please", 1), ("t7", "nice", 0)],
    "dev": [("d0", "free subscribe", 1), ("d1", "love it song", 0), ("d2", "http://a.com", 1),
            ("d3", "best song ever", 0)],
    "test": [("s0", "subscribe now free", 1), ("s1", "this song rocks", 0), ("s2", "visit http://b.com", 1),
             ("s3", "ok", 0)],
}
PROJECT_SUITE = '''\
from labelflow import ABSTAIN, keyword_lf, labeling_function, regex_lf

kw_sub = keyword_lf("kw_sub", ["subscribe"], label=1)
kw_link = regex_lf("kw_link", r"https?://", label=1)
kw_free = keyword_lf("kw_free", ["free"], label=1)
kw_song = keyword_lf("kw_song", ["song"], label=0)


@labeling_function()
def py_short(x):
    return 0 if len(x.text) <= 4 else ABSTAIN
'''
PROJECT_LFS = ("kw_sub", "kw_link", "kw_free", "kw_song", "py_short")
# rows in file order (train, dev, test); columns in PROJECT_LFS order
PROJECT_MATRIX = [
    [1, -1, -1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, 1, -1, -1], [-1, -1, -1, 0, -1],
    [-1, 1, -1, -1, -1], [-1, -1, -1, 0, -1], [1, -1, -1, -1, -1], [-1, -1, -1, -1, 0],
    [1, -1, 1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, -1, -1, -1], [-1, -1, -1, 0, -1],
    [1, -1, 1, -1, -1], [-1, -1, -1, 0, -1], [-1, 1, -1, -1, -1], [-1, -1, -1, -1, 0],
]


@pytest.fixture
def project_files(tmp_path) -> dict[str, Path]:
    """``train.csv``, ``dev.csv``, ``test.csv`` (id, text, label, author) and ``suite.py`` in ``tmp_path/src``."""
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for split, rows in PROJECT_DATA.items():
        frame = pl.DataFrame({"id": [r[0] for r in rows], "text": [r[1] for r in rows],
                              "label": [r[2] for r in rows], "author": [f"user{i}" for i in range(len(rows))]})
        files[split] = src / f"{split}.csv"
        frame.write_csv(files[split])
    files["suite"] = src / "suite.py"
    files["suite"].write_text(PROJECT_SUITE)
    return files


@pytest.fixture
def project(tmp_path, project_files):
    """An initialised project (train labels hidden, majority vote by default) in ``tmp_path/proj``."""
    from labelflow.project import Project

    return Project.init(tmp_path / "proj", sources={s: [project_files[s]] for s in ("train", "dev", "test")},
                        classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                        lfs=project_files["suite"], label_model="majority_vote")


@pytest.fixture
def expected():
    """The tiny project's suite source, LF names and hand-written ``[16, 5]`` label matrix."""
    import types

    return types.SimpleNamespace(suite=PROJECT_SUITE, lfs=PROJECT_LFS, matrix=PROJECT_MATRIX)


# --- the fine-tuner: a tiny BERT built from a config, and exports of soft labels over two separable vocabularies
HAM_WORDS = ["love", "song", "great", "voice", "beautiful", "music", "dance", "best", "video", "amazing"]
SPAM_WORDS = ["subscribe", "channel", "check", "free", "money", "click", "link", "win", "visit", "promo"]
FILLER = ["the", "this", "is", "my", "a", "to", "and", "you", "it", "so"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *HAM_WORDS, *SPAM_WORDS, *FILLER]


def make_texts(n: int, label: int, rng: np.random.Generator) -> list[str]:
    words = SPAM_WORDS if label else HAM_WORDS
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 12))
        out.append(" ".join(rng.choice(words if rng.random() < 0.6 else FILLER) for _ in range(k)))
    return out


def make_export(n_train: int = 48, n_dev: int = 16, n_test: int = 16, *, seed: int = 0,
                classes: tuple[str, ...] = ("HAM", "SPAM")) -> pl.DataFrame:
    """An export: balanced rows of two classes; train gold hidden, soft labels right with 0.8–0.95
    confidence; the label model's ``pred`` abstains (-1) on a few uncovered rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        for i in range(n):
            y = i % 2
            text = make_texts(1, y, rng)[0]
            covered = rng.random() > 0.15
            conf = rng.uniform(0.8, 0.95) if covered else 0.5
            p = [conf, 1 - conf] if y == 0 else [1 - conf, conf]
            rows.append({"id": f"{split}{i}", "text": text, "split": split, "label": None if split == "train" else y,
                         "prob_HAM": p[0], "prob_SPAM": p[1], "pred": y if covered else -1, "covered": covered})
    frame = pl.DataFrame(rows, schema_overrides={"label": pl.Int16, "pred": pl.Int16})
    if classes != ("HAM", "SPAM"):
        frame = frame.rename({"prob_HAM": f"prob_{classes[0]}", "prob_SPAM": f"prob_{classes[1]}"})
    return frame


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A folder holding a randomly initialised 2-layer BERT (hidden 32) with a classification head and a
    word-piece tokenizer over :data:`VOCAB`, built offline from a config."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def export():
    """:func:`make_export`, for tests to call."""
    return make_export


@pytest.fixture
def tiny_config(tiny_model):
    """A :class:`FinetuneConfig` factory on the tiny model: CPU, no progress bar, short runs."""
    from labelflow.finetune import FinetuneConfig

    def make(**overrides):
        opts = {"base_model": str(tiny_model), "epochs": 3, "batch_size": 8, "lr": 5e-3, "max_length": 32,
                "device": "cpu", "progress": False, "patience": None, "eval_batch_size": 32}
        return FinetuneConfig(**{**opts, **overrides})

    return make


@pytest.fixture
def stop_runs_after():
    """Register a project with it; at teardown every run of the project still training is stopped (a test that
    failed while waiting leaves no process behind)."""
    projects = []
    yield projects.append
    from labelflow.finetune.runs import list_runs, stop_run

    for project in projects:
        for run in list_runs(project):
            if run.status == "training":
                stop_run(project, run.name)


@pytest.fixture
def wait_for_step():
    """``wait(project, name, step, timeout=240)``: poll until a run's progress reaches ``step`` and its checkpoint
    exists; returns its :class:`~labelflow.finetune.runs.RunInfo`."""
    import time

    from labelflow.finetune.run_folder import CHECKPOINT
    from labelflow.finetune.runs import run_info

    def wait(project, name: str, step: int, timeout: float = 240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = run_info(project, name)
            assert info.status == "training", info
            if (info.progress or {}).get("step", 0) >= step and (info.path / CHECKPOINT).is_file():
                return info
            time.sleep(0.05)
        raise AssertionError(f"run {name!r} did not reach step {step} in {timeout} s")

    return wait


def _kill_when(cmd: list[str], ready: Callable[[], bool], *, cwd: Path, timeout: float = 300) -> None:
    """Run ``cmd`` and SIGKILL it as soon as ``ready()`` holds; fail unless it was killed mid-way."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (rc {proc.returncode}): {err[-2000:]!r}"


@pytest.fixture
def kill_when():
    """:func:`_kill_when`: run a command and SIGKILL it once a condition holds (a killed-run test's first half)."""
    return _kill_when


@pytest.fixture
def failing_model():
    """A registered label model that raises in fit; unregistered afterwards."""
    from labelflow.labelmodels import LabelModel, register_label_model
    from labelflow.labelmodels.base import _REGISTRY

    @register_label_model
    class Failing(LabelModel):
        name = "failing_for_test"

        def _fit(self, L, *, L_dev, y_dev, class_balance, progress):
            raise RuntimeError("this model always fails")

        def _predict_proba(self, L):
            raise AssertionError("never fitted")

        def _state(self):
            return {}, {}

        @classmethod
        def _from_state(cls, cardinality, seed, config, arrays):
            return cls(cardinality, seed=seed)

    yield Failing.name
    del _REGISTRY[Failing.name]
