"""FinetuneConfig validation, reading exports, row filtering, length-grouped batches and padding."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labelflow.finetune import LORA_DEFAULTS, FinetuneConfig, FinetuneError, read_soft_labels
from labelflow.finetune.data import LengthGroupedBatches, collate
from labelflow.finetune.optim import lr_schedule
from labelflow.finetune.rows import select_rows
from labelflow.labelmodels import probs_to_preds

# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "qlora"}, "method must be 'lora' or 'full'; got 'qlora'"),
    ({"weighting": "sharp"}, "weighting must be 'none', 'max_prob', 'margin' or 'entropy'; got 'sharp'"),
    ({"select": "f1"}, "select must be 'accuracy', 'macro_f1' or 'loss'; got 'f1'"),
    ({"device": "tpu"}, "device must be 'auto', 'cpu' or 'cuda'; got 'tpu'"),
    ({"batch_size": 0}, "batch_size must be an integer ≥ 1; got 0"),
    ({"epochs": 2.5}, "epochs must be an integer ≥ 1; got 2.5"),
    ({"grad_accum": True}, "grad_accum must be an integer ≥ 1; got True"),
    ({"lr": 2.0}, "lr must be a number in (0, 1); got 2.0"),
    ({"lora_r": 0}, "lora_r must be an integer ≥ 1; got 0"),
    ({"lora_dropout": 1.0}, "lora_dropout must be a number in [0, 1); got 1.0"),
    ({"lora_target_modules": "query"}, "lora_target_modules must be a non-empty sequence of module names; got 'query'"),
    ({"max_length": 4}, "max_length must be ≥ 8 tokens; got 4"),
    ({"min_confidence": 1.5}, "min_confidence must be a number in [0, 1]; got 1.5"),
    ({"warmup_ratio": -0.1}, "warmup_ratio must be a number in [0, 1); got -0.1"),
    ({"base_model": " "}, "base_model must be a model name, folder or Hugging Face id; got ' '"),
    ({"method": "full", "lora_r": 8}, "method='full' trains every weight; the LoRA options ['lora_r'] apply only"),
    ({"cpu_threads": 0}, "cpu_threads must be an integer ≥ 1; got 0"),
])
def test_config_errors_name_argument_and_value(kwargs, message):
    with pytest.raises(FinetuneError) as info:
        FinetuneConfig(**kwargs)
    assert message in str(info.value)


def test_lora_defaults_per_architecture_and_overrides():
    cfg = FinetuneConfig()
    assert cfg.lora_settings("bert") == {"r": 16, "alpha": 32.0, "dropout": 0.1,
                                         "target_modules": ["query", "key", "value", "dense"]}
    assert cfg.lora_settings("llama")["target_modules"] == LORA_DEFAULTS["llama"]["target_modules"]
    assert cfg.lora_settings("some_new_arch")["target_modules"] == "all-linear"
    custom = FinetuneConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=["query"])
    assert custom.lora_target_modules == ("query",)
    assert custom.lora_settings("bert") == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query"]}
    assert cfg.learning_rate == 1e-3 and FinetuneConfig(method="full").learning_rate == 5e-5
    assert FinetuneConfig(lr=1e-3).learning_rate == 1e-3


def test_config_round_trips_and_rejects_unknown_keys():
    cfg = FinetuneConfig(lora_target_modules=("query", "value"), epochs=2)
    assert FinetuneConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(FinetuneError, match=r"unknown fine-tuning option\(s\) \['epoch'\]"):
        FinetuneConfig.from_dict({"epoch": 3})


def test_lr_schedule():
    cosine = lr_schedule(FinetuneConfig(warmup_ratio=0.0, scheduler="cosine"), 4)
    assert [round(cosine(s), 3) for s in range(4)] == [1.0, 0.854, 0.5, 0.146]
    constant = lr_schedule(FinetuneConfig(warmup_ratio=0.5, scheduler="constant"), 4)
    assert [round(constant(s), 3) for s in range(4)] == [0.333, 0.667, 1.0, 1.0]


# --- reading exports ---------------------------------------------------------------------------------


def test_reads_an_export_file_and_frame(export, tmp_path):
    frame = export()
    path = tmp_path / "labels.parquet"
    frame.write_parquet(path)
    for source in (frame, path, frame.to_pandas()):
        data = read_soft_labels(source, classes=["HAM", "SPAM"])
        assert data.class_names == ("HAM", "SPAM") and len(data) == 80
        assert data.probs.shape == (80, 2) and np.allclose(data.probs.sum(axis=1), 1)
        assert (data.gold[data.split == "train"] == -1).all() and (data.gold[data.split == "dev"] >= 0).all()
        # the fixture's pred is from before the prediction policy (-1 on uncovered rows): those rows get the
        # policy's class (their probabilities tie, so the hash of the row's position decides); the rest are kept
        given = frame["pred"].to_numpy()
        policy = probs_to_preds(data.probs, tie_policy="random")
        assert data.lm_pred.tolist() == np.where(given == -1, policy, given).tolist()
        assert (data.lm_pred >= 0).all() and data.covered is not None
        assert data.tied.tolist() == (given == -1).tolist()  # the uncovered rows are the 0.5/0.5 ties


def test_an_export_by_the_prediction_policy_is_read_as_it_is(export):
    """``labelflow export`` writes a class in pred on every row (ties broken) and a tied column: both are kept,
    and the run's labels.parquet carries them on."""
    frame = export()
    probs = frame.select("prob_HAM", "prob_SPAM").to_numpy()
    tied = ~frame["covered"]
    frame = frame.with_columns(pl.Series("pred", probs_to_preds(probs, tie_policy="random"), dtype=pl.Int16),
                               tied.alias("tied"))
    # a tie broken the other way than this export's own hash would: still taken from pred, as export wrote it
    flipped = frame.with_columns(pl.when(pl.col("id") == "test0").then(1 - pl.col("pred")).otherwise(pl.col("pred"))
                                 .alias("pred"))
    for source in (frame, flipped):
        data = read_soft_labels(source)
        assert data.lm_pred.tolist() == source["pred"].to_list() and data.tied.tolist() == tied.to_list()
        written = data.to_frame()
        assert written.columns == ["id", "text", "split", "label", "prob_HAM", "prob_SPAM", "pred", "covered", "tied"]
        assert written["pred"].to_list() == source["pred"].to_list() and written["tied"].to_list() == tied.to_list()


def test_csv_and_jsonl_and_label_names(export, tmp_path):
    frame = export().with_columns(pl.col("label").replace_strict({0: "HAM", 1: "SPAM"}, default=None,
                                                                 return_dtype=pl.String))
    frame.write_csv(tmp_path / "a.csv")
    frame.write_ndjson(tmp_path / "a.jsonl")
    for name in ("a.csv", "a.jsonl"):
        data = read_soft_labels(tmp_path / name)
        assert data.gold[data.split == "dev"].tolist() == [i % 2 for i in range(16)]


def test_export_with_fewer_classes_than_the_schema(export):
    with pytest.raises(FinetuneError) as info:
        read_soft_labels(export(), classes=["HAM", "SPAM", "OTHER"])
    msg = str(info.value)
    assert "probabilities for classes ['HAM', 'SPAM'] but the task's classes are ['HAM', 'SPAM', 'OTHER']" in msg
    assert "missing ['prob_OTHER']" in msg
    with pytest.raises(FinetuneError, match="needs a prob_<class> column for each of ≥ 2 classes"):
        read_soft_labels(export().drop("prob_SPAM"))


@pytest.mark.parametrize(("change", "message"), [
    (pl.col("prob_HAM").alias("prob_HAM") * 2, "must sum to 1 on every row; row 0 (id 'train0') sums to"),
    (pl.when(pl.col("id") == "train3").then(None).otherwise(pl.col("prob_HAM")).alias("prob_HAM"),
     "column 'prob_HAM' is null or not finite at row 3 (id 'train3')"),
    (pl.when(pl.col("id") == "dev1").then(None).otherwise(pl.col("text")).alias("text"),
     "column 'text' is null at row 49 (id 'dev1')"),
    (pl.when(pl.col("id") == "dev0").then(7).otherwise(pl.col("label")).alias("label"),
     "column 'label' is 7 at row 48, outside the classes 0..1"),
])
def test_bad_exports_name_column_and_row(export, change, message):
    with pytest.raises(FinetuneError) as info:
        read_soft_labels(export().with_columns(change))
    assert message in str(info.value)


def test_missing_text_column_and_file(export, tmp_path):
    with pytest.raises(FinetuneError, match="has no text column 'CONTENT'; its columns are"):
        read_soft_labels(export(), text="CONTENT")
    with pytest.raises(FinetuneError, match="does not exist"):
        read_soft_labels(tmp_path / "nope.parquet")
    with pytest.raises(FinetuneError, match="unsupported file type ..xlsx.; expected one of"):
        (tmp_path / "x.xlsx").write_text("")
        read_soft_labels(tmp_path / "x.xlsx")


def test_without_split_or_pred_every_row_trains_and_ties_are_broken():
    frame = pl.DataFrame({"text": ["a", "b", "c"], "prob_X": [0.9, 0.5, 0.2], "prob_Y": [0.1, 0.5, 0.8]})
    data = read_soft_labels(frame)
    assert data.split.tolist() == ["train"] * 3 and data.covered is None
    # the prediction policy: argmax, the tie on row 1 broken by the hash of its position (as Project.predictions)
    assert data.lm_pred.tolist() == probs_to_preds(data.probs, tie_policy="random").tolist()
    assert data.lm_pred[[0, 2]].tolist() == [0, 1] and data.lm_pred[1] in (0, 1)
    assert data.tied.tolist() == [False, True, False]


def test_filters_and_no_rows_left(export):
    frame = export()
    data = read_soft_labels(frame)
    rows = select_rows(data, FinetuneConfig(drop_uncovered=True, min_confidence=0.85))
    uncovered = int((~frame.filter(pl.col("split") == "train")["covered"]).sum())
    assert rows.counts["dropped_uncovered"] == uncovered
    assert rows.counts["train_kept"] == int(rows.train.sum()) < 48 - uncovered
    assert (data.probs[rows.train].max(axis=1) >= 0.85).all() and data.covered[rows.train].all()
    assert rows.counts["dev_rows"] == 16 and rows.counts["test_rows"] == 16
    with pytest.raises(FinetuneError) as info:
        select_rows(data, FinetuneConfig(min_confidence=0.99))
    assert "no training rows left after filtering: 48 train rows, dropped 48 low confidence" in str(info.value)
    with pytest.raises(FinetuneError, match="needs the export's 'covered' column"):
        select_rows(read_soft_labels(frame.drop("covered")), FinetuneConfig(drop_uncovered=True))
    with pytest.raises(FinetuneError, match=r"no rows in split 'train' to train on; the splits are \['dev', 'test'\]"):
        select_rows(read_soft_labels(frame.filter(pl.col("split") != "train")), FinetuneConfig())


# --- batches -----------------------------------------------------------------------------------------


def test_length_grouped_batches_cover_every_row_once_and_are_seeded():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, 1000)
    b = LengthGroupedBatches(lengths, batch_size=16, seed=3, group_size=10)
    first = b.epoch(0)
    assert len(first) == len(b) == 63
    assert sorted(np.concatenate(first).tolist()) == list(range(1000))
    assert all((x == y).all() for x, y in zip(first, b.epoch(0)))  # same seed and epoch → same batches
    assert any((x != y).any() for x, y in zip(first, b.epoch(1)) if len(x) == len(y))
    assert lengths[first[0]].max() == lengths.max()  # the longest batch comes first

    def padded(batches):
        return sum(len(x) * lengths[x].max() for x in batches)

    plain = LengthGroupedBatches(lengths, batch_size=16, seed=3, group_by_length=False).epoch(0)
    assert padded(first) < 0.75 * padded(plain)


def test_collate_pads_to_the_longest_row():
    ids = [np.array([2, 5, 3]), np.array([2, 3]), np.array([2, 6, 7, 8, 3])]
    targets = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    batch = collate(ids, np.array([1, 0]), pad_id=0, targets=targets, weights=np.array([1.0, 0.5, 0.0]))
    assert batch["input_ids"].tolist() == [[2, 3, 0], [2, 5, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch["tokens"] == 5
    assert np.allclose(batch["targets"].numpy(), [[0.2, 0.8], [0.9, 0.1]])
    assert batch["weights"].tolist() == [0.5, 1.0]
    assert collate(ids, np.array([2]), pad_id=0, pad_to_multiple_of=8)["input_ids"].shape == (1, 8)
