"""Writing a finished run: its metrics, the adapter, the merged model, a model card.

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
without labelflow or peft. The file names are :mod:`labelflow.finetune.run_folder`'s; the metrics
are computed by the trainer (:func:`labelflow.finetune.evaluate.gold_scores`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.model import quiet_transformers
from labelflow.finetune.run_folder import ADAPTER_DIR, RunFolder


def export_run(folder: RunFolder, metrics: dict[str, Any], model: Any, tokenizer: Any, *,
               config: FinetuneConfig) -> None:
    """Write the finished run into ``folder``: the model (:func:`save_model`), ``metrics.json``, the model card,
    and status ``complete`` in ``finetune.json``.

    ``metrics`` is ``metrics.json``'s document (see :func:`labelflow.finetune.finetune`); ``model`` holds the best
    weights (a peft model is merged in place).
    """
    save_model(model, tokenizer, folder.path, lora=config.method == "lora")
    folder.write_metrics(metrics)
    folder.write_card(model_card(metrics, config.to_dict()))
    folder.set_status("complete")


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
