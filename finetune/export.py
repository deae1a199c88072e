"""Writing a finished run: metrics beside the label model's, the adapter, the merged model, a model card.

A finished run folder is a Hugging Face model folder::

    RUN_DIR/config.json, model.safetensors   the merged model (``save_pretrained``, safetensors)
    RUN_DIR/tokenizer.json, ...              its tokenizer
    RUN_DIR/adapter/                         the LoRA adapter alone (peft; LoRA runs only)
    RUN_DIR/finetune.json                    task, fine-tuning config, data fingerprint, status
    RUN_DIR/labels.parquet                   the soft labels it was trained on
    RUN_DIR/metrics.json                     dev and test metrics of the student and the label model
    RUN_DIR/README.md                        the model card
    RUN_DIR/train.log                        log lines
    RUN_DIR/checkpoints/last.safetensors     the resumable state (tensors and JSON, no pickle)
    RUN_DIR/progress.json                    the last progress (status "complete")

so ``AutoModelForSequenceClassification.from_pretrained(RUN_DIR)`` serves it
without labelflow or peft.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelflow.files import atomic_path, write_json

from finetune.evaluate import metrics
from finetune.model import quiet_transformers

if TYPE_CHECKING:
    from finetune.train import _Trainer

METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
ADAPTER_DIR = "adapter"


def export_run(tr: "_Trainer", model: Any) -> dict[str, Any]:
    """Score the best weights on dev and test, then write the run folder; returns ``metrics.json``'s contents."""
    from finetune.train import RUN_FILE, read_run

    rows, cfg, st = tr.rows, tr.cfg, tr.state
    data, names = rows.data, rows.data.class_names
    out: dict[str, Any] = {
        "format": 1,
        "task": tr.meta["task"]["name"],
        "classes": list(names),
        "base_model": cfg.base_model,
        "method": cfg.method,
        "lora": cfg.lora_settings(tr.model_type) if cfg.method == "lora" else None,
    }
    for split, mask in (("dev", rows.dev), ("test", rows.test)):
        idx = np.flatnonzero(mask)
        if not len(idx):
            out[split] = None
            continue
        probs = tr.student_probs(idx)
        pred, gold, lm_pred = probs.argmax(axis=1), data.gold[idx], data.lm_pred[idx]
        covered = None if data.covered is None else data.covered[idx]
        # the label model as `labelflow fit` scores it: its policy's class on every gold row (ties broken, not
        # counted wrong), accuracy on all rows and on the rows some LF voted on, coverage, tied; the student
        # labels every row (coverage 1; its accuracy where no LF voted is under "uncovered")
        entry: dict[str, Any] = {
            "rows": int(len(idx)),
            "student": metrics(gold, pred, class_names=names),
            "label_model": metrics(gold, lm_pred, class_names=names, covered=covered, tied=data.tied[idx]),
        }
        if covered is not None and (~covered).any():
            u = ~covered
            entry["uncovered"] = {"rows": int(u.sum()),
                                  "student_accuracy": float(np.mean(pred[u] == gold[u])),
                                  "label_model_accuracy": float(np.mean(lm_pred[u] == gold[u]))}
        out[split] = entry
    seconds = st["train_seconds"]
    out["train"] = {
        **rows.counts,
        "steps": st["step"], "total_steps": tr.total_steps, "epochs": round(st["step"] / tr.steps_per_epoch, 3),
        "seconds": round(seconds, 2),
        "samples_per_s": round(st["samples"] / seconds, 2) if seconds else None,
        "tokens_per_s": round(st["tokens"] / seconds, 1) if seconds else None,
        "trainable_parameters": tr.n_trainable, "parameters": tr.n_params,
        "device": str(tr.device), "processes": tr.world,
        "precision": str(tr.autocast_dtype).removeprefix("torch.") if tr.autocast_dtype else "fp32",
        "resumed_from": tr.resumed_from,
    }
    best = st["best"]
    out["best"] = None if best is None else {"step": best["step"], "epoch": best["epoch"], "select": cfg.select,
                                             "score": best["score"]}
    out["history"] = st["history"]

    save_model(model, tr.tokenizer, tr.run_dir, lora=cfg.method == "lora")
    write_json(tr.run_dir / METRICS_FILE, out)
    with atomic_path(tr.run_dir / CARD_FILE) as tmp:
        tmp.write_text(model_card(out, cfg.to_dict()), encoding="utf-8")
    run = read_run(tr.run_dir)
    write_json(tr.run_dir / RUN_FILE, {**run, "status": "complete"})
    return out


def save_model(model: Any, tokenizer: Any, run_dir: Path, *, lora: bool) -> None:
    """Write the adapter (LoRA only) to ``run_dir/adapter`` and the merged model and tokenizer to ``run_dir``.

    Each is written to a staging folder first and then moved into place. ``model``
    is merged in place (a peft model is unusable afterwards).
    """
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=run_dir))
    try:
        with quiet_transformers():
            if lora:
                model.save_pretrained(staging / ADAPTER_DIR)
                target = run_dir / ADAPTER_DIR
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging / ADAPTER_DIR, target)
                model = model.merge_and_unload()
            model.save_pretrained(staging / "model", safe_serialization=True)
            tokenizer.save_pretrained(staging / "model")
        for item in sorted((staging / "model").iterdir()):
            os.replace(item, run_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def model_card(m: dict[str, Any], config: dict[str, Any]) -> str:
    """The run's model card (Markdown with Hugging Face front matter) from its metrics and config."""
    classes = m["classes"]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [labelflow, weak-supervision, distillation" + (", lora" if m["method"] == "lora" else "") + "]",
        "---",
        "",
        f"# {m['task']}: a student classifier distilled by labelflow",
        "",
        f"A `{m['base_model']}` sequence classifier for the classes {', '.join(f'`{c}`' for c in classes)}, "
        f"trained ({'LoRA' if m['method'] == 'lora' else 'full fine-tuning'}) on the probabilistic labels of a "
        "labelflow label model: labeling functions voted, the label model combined their votes into soft "
        "labels, and this model learned those soft labels (soft-label cross-entropy). No training row was "
        "labelled by hand; dev gold labels chose the checkpoint, test gold labels only score it.",
        "",
        "## Results",
        "",
        "| split | rows | model | accuracy | accuracy (covered) | coverage | macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        entry = m.get(split)
        if not entry:
            continue
        for who in ("student", "label_model"):
            e = entry[who]
            lines.append(f"| {split} | {entry['rows']} | {who.replace('_', ' ')} | {e['accuracy']:.3f} | "
                         f"{_num(e.get('accuracy_covered'))} | {_num(e.get('coverage'))} | {e['macro_f1']:.3f} |")
    lines += ["", "Both are scored on every gold row. The label model predicts the argmax of its probabilities, "
              "exact ties (such as rows no LF voted on, when it gives them a uniform distribution) broken by a "
              "deterministic hash, as `labelflow fit` scores it; *accuracy (covered)* is its accuracy on the rows "
              "some LF voted on and *coverage* their fraction. The student reads the text, so it labels every row "
              "(coverage 1)."]
    uncovered = [(split, m[split]["uncovered"]) for split in ("dev", "test") if (m.get(split) or {}).get("uncovered")]
    if uncovered:
        lines += ["", "On the rows no LF voted on: " + "; ".join(
            f"{split} ({u['rows']} rows) student accuracy {u['student_accuracy']:.3f}, label model "
            f"{u['label_model_accuracy']:.3f}" for split, u in uncovered) + "."]
    final = m.get("test") or m.get("dev")
    if final:
        which = "test" if m.get("test") else "dev"
        lines += ["", f"Per class on {which} (student):", "", "| class | precision | recall | F1 | support |",
                  "|---|---|---|---|---|"]
        for c, v in final["student"]["per_class"].items():
            lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    t = m["train"]
    lines += [
        "",
        "## Training",
        "",
        f"- rows: {t['train_kept']} of {t['train_rows']} train rows"
        + "".join(f", {v} dropped ({k.removeprefix('dropped_').replace('_', ' ')})"
                  for k, v in t.items() if k.startswith("dropped_")),
        f"- steps: {t['steps']} ({t['epochs']} epochs), best dev checkpoint at step "
        f"{m['best']['step'] if m.get('best') else t['steps']}",
        f"- {t['seconds']} s on {t['device']} × {t['processes']} ({t['precision']}), "
        f"{t['samples_per_s']} samples/s, {t['tokens_per_s']} tokens/s",
        f"- trainable parameters: {t['trainable_parameters']:,} of {t['parameters']:,}",
    ]
    if m.get("lora"):
        lo = m["lora"]
        lines.append(f"- LoRA: rank {lo['r']}, alpha {lo['alpha']}, dropout {lo['dropout']}, "
                     f"target modules {lo['target_modules']} (adapter alone in `adapter/`; the weights here are merged)")
    opts = ", ".join(f"{k}={config[k]!r}" for k in ("epochs", "batch_size", "grad_accum", "lr", "max_length",
                                                      "weighting", "drop_uncovered", "select", "seed"))
    lines += [f"- options: {opts}", "",
              "## Use", "",
              "```python",
              "from transformers import pipeline",
              "clf = pipeline(\"text-classification\", model=\"RUN_DIR\")",
              "```", "",
              "or `labelflow predict --model RUN_DIR data.csv --out predictions.parquet`.", "",
              "## Limitations", "",
              "The student learns what the labeling functions and the label model say, errors included; "
              "its scores above hold for data like the dev and test rows. Check it on your own gold before relying "
              "on it.", ""]
    return "\n".join(lines)
