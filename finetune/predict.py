"""Batch inference with a fine-tuned student; its predictions go back into error analysis.

Example::

    from labelflow.finetune import predict
    from labelflow.error_analysis import analyze
    preds = predict("runs/student", "data/youtube/Youtube05-Shakira.csv", text="CONTENT")
    analysis = analyze(project, predictions=predict("runs/student", project.root))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.conventions import Device
from labelflow.errors import FinetuneError, require
from labelflow.export import prob_columns
from labelflow.finetune.data import tokenize
from labelflow.finetune.evaluate import predict_probs
from labelflow.finetune.model import EXTRA, quiet_transformers
from labelflow.finetune.run_folder import RunFolder
from labelflow.validation import check_choice, check_int

DEFAULT_MAX_LENGTH = 128


@dataclass
class Student:
    """A loaded student: model, tokenizer, class names, the max length it was trained with, its device."""

    model: Any
    tokenizer: Any
    class_names: tuple[str, ...]
    max_length: int
    device: Any


def load_student(run_dir: str | Path, *, device: Device = "auto") -> Student:
    """Load the merged model of a finished run folder (or any sequence-classification model folder)."""
    transformers = require("transformers", EXTRA)
    import torch

    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not (run_dir / "config.json").is_file():
        hint = (" (the run has not finished: resume it with `labelflow finetune --resume`)"
                if folder.has_run() else "")
        raise FinetuneError(f"--model {run_dir} is not a fine-tuned model folder: config.json is missing{hint}")
    check_choice("device", device, Device, error=FinetuneError)
    if device == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(run_dir, local_files_only=True)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                run_dir, local_files_only=True, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    except Exception as exc:
        raise FinetuneError(f"cannot load the model in {run_dir}: {exc}") from exc
    k = model.config.num_labels
    names = tuple(str(model.config.id2label.get(i, model.config.id2label.get(str(i), f"LABEL_{i}"))) for i in range(k))
    max_length = DEFAULT_MAX_LENGTH
    if folder.has_run():
        max_length = int(folder.read_meta()["config"]["max_length"])
    return Student(model.to(dev).eval(), tokenizer, names, max_length, dev)


def predict(
    model: str | Path | Student,
    data: Any,
    *,
    text: str = "text",
    batch_size: int = 64,
    device: Device = "auto",
) -> pl.DataFrame:
    """Class probabilities and predictions of a student for every row of ``data``.

    Parameters
    ----------
    model
        A finished run folder, or a :class:`Student` from :func:`load_student`.
    data
        A ``.csv``/``.parquet``/``.jsonl`` file, a labelflow project folder (every row
        of its dataset), a polars or pandas frame, or a list of texts.
    text
        The text column of a file or frame.
    batch_size
        Rows per forward pass.
    device
        ``auto``: CUDA (bf16) when present, else CPU.

    Returns
    -------
    polars.DataFrame
        ``[n rows]``: ``id`` (the data's, or the row index as a string), ``split`` when the
        data has one, ``pred`` (Int16), ``pred_name`` and ``prob_<class>`` per class —
        the frame :func:`labelflow.error_analysis.analyze` takes as ``predictions``.
    """
    check_int("batch_size", batch_size, minimum=1, error=FinetuneError)
    frame = _frame(data, text)
    student = model if isinstance(model, Student) else load_student(model, device=device)
    texts = frame[text].cast(pl.String).fill_null("").to_list()
    ids = tokenize(student.tokenizer, texts, max_length=student.max_length)
    import torch

    dtype = torch.bfloat16 if student.device.type == "cuda" else None
    probs = predict_probs(student.model, ids, batch_size=batch_size, pad_id=student.tokenizer.pad_token_id,
                          device=student.device, autocast_dtype=dtype,
                          pad_to_multiple_of=8 if student.device.type == "cuda" else 1)
    pred = probs.argmax(axis=1)
    names = np.array(student.class_names, dtype=object)
    cols = [pl.Series("id", frame["id"].cast(pl.String) if "id" in frame.columns else [str(i) for i in range(len(texts))],
                      dtype=pl.String)]
    if "split" in frame.columns:
        cols.append(frame["split"].cast(pl.String))
    cols += [pl.Series("pred", pred, dtype=pl.Int16), pl.Series("pred_name", names[pred].tolist(), dtype=pl.String)]
    cols += prob_columns(student.class_names, probs)
    return pl.DataFrame(cols)


def _frame(data: Any, text: str) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        frame, where = data, "the data frame"
    elif type(data).__module__.startswith("pandas"):
        frame, where = pl.from_pandas(data), "the data frame"
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        if not all(isinstance(t, str) for t in data):
            raise FinetuneError("a list of texts must hold only strings")
        return pl.DataFrame({text: list(data)}, schema={text: pl.String})
    elif isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_dir():
            if not (path / "labelflow.json").is_file():
                raise FinetuneError(f"data folder {path} is not a labelflow project (labelflow.json is missing)")
            from labelflow.project import Project

            dataset = Project.open(path).dataset()
            return dataset.frame.select("id", "split", pl.col("text").alias(text))
        if not path.is_file():
            raise FinetuneError(f"data file {path} does not exist")
        from labelflow.tables import read_table
        from labelflow.errors import DataError

        try:
            where, frame = read_table(path)
        except DataError as exc:
            raise FinetuneError(f"{exc} (or pass a project folder)") from None
    else:
        raise FinetuneError(f"data must be a file, a project folder, a frame or a list of texts; got {type(data).__name__}")
    if text not in frame.columns:
        raise FinetuneError(f"{where} has no text column {text!r}; its columns are {frame.columns} (pass --text-column)")
    return frame
