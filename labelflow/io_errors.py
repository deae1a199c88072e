"""One-line explanations of the failures that come from below labelflow: files, disks, SQLite, damaged stores.

The CLI prints a :class:`~labelflow.errors.LabelflowError`'s message. Some failures come from
below labelflow instead: a full disk, a read-only folder, a store file that is truncated or is
not what labelflow wrote. :func:`explain` turns the known kinds into one line that names the file
and says what to do; anything else (a bug) gets ``None`` and keeps its traceback.
:func:`involving` marks which file an operation was on.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import sysconfig
from contextlib import contextmanager

FILE_ATTRIBUTE = "labelflow_file"
"""Attribute :func:`involving` sets on an exception: the file being read or written when it was raised."""
WRITING_ATTRIBUTE = "labelflow_writing"
"""Attribute :func:`involving` sets on an exception raised while writing the file."""

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
_TEMP_NAME = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.labelflow-tmp$")
_PATH_LOCALS = ("path", "file", "filename", "target", "source", "out", "store")


@contextmanager
def involving(path, *, writing: bool = False):
    """Mark an exception raised in the body with ``path``, the file being read or written (``writing``), unless
    an inner ``involving`` marked it already; :func:`explain` names that file.

    Examples
    --------
    >>> try:
    ...     with involving("store/matrix.parquet", writing=True):
    ...         raise OSError(28, "No space left on device")
    ... except OSError as exc:
    ...     print(explain(exc))
    store/matrix.parquet: No space left on device (writing it failed: the disk is full); free some space, then run the command again
    """
    try:
        yield
    except Exception as exc:
        if getattr(exc, FILE_ATTRIBUTE, None) is None:
            try:
                setattr(exc, FILE_ATTRIBUTE, str(path))
                setattr(exc, WRITING_ATTRIBUTE, writing)
            except (AttributeError, TypeError):  # an exception type without a __dict__: leave it
                pass
        raise


def explain(exc: BaseException) -> str | None:
    """One line saying what failed, on which file, and what to do; ``None`` for an exception of no known kind.

    Known kinds: :class:`OSError` on a path (a full disk, a read-only or missing file or folder, a folder
    where a file belongs), SQLite errors (full, read-only, damaged or locked database), and Parquet, CSV,
    ``.npz``, JSON and UTF-8 read errors raised while reading a file. A full disk anywhere in the chain of
    exceptions is reported as such (SQLite's "cannot rollback" otherwise hides it).
    """
    chain = _chain(exc)
    if not _known(exc):
        return None
    for e in chain:  # the real cause of a failed write may sit under another error
        kind = _io_kind(e)
        if kind in ("full", "read-only"):
            return _say(e, kind)
    kind = _io_kind(exc)
    return _say(exc, kind) if kind is not None else None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _known(exc: BaseException) -> bool:
    return _io_kind(exc) is not None or (_sqlite_kind(exc) == "rollback" and len(_chain(exc)) > 1)


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno
    found = _OS_ERROR_IN_TEXT.search(str(exc)) if _is_polars(exc) or isinstance(exc, OSError) else None
    return int(found.group(1)) if found else None


def _io_kind(exc: BaseException) -> str | None:
    """``full``, ``read-only``, ``missing``, ``is-dir``, ``not-dir``, ``exists``, ``name``, ``io``, ``locked``,
    ``open``, ``damaged``, or ``None`` for no known kind."""
    number = _errno_of(exc)
    if number in _DISK_FULL:
        return "full"
    if number in _READ_ONLY:
        return "read-only"
    sqlite = _sqlite_kind(exc)
    if sqlite in ("full", "read-only", "locked"):
        return sqlite
    writing = getattr(exc, WRITING_ATTRIBUTE, False) or _raised_writing(exc)
    path = _file_of(exc)
    if path is not None and (writing or sqlite in ("io", "open") or number == errno.EIO):
        state = _write_state(path)  # a failed write often hides why (polars: "Invalid thrift: transport error")
        if state is not None:
            return state
    if number is not None:
        if path is None:
            return None
        return {errno.ENOENT: "missing", errno.EISDIR: "is-dir", errno.ENOTDIR: "not-dir",
                errno.EEXIST: "exists", errno.ENAMETOOLONG: "name", errno.EIO: "io"}.get(number)
    if sqlite is not None:
        return None if sqlite == "rollback" else sqlite
    if path is not None and not writing and _raised_reading(exc):
        return "damaged"
    return None  # among them a write that failed for no reason to be seen: a bug until shown otherwise


def _sqlite_kind(exc: BaseException) -> str | None:

    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or type(exc) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return None  # IntegrityError, ProgrammingError ...: a bug, not a file
    text = str(exc).lower()
    for pattern, kind in (("disk is full", "full"), ("readonly database", "read-only"),
                          ("unable to open database", "open"), ("not a database", "damaged"),
                          ("malformed", "damaged"), ("disk i/o error", "io"), ("database is locked", "locked"),
                          ("cannot rollback", "rollback")):
        if pattern in text:
            return kind
    return None


FULL_BELOW = 1 << 20
"""A write that failed on a file system with less than this many bytes free failed because the disk is full."""


def _write_state(path: str) -> str | None:
    """``full`` or ``read-only`` when the file system of ``path`` is (nearly) full or its folder not writable."""

    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):  # the nearest folder that exists
        folder = os.path.dirname(folder)
    try:
        if shutil.disk_usage(folder).free < FULL_BELOW:
            return "full"
    except OSError:
        return None
    return None if os.access(folder, os.W_OK) else "read-only"


def _is_polars(exc: BaseException) -> bool:
    return any(cls.__module__.startswith("polars") for cls in type(exc).__mro__)


_READERS = ("/polars/", "/pyarrow/", "/numpy/lib/", "/zipfile", "/json/", "/codecs.py", "/sqlite3/")
_FILE_FORMAT_WORDS = re.compile(r"parquet|PAR1|out of specification|\bcsv\b|\bipc\b|ndjson|os error|"
                                 r"unexpected end of file|magic bytes|footer", re.IGNORECASE)
_READ_TYPES = ("ComputeError", "SchemaError", "ColumnNotFoundError", "NoDataError", "ShapeError", "ArrowInvalid",
               "ArrowIOError", "ArrowException", "BadZipFile", "JSONDecodeError", "UnicodeDecodeError", "EOFError",
               "ValueError", "KeyError", "OSError")


_WRITERS = ("write_", "sink_", "savez", "_savez", "save", "dump", "to_csv", "to_parquet")


def _raised_writing(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside a library's writer (polars ``write_*``/``sink_*``, numpy ``savez`` ...)."""
    libraries = _library_folders()
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.startswith(libraries) and code.co_name.startswith(_WRITERS):
            return True
        tb = tb.tb_next
    return False


def _raised_reading(exc: BaseException) -> bool:
    """Whether ``exc`` is a read error raised inside a file reader (polars, pyarrow, numpy's npz loader, zipfile, json)."""
    if not any(cls.__name__ in _READ_TYPES for cls in type(exc).__mro__):
        return False
    tb, innermost = exc.__traceback__, None
    while tb is not None:
        innermost = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        tb = tb.tb_next
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):  # decoding a file's bytes or text
        return True
    if _is_polars(exc) or type(exc).__name__.startswith("Arrow"):  # raised from native code: read its message
        return bool(innermost and "/polars/io/" in innermost) or bool(_FILE_FORMAT_WORDS.search(str(exc)))
    return innermost is not None and any(r in innermost for r in _READERS)


def _file_of(exc: BaseException) -> str | None:
    """The file involved: marked by :func:`involving`, an :class:`OSError`'s filename, else the one existing file
    that the innermost frame outside the standard library and installed packages held when it was raised, as a
    ``Path``, a ``str`` named ``path``, ``file`` ..., or ``self.path``; ``None`` when it held none or several."""

    marked = getattr(exc, FILE_ATTRIBUTE, None)
    if marked:
        return marked
    if isinstance(exc, OSError) and exc.filename not in (None, ""):
        name = os.fsdecode(exc.filename) if not isinstance(exc.filename, int) else None
        if name is not None:
            head, tail = os.path.split(name)
            temp = _TEMP_NAME.match(tail)
            return os.path.join(head, temp.group(1)) if temp else name
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    libraries = _library_folders()
    for frame in reversed(frames):
        if frame.f_code.co_filename.startswith(libraries):  # a library's locals name its own files
            continue
        local = frame.f_locals
        candidates = [v for v in local.values() if isinstance(v, os.PathLike)]
        candidates += [local.get(name) for name in _PATH_LOCALS if isinstance(local.get(name), str)]
        candidates.append(getattr(local.get("self"), "path", None))
        files = {os.path.realpath(v): os.fspath(v) for v in candidates
                 if isinstance(v, (str, os.PathLike)) and os.fspath(v) and os.path.isfile(v)}
        # only the innermost frame of the program: an outer one's files are other steps' (init's data files)
        return next(iter(files.values())) if len(files) == 1 else None  # of several, which one failed is unknown
    return None


def _library_folders() -> tuple[str, ...]:
    """The folders of the standard library and installed packages (labelflow itself may be installed among them)."""

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # labelflow's own folder is never a library
    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return (*(os.path.join(p, "") for p in paths if p and not here.startswith(p)), "<frozen ")


_WHAT = {
    "full": "writing it failed: the disk is full",
    "read-only": "it cannot be written here (read-only file system or no permission)",
    "missing": "no such file or folder",
    "is-dir": "it is a folder where a file belongs",
    "not-dir": "a part of this path is a file, not a folder",
    "exists": "it already exists and is not a folder",
    "name": "the file name is too long",
    "io": "an I/O error of the disk",
    "locked": "another process holds it locked",
    "open": "SQLite cannot open it",
    "damaged": "it is damaged or is not a file labelflow wrote",
}


def _say(exc: BaseException, kind: str) -> str:

    path = _file_of(exc)
    where = path if path is not None else "a file of the project"
    reason = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    reason = reason.replace(str(path), "").strip(" :") if path else reason
    if kind == "full":
        todo = "free some space, then run the command again"
    elif kind == "read-only":
        todo = ("make it writable, or run the command on a writable copy of the project" if path is None
                or os.path.basename(path) != "annotations.sqlite" else
                "make the project folder writable (SQLite writes a journal beside the file), or work on a copy")
    elif kind == "locked":
        todo = "wait for the other labelflow command (or the app) to finish, then run it again"
    elif kind in ("damaged", "io", "open"):
        todo = _store_hint(path)
    else:
        todo = "check the path"
    return f"{where}: {reason} ({_WHAT[kind]}); {todo}"


def _store_hint(path: str | None) -> str:
    """What to do about a damaged file, by its role in a project folder."""

    if path is None:
        return "check the project's store files"
    name, parent = os.path.basename(path), os.path.basename(os.path.dirname(path))
    if name == "labelflow.json":
        return "fix it by hand (it is JSON) or re-create the project with `labelflow init`"
    if name == "dataset.parquet":
        return "re-create the project with `labelflow init` (its caches are kept)"
    if name == "matrix.parquet":
        return "delete it and run `labelflow apply` again"
    if parent == "votes":
        return "delete it (an entry of the vote cache) and run `labelflow apply` again"
    if parent == "models":
        return "delete it and run `labelflow fit` again"
    if name == "annotations.sqlite":
        return ("it holds the human gold labels and cannot be rebuilt: restore it from a backup, or move it away "
                "to go on without them")
    if name == "fm.sqlite":
        return "delete it (a cache of FM outputs) and run `labelflow fm ...` again"
    if parent == "fm":
        return "delete it and run `labelflow fm ...` again to recompute it"
    return "check that it is the file you meant and that it is intact"
