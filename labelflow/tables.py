"""Read one table (a CSV/TSV, Parquet, JSON or JSON Lines file, a polars or pandas frame) into a polars frame.

Every failure is a :class:`~labelflow.errors.DataError` naming the file and, where there is
one, the line, row, byte or column: a missing file or unknown extension, bytes that are not
UTF-8, a JSON file that is neither an array of row objects nor JSON Lines, an object or list
where an id or text is expected. :func:`labelflow.dataset.load_dataset` reads its sources so.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import polars as pl

from labelflow.errors import DataError

Source = Union[str, Path, pl.DataFrame, Any]
"""A file path, a polars frame or a pandas frame."""
UTF8_CHUNK = 1 << 20
"""Bytes read at a time by the UTF-8 check of a text file (its memory stays within a small multiple of this)."""
READERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
"""File extension → reader. A ``.json`` file is either a JSON array of row objects or JSON Lines (one object
per line); its first bytes tell which (:func:`_json_layout`)."""


def is_frame(obj: Any) -> bool:
    """Whether ``obj`` is a polars or a pandas frame (pandas is not imported to tell)."""
    return isinstance(obj, pl.DataFrame) or type(obj).__module__.startswith("pandas")


def read_table(src: Source, *, strings: Sequence[str] = ()) -> tuple[str, pl.DataFrame]:
    """Read one source (a .csv/.tsv/.parquet/.jsonl file, a polars or pandas frame) into a frame.

    Returns ``(where, frame)``: a name for messages (the path) and the frame. Raises
    :class:`DataError` naming the file when it is missing, of another type, not UTF-8
    or unreadable. Columns named in ``strings`` (ids, texts) are read as text from CSV
    and JSONL files, never inferred and cast (``00123`` stays ``00123``); a JSONL value
    in one of them that is an object or a list is refused, naming the file, row and column.
    """
    if isinstance(src, pl.DataFrame):
        return "the polars frame", src
    if is_frame(src):
        return "the pandas frame", pl.from_pandas(src)
    path = Path(src)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {sorted(READERS)}")
    if kind != "parquet":
        _check_utf8(path)
    if kind == "json":
        if _json_layout(path) == "array":
            return str(path), _read_json_array(path, strings)
        kind = "jsonl"
    overrides = {c: pl.String for c in strings}
    try:
        if kind == "csv":
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            frame = pl.read_csv(path, separator=sep, infer_schema_length=10_000, schema_overrides=overrides)
        elif kind == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_ndjson(path, infer_schema_length=10_000)
    except (pl.exceptions.PolarsError, OSError) as exc:
        bad = _bad_json_line(path) if kind == "jsonl" and isinstance(exc, pl.exceptions.PolarsError) else None
        if bad:
            raise DataError(f"{path}: {bad}; JSON Lines hold one JSON object (a row) per line") from None
        raise DataError(f"{path}: could not be read as {kind}: {exc}") from exc
    if kind == "jsonl":
        frame = _jsonl_strings(path, frame, [c for c in strings if c in frame.columns])
    return str(path), frame


def _json_layout(path: Path) -> str:
    """``"array"`` (a JSON array of row objects) or ``"lines"`` (JSON Lines) for a ``.json`` file, from its first
    line; anything else raises :class:`DataError` naming the file and line."""
    expected = "expected a JSON array of row objects ([{...}, {...}]) or JSON Lines (one object per line)"
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.decode("utf-8").lstrip("\ufeff").strip()
            if not line:
                continue
            if line.startswith("["):
                return "array"
            if line.startswith("{"):
                try:
                    first = json.loads(line)
                except ValueError:
                    first = None
                if isinstance(first, dict):
                    return "lines"
                raise DataError(f"{path}: line {number} opens a JSON object that does not end on that line (one object "
                                f"spread over several lines is not rows); {expected}")
            raise DataError(f"{path}: line {number} starts with {line[:20]!r}; {expected}")
    raise DataError(f"{path}: the file is empty; {expected}")


def _read_json_array(path: Path, strings: Sequence[str]) -> pl.DataFrame:
    """A JSON array of row objects as a frame; ``strings`` columns as text (numbers written as JSON writes them)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}, column {exc.colno} is not valid JSON ({exc.msg}); expected a JSON "
                        "array of row objects") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: holds a JSON {type(rows).__name__}, not an array of row objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: element {i} of the array is {json.dumps(row)[:40]}, not an object (a row)")
        for column in strings:
            value = row.get(column)
            if isinstance(value, (dict, list)):
                kind = "a list" if isinstance(value, list) else "an object"
                raise DataError(f"{path}: row {i} has {kind} in column {column!r} ({json.dumps(value)[:80]}); "
                                "an id or text field must be a string or a number")
            if value is not None and not isinstance(value, str):
                row[column] = json.dumps(value)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    try:
        return pl.DataFrame(rows, schema_overrides={c: pl.String for c in strings if c in columns},
                            infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: the array's rows could not be read as one table ({exc})") from None


def _bad_json_line(path: Path) -> str | None:
    """Where a JSON Lines file goes wrong: ``"line N ..."`` for its first line that is not a JSON object."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                return f"line {number} is not valid JSON ({getattr(exc, 'msg', exc)})"
            if not isinstance(value, dict):
                return f"line {number} is {json.dumps(value)[:40]}, not an object"
    return None


def _jsonl_strings(path: Path, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The ``columns`` of a JSONL frame as text; an object or list in one of them is refused naming its row.

    polars reads a column of objects as a struct (which casts to ``'{1}'``) and turns an
    object among strings into its JSON text, so the raw lines of rows whose value looks
    like JSON text are parsed to tell ``{"text": {"a": 1}}`` from ``{"text": "{a: 1}"}``.
    """
    suspects: dict[int, list[str]] = {}
    for column in columns:
        col = frame[column]
        if col.dtype.is_nested() or col.dtype == pl.Object:
            row = int(col.is_not_null().arg_max() or 0)
            kind = "a list" if isinstance(col.dtype, (pl.List, pl.Array)) else "an object"
            raise DataError(f"{path}: row {row} has {kind} in column {column!r} ({col[row]!r}); "
                            "an id or text field must be a string or a number")
        if col.dtype == pl.String:
            looks = col.str.strip_chars_start().str.slice(0, 1).is_in(["{", "["]).fill_null(False)
            for row in np.flatnonzero(looks.to_numpy()).tolist():
                suspects.setdefault(row, []).append(column)
    if suspects:
        last = max(suspects)
        with path.open("rb") as fh:
            row = -1
            for raw in fh:
                if not raw.strip():
                    continue  # polars skips blank lines
                row += 1
                if row in suspects:
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue
                    for column in suspects[row]:
                        value = record.get(column) if isinstance(record, dict) else None
                        if isinstance(value, (dict, list)):
                            kind = "a list" if isinstance(value, list) else "an object"
                            raise DataError(f"{path}: row {row} has {kind} in column {column!r} "
                                            f"({json.dumps(value)[:80]}); an id or text field must be a string or a number")
                if row >= last:
                    break
    return frame.with_columns(pl.col(c).cast(pl.String) for c in columns if frame[c].dtype != pl.String)


def _check_utf8(path: Path) -> None:
    """Raise naming the line and byte offset of the first invalid UTF-8 sequence.

    The file is read :data:`UTF8_CHUNK` bytes at a time into one buffer and decoded a
    sixteenth of a chunk at a time, so memory stays within about 1.25 chunks whatever
    the file's size.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    buf = bytearray(UTF8_CHUNK)
    view = memoryview(buf)
    step = max(4, UTF8_CHUNK // 16)
    offset = lines = 0  # bytes and newlines before the current chunk
    with path.open("rb") as fh:
        while n := fh.readinto(buf):
            for start in range(0, n, step):
                pending = len(decoder.getstate()[0])  # bytes of a character begun before this slice
                try:
                    decoder.decode(view[start:min(n, start + step)])
                except UnicodeDecodeError as exc:
                    at = start - pending + exc.start  # within this chunk (< 0: in the previous one's last bytes)
                    _utf8_error(path, exc, offset + at, lines + buf.count(b"\n", 0, max(at, 0)))
            lines += buf.count(b"\n", 0, n)
            offset += n
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            _utf8_error(path, exc, offset - pending + exc.start, lines)


def _utf8_error(path: Path, exc: UnicodeDecodeError, byte: int, newlines: int) -> None:
    raise DataError(
        f"{path}: line {newlines + 1} (byte {byte}) is not valid UTF-8 ({exc.reason}: "
        f"{exc.object[exc.start:exc.end]!r}); re-save the file as UTF-8"
    ) from None
