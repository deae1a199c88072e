"""Fixtures of the fine-tuner tests: a tiny BERT built from a config (no download), and small exports of
soft labels over two separable vocabularies."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

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
    from finetune import FinetuneConfig

    def make(**overrides):
        opts = {"base_model": str(tiny_model), "epochs": 3, "batch_size": 8, "lr": 5e-3, "max_length": 32,
                "device": "cpu", "progress": False, "patience": None, "eval_batch_size": 32}
        return FinetuneConfig(**{**opts, **overrides})

    return make
