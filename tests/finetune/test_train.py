"""Training a tiny BERT built from a config on the CPU: the loss falls, the run folder is complete, bad input
raises clear errors, and a killed run resumes to the same metrics."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from labelflow.finetune import FinetuneError, finetune, load_student, predict  # noqa: E402
from labelflow.finetune.checkpoint import read_checkpoint  # noqa: E402
from labelflow.finetune.model import resolve_base_model  # noqa: E402
from labelflow.finetune.run_folder import CHECKPOINT  # noqa: E402
from labelflow.labelmodels.base import probs_to_preds, tied_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
METRIC_KEYS = {"accuracy", "accuracy_covered", "macro_f1", "per_class_f1", "coverage", "tied", "n", "n_covered",
               "per_class"}


def layout(obj):
    """The nested key structure of a JSON document (values dropped, list entries by their layout)."""
    if isinstance(obj, dict):
        return {k: layout(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [layout(v) for v in obj[:1]]
    return type(obj).__name__ if obj is not None else None


def test_full_fine_tuning_loss_falls_and_run_folder_is_complete(tmp_path, export, tiny_config):
    run = tmp_path / "run"
    result = finetune(export(), out=run, config=tiny_config(method="full", epochs=4), task="tiny")
    m = result.metrics
    losses = [h["train_loss"] for h in m["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1
    assert m["dev"]["student"]["accuracy"] >= 0.8 and m["test"]["student"]["accuracy"] >= 0.8
    for split in ("dev", "test"):
        assert set(m[split]["student"]) == METRIC_KEYS and set(m[split]["label_model"]) == METRIC_KEYS
        assert m[split]["rows"] == 16
    # the label model is scored on the same rows as `labelflow fit` scores it: the prediction policy's class on every
    # row, ties broken and not counted wrong (this fixture is an export from before the policy: its pred is -1 on
    # uncovered rows, which finetune decides by the policy: argmax, ties by the hash of the row's position)
    frame = export()
    probs = frame.select("prob_HAM", "prob_SPAM").to_numpy()
    pred = np.where(frame["pred"].to_numpy() == -1, probs_to_preds(probs, tie_policy="random"), frame["pred"].to_numpy())
    rows = (frame["split"] == "test").to_numpy()
    right, covered = pred[rows] == frame["label"].to_numpy()[rows], frame["covered"].to_numpy()[rows]
    lm, student = m["test"]["label_model"], m["test"]["student"]
    assert (~covered).any() and tied_rows(probs)[rows][~covered].all()
    assert lm["accuracy"] == pytest.approx(float(right.mean())) and lm["n"] == 16
    assert lm["accuracy_covered"] == pytest.approx(float(right[covered].mean())) == 1.0
    assert lm["coverage"] == pytest.approx(float(covered.mean())) and lm["n_covered"] == int(covered.sum())
    assert lm["tied"] == pytest.approx(float(tied_rows(probs)[rows].mean()))
    assert m["test"]["uncovered"] == {**m["test"]["uncovered"], "rows": int((~covered).sum()),
                                      "label_model_accuracy": pytest.approx(float(right[~covered].mean()))}
    # the student labels every row
    assert student["coverage"] == 1.0 and student["accuracy_covered"] == student["accuracy"] and student["tied"] is None
    assert m["train"]["steps"] == 24 and m["train"]["samples_per_s"] > 0 and m["train"]["tokens_per_s"] > 0
    assert m["best"]["step"] in [h["step"] for h in m["history"]]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "finetune.json", "metrics.json", "README.md",
                 "labels.parquet", "train.log", "progress.json", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    assert not (run / "adapter").exists()  # full fine-tuning has no adapter
    assert json.loads((run / "finetune.json").read_text())["status"] == "complete"
    progress = json.loads((run / "progress.json").read_text())
    assert progress == {**progress, "status": "complete", "step": 24, "total_steps": 24, "epoch": 4.0,
                        "dev_accuracy": m["history"][-1]["dev_accuracy"]}
    assert progress["loss"] > 0 and progress["samples_per_s"] > 0
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(m))
    card = (run / "README.md").read_text()
    assert "# tiny: a student classifier distilled by labelflow" in card and "| test | 16 | student |" in card
    assert f"| test | 16 | label model | {lm['accuracy']:.3f} | {lm['accuracy_covered']:.3f} | {lm['coverage']:.3f} |" in card
    assert "count as wrong" not in card and "On the rows no LF voted on: dev (" in card
    assert "samples/s" in (run / "train.log").read_text()


def test_lora_trains_only_adapters_and_head_and_the_merged_model_predicts(tmp_path, export, tiny_config, tiny_model):
    from transformers import AutoModelForSequenceClassification

    run = tmp_path / "run"
    result = finetune(export(), out=run, config=tiny_config(lr=2e-2, epochs=6, lora_r=8))
    m = result.metrics
    assert m["lora"] == {"r": 8, "alpha": 32.0, "dropout": 0.1, "target_modules": ["query", "key", "value", "dense"]}
    assert m["train"]["trainable_parameters"] < m["train"]["parameters"] / 2
    losses = [h["train_loss"] for h in m["history"]]
    assert min(losses[-2:]) < losses[0]
    assert (run / "adapter" / "adapter_model.safetensors").is_file() and (run / "adapter" / "adapter_config.json").is_file()
    # the merged folder loads without peft, and its base weights differ from the base model's only where LoRA merged
    merged = AutoModelForSequenceClassification.from_pretrained(run)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    merged_sd, base_sd = merged.state_dict(), base.state_dict()
    assert torch.equal(merged_sd["bert.embeddings.word_embeddings.weight"], base_sd["bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(merged_sd["bert.encoder.layer.0.attention.self.query.weight"],
                           base_sd["bert.encoder.layer.0.attention.self.query.weight"])
    assert merged.config.id2label == {0: "HAM", 1: "SPAM"}
    # predictions of the merged model equal the student's scores in metrics.json
    frame = export()
    preds = predict(run, frame.filter(pl.col("split") == "test"))
    assert preds.columns == ["id", "split", "pred", "pred_name", "prob_HAM", "prob_SPAM"]
    gold = frame.filter(pl.col("split") == "test")["label"].to_numpy()
    assert float(np.mean(preds["pred"].to_numpy() == gold)) == pytest.approx(m["test"]["student"]["accuracy"])
    assert np.allclose(preds.select("prob_HAM", "prob_SPAM").to_numpy().sum(axis=1), 1)
    texts = predict(load_student(run, device="cpu"), ["subscribe channel free money", "love song great voice"])
    assert texts["id"].to_list() == ["0", "1"] and texts["pred_name"].dtype == pl.String


def test_weighting_and_drop_uncovered_train_on_fewer_rows(tmp_path, export, tiny_config):
    m = finetune(export(), out=tmp_path / "run", config=tiny_config(method="full", epochs=1, drop_uncovered=True,
                                                                    weighting="margin")).metrics
    assert m["train"]["train_kept"] == m["train"]["train_rows"] - m["train"]["dropped_uncovered"] < 48


def test_no_dev_gold_keeps_the_last_checkpoint(tmp_path, export, tiny_config):
    frame = export().with_columns(pl.when(pl.col("split") == "dev").then(None).otherwise(pl.col("label"))
                                  .alias("label"))
    m = finetune(frame, out=tmp_path / "run", config=tiny_config(epochs=2)).metrics
    assert m["dev"] is None and m["best"]["step"] == m["train"]["steps"] and m["test"]["rows"] == 16


def test_early_stopping(tmp_path, export, tiny_config):
    m = finetune(export(), out=tmp_path / "run", config=tiny_config(epochs=30, lr=1e-6, patience=2,
                                                                    select="accuracy")).metrics
    assert m["train"]["steps"] < 30 * 6 and len(m["history"]) >= 3


def test_grad_accum_counts_optimizer_steps(tmp_path, export, tiny_config):
    m = finetune(export(), out=tmp_path / "run", config=tiny_config(epochs=2, batch_size=4, grad_accum=3)).metrics
    assert m["train"]["steps"] == 2 * 4  # 12 micro-batches of 4 per epoch, 3 per step


# --- bad input -------------------------------------------------------------------------------------


def test_base_model_that_cannot_be_found(tmp_path, export, tiny_config):
    with pytest.raises(FinetuneError, match=r"base model '/no/such/model' cannot be found: no such folder"):
        finetune(export(), out=tmp_path / "a", config=tiny_config(base_model="/no/such/model"))
    with pytest.raises(FinetuneError, match=r"base model 'nobody/not-a-model-xyz' cannot be found: not a local folder "
                                            r"and not in the local Hugging Face cache"):
        resolve_base_model("nobody/not-a-model-xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FinetuneError, match="is not a transformers model folder"):
        resolve_base_model(str(tmp_path / "empty"))


def test_base_model_without_classification_head(tmp_path, export, tiny_config):
    from transformers import CLIPConfig

    folder = tmp_path / "clip"
    CLIPConfig().save_pretrained(folder)
    with pytest.raises(FinetuneError) as info:
        finetune(export(), out=tmp_path / "run", config=tiny_config(base_model=str(folder)))
    assert "(model_type 'clip') has no sequence-classification head in transformers" in str(info.value)


def test_export_with_fewer_classes_than_the_schema(tmp_path, export, tiny_config):
    with pytest.raises(FinetuneError, match=r"missing \['prob_OTHER'\]"):
        finetune(export(), out=tmp_path / "run", config=tiny_config(), classes=["HAM", "SPAM", "OTHER"])
    assert not (tmp_path / "run").exists()


def test_no_rows_left_after_filtering(tmp_path, export, tiny_config):
    with pytest.raises(FinetuneError, match="no training rows left after filtering"):
        finetune(export(), out=tmp_path / "run", config=tiny_config(min_confidence=0.99))


def test_run_folder_checks(tmp_path, export, tiny_config, tiny_model):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(FinetuneError, match="is not empty and holds no fine-tuning run"):
        finetune(export(), out=busy, config=tiny_config())
    run = tmp_path / "run"
    finetune(export(), out=run, config=tiny_config(epochs=1))
    with pytest.raises(FinetuneError, match=r"already holds a run \(status 'complete'\); resume it with resume=True"):
        finetune(export(), out=run, config=tiny_config(epochs=1))
    # a resume of a different task: other classes, other labels, other training options
    other = export(classes=("NEG", "POS"))
    with pytest.raises(FinetuneError, match=r"it is a run of a different task \(classes \['HAM', 'SPAM'\], here "
                                            r"\['NEG', 'POS'\]\)"):
        finetune(other, out=run, config=tiny_config(epochs=1), resume=True)
    with pytest.raises(FinetuneError, match="it was trained on different texts or soft labels"):
        finetune(export(seed=1), out=run, config=tiny_config(epochs=1), resume=True)
    with pytest.raises(FinetuneError, match=r"with different training options lr=0.005→0.001"):
        finetune(export(), out=run, config=tiny_config(epochs=1, lr=1e-3), resume=True)
    shutil.copytree(tiny_model, tmp_path / "other-model")
    with pytest.raises(FinetuneError, match="different task .*base model"):
        finetune(export(), out=run, config=tiny_config(epochs=1, base_model=str(tmp_path / "other-model")), resume=True)
    # resuming a finished run writes it out again, with the labels it started with
    again = finetune(None, out=run, config=tiny_config(epochs=1, log_every=3), resume=True)
    assert again.resumed_from == again.metrics["train"]["steps"]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, export, tiny_model, kill_when):
    from labelflow.cli import main

    labels = tmp_path / "labels.parquet"
    export(n_train=400).write_parquet(labels)
    args = ["finetune", "--labels", str(labels), "--base-model", str(tiny_model), "--epochs", "6", "--batch-size", "8",
            "--lr", "5e-3", "--max-length", "32", "--device", "cpu", "--patience", "0", "--checkpoint-every", "20",
            "--cpu-threads", "1", "--json"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    checkpoint = killed / CHECKPOINT
    kill_when([sys.executable, "-m", "labelflow", *args, "--out", str(killed)], checkpoint.is_file, cwd=REPO)
    assert not (killed / "metrics.json").exists()
    assert json.loads((killed / "finetune.json").read_text())["status"] == "training"
    ckpt = read_checkpoint(checkpoint)  # safetensors + JSON: nothing unpickled
    assert 0 < ckpt["state"]["step"] < 300
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert main([*args, "--out", str(reference)]) == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    full = json.loads((reference / "metrics.json").read_text())
    assert resumed["train"]["resumed_from"] == ckpt["state"]["step"] and full["train"]["resumed_from"] is None
    assert layout(resumed) == layout({**full, "train": {**full["train"], "resumed_from": 0}})
    assert resumed["train"]["steps"] == full["train"]["steps"] == 300
    # same batches, same RNG: the resumed run learns what the uninterrupted one did
    assert resumed["test"]["student"]["accuracy"] == full["test"]["student"]["accuracy"]
    assert [h["dev_loss"] for h in resumed["history"]] == pytest.approx([h["dev_loss"] for h in full["history"]],
                                                                        rel=1e-4)
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in reference.iterdir())


# --- GPU -------------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@gpu
def test_gpu_bf16_training(tmp_path, export, tiny_config):
    m = finetune(export(), out=tmp_path / "run", config=tiny_config(method="full", device="cuda", epochs=4)).metrics
    assert m["train"]["device"].startswith("cuda") and m["train"]["precision"] == "bfloat16"
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < losses[0]
    preds = predict(tmp_path / "run", ["subscribe channel free", "love song"], device="cuda")
    assert preds.height == 2


@pytest.mark.gpu
@gpu
def test_gpu_compile_and_fp32(tmp_path, export, tiny_config):
    m = finetune(export(), out=tmp_path / "run", config=tiny_config(device="cuda", precision="fp32", compile=True,
                                                                    epochs=1)).metrics
    assert m["train"]["precision"] == "fp32" and m["train"]["steps"] == 6


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, export, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(FinetuneError, match="device='cuda' but torch sees no CUDA GPU"):
        finetune(export(), out=tmp_path / "run", config=tiny_config(device="cuda"))


# --- issue 14, item 6: a checkpoint is data, never code -------------------------------------------------------


class _Payload:
    """Unpickling this runs ``open(marker, 'w').write('ran')``: what a crafted pickle checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_item6_a_crafted_checkpoint_does_not_run_code(tmp_path, export, tiny_config):
    run = tmp_path / "run"
    finetune(export(), out=run, config=tiny_config(epochs=1))
    marker = tmp_path / "payload-ran"
    crafted = {"format": 1, "model": _Payload(marker), "state": {"step": 0}}
    # a pickle where a checkpoint of the old format (last.pt) was, and one where the checkpoint is
    for name in ("last.pt", "last.safetensors"):
        for old in (run / "checkpoints").iterdir():
            old.unlink()
        torch.save(crafted, run / "checkpoints" / name)
        try:
            finetune(None, out=run, config=tiny_config(epochs=1), resume=True)
            error = None
        except Exception as exc:  # noqa: BLE001 - which error it is is checked below, after the payload
            error = f"{type(exc).__name__}: {exc}"
        assert not marker.exists(), f"reading checkpoints/{name} ran its payload"
        assert error is not None and error.startswith("FinetuneError: cannot read checkpoint"), error


def test_item6_checkpoints_are_safetensors_with_json_state(tmp_path, export, tiny_config):
    from safetensors import safe_open

    from labelflow.finetune.checkpoint import METADATA_KEY

    run = tmp_path / "run"
    result = finetune(export(), out=run, config=tiny_config(epochs=2))
    path = run / CHECKPOINT
    assert path.name == "last.safetensors" and not (run / "checkpoints" / "last.pt").exists()
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        names = set(f.keys())
    assert meta["format"] == 1 and meta["state"]["step"] == result.metrics["train"]["steps"] == 12
    # weights, optimizer moments, RNG state: tensors in the safetensors part; options and positions: JSON
    assert any(n.startswith("model/") for n in names) and any(n.startswith("optimizer/state/") for n in names)
    assert "rng/torch" in names and meta["optimizer"]["param_groups"][0]["lr"] >= 0
    ckpt = read_checkpoint(path)
    assert ckpt["state"]["step"] == 12 and ckpt["rng"]["torch"].dtype == torch.uint8
    assert isinstance(ckpt["optimizer"]["param_groups"][0]["betas"], tuple)
    assert set(ckpt["optimizer"]["state"]) == set(range(len(ckpt["optimizer"]["state"])))  # integer keys come back
    # resuming the finished run reads it back and writes the same metrics
    again = finetune(None, out=run, config=tiny_config(epochs=2), resume=True)
    assert again.resumed_from == 12 and again.metrics["test"] == json.loads(json.dumps(result.metrics["test"]))
