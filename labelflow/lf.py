"""Labeling functions: Python functions over a row, and polars expressions.

Three kinds share one interface, :class:`LabelingFunction`:

* :class:`PythonLF`, made with :func:`labeling_function`, runs once per row on a
  :class:`Row` with attribute and item access (``x.text``, ``x["author"]``, ...).
* :class:`ExpressionLF` wraps a polars expression that evaluates to a class index,
  or null / ``ABSTAIN``; :func:`keyword_lf`, :func:`regex_lf`, :func:`length_lf`
  and :func:`threshold_lf` build them. They run vectorized over the whole frame.
* Snorkel ``LabelingFunction`` objects are accepted unchanged and run as Python LFs.

Every LF has a :meth:`~LabelingFunction.fingerprint` that changes whenever its
behaviour may change: its own code, the helpers, classes, modules and data it
reaches (in the suite file or other user modules, followed recursively), its
closure and its resources. Votes are cached under it. What the fingerprint cannot
cover (an object of a library or C type, a file opened at run time) is listed by
:meth:`~LabelingFunction.uncovered`; such an LF is re-applied, never read from the cache.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import contextvars
import datetime
import decimal
import dis
import enum
import fractions
import functools
import hashlib
import importlib.util
import linecache
import logging
import operator
import os
import pathlib
import re
import site
import sys
import sysconfig
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import LFError
from labelflow.validation import check_choice, check_int

FINGERPRINT_VERSION = "2"
LengthUnit = Literal["chars", "words"]
"""What :func:`length_lf` counts: Unicode characters or words (runs of non-space)."""
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class Row(types.SimpleNamespace):
    """One data row as an object: each column is an attribute and an item (``x.text`` or ``x["text"]``).

    Examples
    --------
    >>> x = Row(text="hi", likes=3)
    >>> x.text, x["likes"]
    ('hi', 3)
    >>> x["author"]
    Traceback (most recent call last):
    ...
    KeyError: "no column 'author' in the row; its columns are ['text', 'likes']"
    """

    def __getitem__(self, column: str) -> Any:
        try:
            return self.__dict__[column]
        except KeyError:
            raise KeyError(f"no column {column!r} in the row; its columns are {list(self.__dict__)}") from None


class LabelingFunction:
    """Base of all LFs: a name, a fingerprint, and the columns it reads.

    Parameters
    ----------
    name
        Unique within a suite; letters, digits, ``_``, ``.`` and ``-``.
    """

    kind: str = "abstract"

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise LFError(f"LF name must start with a letter or _ and hold letters, digits, _ . -; got {name!r}")
        self.name = name

    def fingerprint(self) -> str:
        """Hex digest that changes whenever the LF's behaviour may change (as far as :meth:`uncovered` allows)."""
        return _lf_identity(self)[0]

    def uncovered(self) -> tuple[str, ...]:
        """What the fingerprint cannot cover, one phrase each; empty when it proves the LF unchanged.

        An LF with gaps (it uses an object of a library or C type, calls ``open()`` ...) is re-applied
        on every run instead of being read from the vote cache.

        Examples
        --------
        >>> import random
        >>> rng = random.Random(0)
        >>> @labeling_function()
        ... def coin(x):
        ...     return 1 if rng.random() < 0.5 else ABSTAIN
        >>> coin.uncovered()
        ("global 'rng' of labelflow.lf (a random.Random object, which labelflow cannot hash)",)
        """
        return _lf_identity(self)[1]

    def cache_identity(self) -> tuple[str, tuple[str, ...]]:
        """``(fingerprint, uncovered)`` computed in one pass: :meth:`fingerprint` and :meth:`uncovered`."""
        return _lf_identity(self)

    def columns(self) -> tuple[str, ...] | None:
        """Columns the LF reads, or ``None`` when it may read any."""
        return None

    def _identity(self) -> Iterable[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class PythonLF(LabelingFunction):
    """An LF that calls ``func(row, **resources)`` on each row.

    ``func`` returns a class index ``0 .. k-1`` or ``ABSTAIN``.
    """

    kind = "python"

    def __init__(self, name: str, func: Callable[..., int], *, resources: Mapping[str, Any] | None = None) -> None:
        super().__init__(name)
        if not callable(func):
            raise LFError(f"LF {name!r}: expected a callable, got {type(func).__name__}")
        self.func = func
        self.resources = dict(resources or {})

    def __call__(self, x: Any) -> int:
        return self.func(x, **self.resources)

    def row_fields(self) -> tuple[str, ...] | None:
        """The row fields ``func`` reads, when its code touches the row only as ``x.NAME`` or ``x["NAME"]``; else
        ``None``.

        Read from the bytecode: ``None`` when the row is passed on, stored, captured
        by a nested function or comprehension, or not read at all. The votes of
        an LF with known fields depend on those attributes alone, so the applier
        may call it once per distinct combination of their values.

        Examples
        --------
        >>> @labeling_function()
        ... def short_by_bot(x):
        ...     return 1 if len(x.text) < 20 and x.author.startswith("bot") else ABSTAIN
        >>> short_by_bot.row_fields()
        ('text', 'author')
        >>> labeling_function(name="passes_row_on")(lambda x: len(vars(x)) > 3).row_fields() is None
        True
        """
        return _row_attributes(self.func) or None

    def columns(self) -> tuple[str, ...] | None:
        """The row fields the function reads (:meth:`row_fields`), or ``None`` when it may read any column."""
        return self.row_fields()

    def _identity(self) -> Iterable[str]:
        hasher = _Hasher()
        yield hasher.value(self.func, f"LF {self.name!r}")
        yield hasher.value(self.resources, f"the resources of LF {self.name!r}")


class ExpressionLF(LabelingFunction):
    """An LF given as a polars expression, evaluated over the whole frame at once.

    Parameters
    ----------
    name
        LF name.
    expr
        Expression over the dataset's columns giving, per row, a class index, or
        null or ``-1`` to abstain.

    Examples
    --------
    >>> import polars as pl
    >>> lf = ExpressionLF("long", pl.when(pl.col("text").str.len_chars() > 3).then(1))
    >>> lf.columns()
    ('text',)
    """

    kind = "expression"

    def __init__(self, name: str, expr: pl.Expr) -> None:
        super().__init__(name)
        if not isinstance(expr, pl.Expr):
            raise LFError(f"LF {name!r}: expected a polars expression, got {type(expr).__name__}")
        self.expr = expr

    def columns(self) -> tuple[str, ...]:
        return tuple(self.expr.meta.root_names())

    def _identity(self) -> Iterable[str]:
        yield self.expr.meta.serialize(format="json")


def labeling_function(
    *, name: str | None = None, resources: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., int]], PythonLF]:
    """Decorator turning ``f(x, **resources) -> int`` into a :class:`PythonLF`.

    Examples
    --------
    >>> @labeling_function()
    ... def mentions_money(x):
    ...     return 1 if "$" in x.text else ABSTAIN
    >>> mentions_money(Row(text="win $100")), mentions_money.name
    (1, 'mentions_money')
    """

    def wrap(func: Callable[..., int]) -> PythonLF:
        return PythonLF(name or func.__name__, func, resources=resources)

    return wrap


def _vote(cond: pl.Expr, label: int) -> pl.Expr:
    return pl.when(cond).then(pl.lit(label, dtype=pl.Int8)).otherwise(pl.lit(ABSTAIN, dtype=pl.Int8))


def _check_label(name: str, label: int) -> int:
    return check_int(f"LF {name!r}: label", label, minimum=0, error=LFError)


def keyword_lf(
    name: str,
    keywords: Sequence[str],
    *,
    label: int,
    field: str = "text",
    case_sensitive: bool = False,
    word_boundary: bool = True,
) -> ExpressionLF:
    """Vote ``label`` when ``field`` contains any of ``keywords``.

    With ``word_boundary`` a keyword matches whole words only (``"my"`` does not
    match ``"mystery"``); boundaries apply on the sides that are word characters.

    Examples
    --------
    >>> import polars as pl
    >>> lf = keyword_lf("kw_free", ["free", "gift card"], label=1)
    >>> pl.DataFrame({"text": ["FREE stuff", "freedom", "a gift card"]}).select(lf.expr).to_series().to_list()
    [1, -1, 1]
    """
    _check_label(name, label)
    if isinstance(keywords, str) or not keywords or not all(isinstance(k, str) and k for k in keywords):
        raise LFError(f"LF {name!r}: keywords must be a non-empty list of non-empty strings; got {keywords!r}")
    alternatives = []
    for kw in keywords:
        pattern = pl.escape_regex(kw)
        if word_boundary:
            pattern = ("\\b" if re.match(r"\w", kw[0]) else "") + pattern + ("\\b" if re.match(r"\w", kw[-1]) else "")
        alternatives.append(pattern)
    flags = "" if case_sensitive else "(?i)"
    return ExpressionLF(name, _vote(pl.col(field).str.contains(f"{flags}(?:{'|'.join(alternatives)})"), label))


def regex_lf(name: str, pattern: str, *, label: int, field: str = "text", case_sensitive: bool = False) -> ExpressionLF:
    """Vote ``label`` when the regular expression ``pattern`` matches somewhere in ``field``.

    The syntax is Rust's ``regex`` crate (as polars' ``str.contains``): Python's
    syntax without look-around and back-references.

    Examples
    --------
    >>> import polars as pl
    >>> lf = regex_lf("check_out", r"check\\s*(it\\s*)?out", label=1)
    >>> pl.DataFrame({"text": ["Check it out!", "checkers"]}).select(lf.expr).to_series().to_list()
    [1, -1]
    """
    _check_label(name, label)
    flags = "" if case_sensitive else "(?i)"
    try:
        re.compile(pattern)
        pl.select(pl.lit("").str.contains(flags + pattern))
    except (re.error, pl.exceptions.PolarsError) as exc:
        raise LFError(f"LF {name!r}: invalid regular expression {pattern!r}: {exc}") from None
    return ExpressionLF(name, _vote(pl.col(field).str.contains(flags + pattern), label))


def length_lf(
    name: str,
    *,
    label: int,
    field: str = "text",
    unit: LengthUnit = "chars",
    min: int | None = None,  # noqa: A002 (mirrors the polars/numpy keyword)
    max: int | None = None,  # noqa: A002
) -> ExpressionLF:
    """Vote ``label`` when the length of ``field`` lies in ``[min, max]`` (inclusive).

    ``unit`` is ``"chars"`` (Unicode characters) or ``"words"`` (runs of non-space).

    Examples
    --------
    >>> import polars as pl
    >>> lf = length_lf("short", label=0, unit="words", max=3)
    >>> pl.DataFrame({"text": ["so cool", "one two three four"]}).select(lf.expr).to_series().to_list()
    [0, -1]
    """
    _check_label(name, label)
    check_choice(f"LF {name!r}: unit", unit, LengthUnit, error=LFError)
    length = pl.col(field).str.len_chars() if unit == "chars" else pl.col(field).str.count_matches(r"\S+")
    return ExpressionLF(name, _vote(_between(name, length, min, max), label))


def threshold_lf(
    name: str,
    column: str,
    *,
    label: int,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
) -> ExpressionLF:
    """Vote ``label`` when the numeric ``column`` lies in ``[min, max]`` (inclusive); null abstains.

    Examples
    --------
    >>> import polars as pl
    >>> lf = threshold_lf("many_likes", "likes", label=0, min=100)
    >>> pl.DataFrame({"likes": [5, 500, None]}).select(lf.expr).to_series().to_list()
    [-1, 0, -1]
    """
    _check_label(name, label)
    return ExpressionLF(name, _vote(_between(name, pl.col(column), min, max).fill_null(False), label))


def _between(name: str, value: pl.Expr, low: float | None, high: float | None) -> pl.Expr:
    if low is None and high is None:
        raise LFError(f"LF {name!r}: give min, max or both")
    if low is not None and high is not None and low > high:
        raise LFError(f"LF {name!r}: min ({low}) is greater than max ({high})")
    cond = pl.lit(True)
    if low is not None:
        cond = cond & (value >= low)
    if high is not None:
        cond = cond & (value <= high)
    return cond


def as_lf(obj: Any) -> LabelingFunction:
    """Normalize one LF: labelflow LFs pass through, Snorkel LFs are wrapped.

    Raises :class:`LFError` naming the object's type for anything else.
    """
    if isinstance(obj, LabelingFunction):
        return obj
    if _is_snorkel_lf(obj):
        return _SnorkelLF(obj)
    raise LFError(f"expected a labelflow or Snorkel labeling function; got {type(obj).__name__} {obj!r:.80}")


def check_suite(lfs: Iterable[Any]) -> list[LabelingFunction]:
    """Normalize a list of LFs with :func:`as_lf` and check that names are unique."""
    suite = [as_lf(lf) for lf in lfs]
    if not suite:
        raise LFError("the LF suite is empty; define at least one labeling function")
    seen: dict[str, int] = {}
    for i, lf in enumerate(suite):
        if lf.name == "id":
            raise LFError("LF name 'id' is reserved (the label matrix's row-id column); rename the LF")
        if lf.name in seen:
            raise LFError(f"duplicate LF name {lf.name!r} (LFs #{seen[lf.name]} and #{i} of the suite); names must be unique")
        seen[lf.name] = i
    return suite


def load_lf_suite(source: str | Path | types.ModuleType) -> list[LabelingFunction]:
    """Collect the LFs of a suite module (a file path or an imported module).

    A module-level ``LFS`` list, if present, is the suite; otherwise every
    module-level LF object (labelflow or Snorkel), in definition order.

    Raises
    ------
    LFError
        The file is missing or does not import (naming the file and line), or the
        suite is empty or has duplicate names.
    """
    module = source if isinstance(source, types.ModuleType) else _import_file(Path(source))
    where = getattr(module, "__file__", module.__name__)
    if hasattr(module, "LFS"):
        members = list(module.LFS)
    else:
        members, ids = [], set()
        for value in vars(module).values():
            if (isinstance(value, LabelingFunction) or _is_snorkel_lf(value)) and id(value) not in ids:
                ids.add(id(value))
                members.append(value)
    try:
        return check_suite(members)
    except LFError as exc:
        raise LFError(f"{where}: {exc}") from None


SUITE_MODULE_PREFIX = "labelflow_suite_"
"""Suite files are imported as modules named ``labelflow_suite_<stem>_<hash of the path>``."""

_SUITE_SOURCES: dict[str, tuple[str, bytes]] = {}
"""Module name → (path, source) of every suite file imported, so a worker process can re-create it."""


def _import_file(path: Path) -> types.ModuleType:
    if not path.is_file():
        raise LFError(f"LF suite file not found: {path}")
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
    stem = re.sub(r"\W", "_", path.stem)
    # compile from the bytes on disk, never from __pycache__ or a stale linecache entry: an edit within
    # the same second and of the same size must still change the code and its fingerprint
    return exec_suite_module(f"{SUITE_MODULE_PREFIX}{stem}_{digest}", str(path), path.read_bytes())


def exec_suite_module(name: str, path: str, source: bytes) -> types.ModuleType:
    """Run a suite file's ``source`` as module ``name`` (registered in ``sys.modules``) and return it.

    What the code prints goes to stderr. Raises :class:`LFError` naming the file and line when the
    code fails or calls ``sys.exit()``.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        linecache.cache[path] = (len(source), None, source.decode("utf-8").splitlines(True), path)
        with stdout_to_stderr():  # what the suite prints on import must not mix with --json output
            exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    except (Exception, SystemExit) as exc:  # sys.exit() in a suite file is an import error, not the end of the run
        sys.modules.pop(name, None)
        line = _error_line(exc, Path(path))
        raise LFError(f"{path}{line}: the LF suite failed to import: {type(exc).__name__}: {exc}") from exc
    _SUITE_SOURCES[name] = (path, source)
    return module


def suite_sources(lfs: Iterable[LabelingFunction]) -> dict[str, tuple[str, bytes]]:
    """``{module name: (path, source)}`` of the suite files whose code ``lfs`` run (see :func:`exec_suite_module`)."""
    out = {}
    for lf in lfs:
        func = getattr(lf, "func", None)
        func = getattr(func, "_f", func)  # a Snorkel LF's function
        module = getattr(func, "__module__", None)
        if module in _SUITE_SOURCES:
            out[module] = _SUITE_SOURCES[module]
    return out


def _error_line(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f", line {exc.lineno}"
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line else ""


# --- Snorkel interop -------------------------------------------------------------------------------


def _is_snorkel_lf(obj: Any) -> bool:
    return any(c.__module__.startswith("snorkel.") and c.__name__ == "LabelingFunction" for c in type(obj).__mro__)


class _SnorkelLF(PythonLF):
    """A Snorkel ``LabelingFunction`` run unchanged (its preprocessors and resources included)."""

    def __init__(self, lf: Any) -> None:
        super().__init__(lf.name, lf)

    def __call__(self, x: Any) -> int:
        return self.func(x)

    def row_fields(self) -> None:
        """``None``: the function sees the row its preprocessors made (never memoized)."""
        return None

    def columns(self) -> tuple[str, ...] | None:
        """The columns the LF and its preprocessors read, when their code shows it; else ``None``.

        A preprocessor made with ``@preprocessor()`` counts by the ``x.NAME`` it reads (it may set
        fields and return ``x``); a ``Preprocessor``/``Mapper`` subclass by its ``field_names``.
        """
        found = _row_attributes(self.func._f)
        if found is None:
            return None
        columns = dict.fromkeys(found)
        for pre in self.func._pre:
            more = _mapper_reads(pre)
            if more is None:
                return None
            columns.update(dict.fromkeys(more))
        return tuple(columns)

    def _identity(self) -> Iterable[str]:
        lf, hasher = self.func, _Hasher()
        yield hasher.value(lf._f, f"LF {self.name!r}")
        yield hasher.value(lf._resources, f"the resources of LF {self.name!r}")
        for pre in lf._pre:
            yield hasher.value(pre, f"preprocessor {getattr(pre, 'name', '?')!r} of LF {self.name!r}")


def _mapper_reads(pre: Any) -> tuple[str, ...] | None:
    """Row fields a Snorkel mapper (and the mappers it runs first) reads, or ``None`` if unknown."""
    try:
        from snorkel.map.core import BaseMapper, LambdaMapper, Mapper
    except ImportError:
        return None
    if not isinstance(pre, BaseMapper) or type(pre).__call__ is not BaseMapper.__call__:
        return None
    generate = type(pre)._generate_mapped_data_point
    if generate is LambdaMapper._generate_mapped_data_point:
        found = _row_attributes(pre._f, mutating=True)
    elif generate is Mapper._generate_mapped_data_point and isinstance(pre.field_names, Mapping):
        found = tuple(pre.field_names.values())  # run() sees these fields only
    else:
        return None
    if found is None:
        return None
    columns = dict.fromkeys(found)
    for inner in pre._pre:
        more = _mapper_reads(inner)
        if more is None:
            return None
        columns.update(dict.fromkeys(more))
    return tuple(columns)


# --- row attributes a Python LF reads ---------------------------------------------------------------


def _row_attributes(func: Any, *, mutating: bool = False) -> tuple[str, ...] | None:
    """Attribute names loaded from ``func``'s first argument, if that is all it does with it (``mutating``:
    or sets attributes on it and returns it, as a Snorkel preprocessor does); ``None`` otherwise."""
    if not isinstance(func, types.FunctionType) or func.__code__.co_argcount < 1:
        return None
    code = func.__code__
    row = code.co_varnames[0]
    if row in code.co_cellvars:  # captured by a nested function, lambda or comprehension
        return None
    fields: list[str] = []
    instructions = list(dis.get_instructions(code))
    for ins, nxt, then in zip(instructions, [*instructions[1:], None], [*instructions[2:], None, None]):
        names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
        if "FAST" not in ins.opname or row not in names:
            continue
        if not ins.opname.startswith("LOAD_FAST") or len(names) > 1 or nxt is None:
            return None
        if mutating and (nxt.opname == "RETURN_VALUE" or (nxt.opname == "STORE_ATTR"
                                                            and not str(nxt.argval).startswith("__"))):
            continue
        if nxt.opname == "LOAD_CONST" and isinstance(nxt.argval, str) and then is not None and (
                then.opname == "BINARY_SUBSCR" or (then.opname == "BINARY_OP" and then.argrepr == "[]")):
            fields.append(nxt.argval)  # x["NAME"]
            continue
        if nxt.opname not in ("LOAD_ATTR", "LOAD_METHOD") or str(nxt.argval).startswith("__"):
            return None
        fields.append(nxt.argval)
    return tuple(dict.fromkeys(fields))


# --- fingerprints ----------------------------------------------------------------------------------
#
# A fingerprint must change whenever an LF's votes may change, or the vote cache hands back stale votes.
# It is built from what the LF's code reaches: bytecode (not source text: a helper edited on disk after
# its module was imported must not pass for the code that runs), the globals, closure cells, defaults and
# imports that code uses, followed into other user modules, classes and instances; data by value. What
# cannot be hashed soundly (an object of a C type, a library object, a file the code opens at run time)
# is a *gap*: the LF then has no trustworthy fingerprint and is re-applied instead of read from the cache.

_GAPS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("labelflow_fingerprint_gaps", default=None)
"""The list the fingerprint being computed records its gaps in."""

_IO_BUILTINS = frozenset({"open", "input", "eval", "exec", "compile", "__import__", "globals", "breakpoint"})
"""Builtins whose result depends on more than their arguments (files, code given as text, the console)."""
_IO_ATTRIBUTES = frozenset({
    "read_text", "read_bytes", "read_csv", "read_parquet", "read_json", "read_ndjson", "read_excel", "read_ipc",
    "scan_csv", "scan_parquet", "scan_ndjson", "loadtxt", "genfromtxt", "fromfile", "urlopen", "iterdir",
    "listdir", "scandir", "glob", "rglob", "read_sql", "read_database",
})
"""Methods that read files or the network when called (a heuristic: such calls in an LF's code are gaps)."""
_CLASS_SKIP = frozenset({
    "__dict__", "__weakref__", "__module__", "__doc__", "__qualname__", "__annotations__", "__firstlineno__",
    "__static_attributes__", "__orig_bases__", "__parameters__", "_abc_impl", "__dataclass_fields__",
    "__dataclass_params__", "__match_args__",
})
"""Class attributes with no bearing on behaviour (or restated by the methods themselves)."""
_REPR_TYPES = (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, fractions.Fraction,
               pathlib.PurePath, uuid.UUID, range, slice, operator.itemgetter, operator.attrgetter,
               operator.methodcaller)
"""Library value types whose ``repr`` states their value exactly."""
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))
"""Locks guard shared state and never decide a vote: fingerprinted by their type."""
_WRAPPER_TYPES = (types.BuiltinFunctionType, types.MethodWrapperType, types.WrapperDescriptorType,
                  types.MethodDescriptorType, types.ClassMethodDescriptorType, types.GetSetDescriptorType,
                  types.MemberDescriptorType)


def _lf_identity(lf: LabelingFunction) -> tuple[str, tuple[str, ...]]:
    gaps: list[str] = []
    token = _GAPS.set(gaps)
    try:
        parts = list(lf._identity())
    finally:
        _GAPS.reset(token)
    digest = hashlib.blake2b(digest_size=16)
    for part in (FINGERPRINT_VERSION, lf.kind, lf.name, *parts):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return digest.hexdigest(), tuple(dict.fromkeys(gaps))


@dataclass
class _Refs:
    """What a code object (with its nested code) refers to."""

    globals: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    bare: set[str] = field(default_factory=set)  # globals used other than as ``NAME.attr``
    imports: list[tuple[str, int]] = field(default_factory=list)  # (module, level) imported at run time


def _code_refs(code: types.CodeType, refs: _Refs | None = None) -> _Refs:
    refs = refs if refs is not None else _Refs()
    instructions = list(dis.get_instructions(code))
    for i, ins in enumerate(instructions):
        name = ins.argval
        if ins.opname in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"):
            refs.globals.add(name)
            following = instructions[i + 1] if i + 1 < len(instructions) else None
            if following is None or following.opname not in ("LOAD_ATTR", "LOAD_METHOD"):
                refs.bare.add(name)
        elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "LOAD_SUPER_ATTR", "IMPORT_FROM"):
            refs.attributes.add(name)
        elif ins.opname == "IMPORT_NAME":
            level = instructions[i - 2].argval if i >= 2 and instructions[i - 2].opname == "LOAD_CONST" else 0
            refs.imports.append((name, level if isinstance(level, int) else 0))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_refs(const, refs)
    return refs


@functools.lru_cache(maxsize=None)
def _library_dirs() -> tuple[str, ...]:
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            paths.add(path)
    try:
        paths.update(site.getsitepackages())
        paths.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return tuple(sorted({os.path.realpath(p) for p in paths}))


@functools.lru_cache(maxsize=4096)
def _is_library(module: str | None) -> bool:
    """Whether ``module`` is installed code (the standard library, site-packages, labelflow itself), fingerprinted
    by name and version; user code (suite files, helper modules beside them, ``__main__``) is hashed instead."""
    if not module:
        return False
    top = module.partition(".")[0]
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()) or top in ("labelflow",
                                                                                                      "builtins"):
        return True
    if module == "__main__" or module in _SUITE_SOURCES:
        return False
    found = sys.modules.get(module) or sys.modules.get(top)
    files = [getattr(found, "__file__", None)] if found is not None else []
    if found is not None and files[0] is None:
        files = list(getattr(found, "__path__", []) or [])  # a namespace package
    if found is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return False
        files = [spec.origin] if spec is not None and spec.origin else []
        if spec is not None and spec.origin in ("built-in", "frozen"):
            return True
    if not files:
        return found is not None and getattr(found, "__spec__", None) is not None \
            and getattr(found.__spec__, "origin", None) in ("built-in", "frozen")
    return all(_is_library_file(file) for file in files)


@functools.lru_cache(maxsize=4096)
def _is_library_file(file: str) -> bool:
    """Whether ``file`` (a module's or a code object's file name) is installed code or labelflow's own."""
    if not os.path.isabs(file):  # "<stdin>", "<doctest ...>", "<string>": code given as text
        return False
    real = os.path.realpath(file)
    parts = Path(real).parts
    return "site-packages" in parts or "dist-packages" in parts \
        or any(real.startswith(lib + os.sep) for lib in (*_library_dirs(), _LABELFLOW_DIR))


_LABELFLOW_DIR = os.path.realpath(Path(__file__).parent)


@functools.lru_cache(maxsize=1024)
def _library_version(module: str) -> str:
    top = module.partition(".")[0]
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()) or top == "builtins":
        return "python" + ".".join(map(str, sys.version_info[:3]))
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return version
    try:
        from importlib import metadata

        return metadata.version(top)
    except Exception:  # no distribution of that name
        return ""


def _module_label(module: str) -> str:
    return Path(_SUITE_SOURCES[module][0]).name if module in _SUITE_SOURCES else module


class _Hasher:
    """Deterministic text for the code and data an LF depends on; what it cannot cover goes to :data:`_GAPS`."""

    def __init__(self) -> None:
        self.stack: set[int] = set()  # objects being hashed (cycle guard)
        self.memo: dict[int, str] = {}  # functions, classes and modules done (no cycle marker inside)
        self.cycles = 0

    def gap(self, where: str, what: str) -> None:
        gaps = _GAPS.get()
        if gaps is not None:
            gaps.append(f"{where} ({what})")

    def _guarded(self, obj: Any, label: str, make: Callable[[], str], *, memo: bool = False) -> str:
        key = id(obj)
        if memo and key in self.memo:
            return self.memo[key]
        if key in self.stack:
            self.cycles += 1
            return f"<cycle {label}>"
        self.stack.add(key)
        cycles = self.cycles
        try:
            text = make()
        finally:
            self.stack.discard(key)
        if memo and cycles == self.cycles:
            self.memo[key] = text
        return text

    # --- data ---------------------------------------------------------------------------------------

    def value(self, value: Any, where: str) -> str:
        kind = type(value)
        if value is None or kind in (bool, int, float, complex, str, bytes) or value is Ellipsis:
            return repr(value)
        if isinstance(value, enum.Enum):
            return f"enum:{self.cls(kind, where)}.{value.name}"
        if isinstance(value, (list, tuple, set, frozenset, dict, collections.deque, types.MappingProxyType)):
            return self._guarded(value, kind.__qualname__, lambda: self.container(value, where))
        if isinstance(value, re.Pattern):
            return f"re({value.pattern!r},{value.flags})"
        if isinstance(value, pl.Expr):
            return value.meta.serialize(format="json")
        if isinstance(value, (pl.DataFrame, pl.Series)):
            return self.polars(value)
        if isinstance(value, pl.DataType) or (isinstance(value, type) and issubclass(value, pl.DataType)):
            return f"polars-dtype:{value!r}"
        if kind.__module__ == "numpy" or kind.__module__.startswith("numpy."):
            found = self.numpy(value, where)
            if found is not None:
                return found
        if "pandas" in sys.modules and kind.__module__.startswith("pandas."):
            found = self.pandas(value)
            if found is not None:
                return found
        if isinstance(value, LabelingFunction) or _is_snorkel_lf(value):
            fingerprint, gaps = _lf_identity(as_lf(value))
            for gap in gaps:
                self.gap(where, f"LF {value.name!r}: {gap}")
            return f"lf:{fingerprint}"
        if isinstance(value, types.ModuleType):
            return self.module(value, None, where)
        if isinstance(value, type):
            return self.cls(value, where)
        if callable(value) or isinstance(value, (staticmethod, classmethod, property, functools.cached_property)):
            found = self.callable(value, where)
            if found is not None:
                return found
        if isinstance(value, _REPR_TYPES):
            return f"{kind.__module__}.{kind.__qualname__}:{value!r}"
        if isinstance(value, logging.Logger):  # logs, never votes
            return f"logger:{value.name}"
        if isinstance(value, _LOCK_TYPES):  # guards shared state, never votes
            return f"lock:{kind.__qualname__}"
        return self.instance(value, where)

    def container(self, value: Any, where: str) -> str:
        kind = type(value)
        if isinstance(value, (set, frozenset)):
            body = "{" + ",".join(sorted(self.value(v, where) for v in value)) + "}"
        elif isinstance(value, (dict, types.MappingProxyType)):
            items = sorted((self.value(k, where), self.value(v, where)) for k, v in value.items())
            body = "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
            if isinstance(value, collections.defaultdict):
                body += "default=" + self.value(value.default_factory, where)
        else:
            body = "[" + ",".join(self.value(v, where) for v in value) + "]"
        if kind in (list, tuple, set, frozenset, dict):
            return kind.__name__ + body
        # a subclass (a named tuple, a Counter, a user's dict): its class and its own attributes count too
        return self.cls(kind, where) + body + self.state(value, where)

    def polars(self, value: pl.DataFrame | pl.Series) -> str:
        if isinstance(value, pl.Series):
            return f"series:{value.name}:{value.dtype}:{len(value)}:" + _digest(value.hash(seed=0).to_numpy().tobytes())
        rows = value.hash_rows(seed=0).to_numpy().tobytes() if value.height and value.width else b""
        return f"frame:{value.schema}:{value.height}:" + _digest(rows)

    def numpy(self, value: Any, where: str) -> str | None:
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                return f"ndarray:{value.shape}:object:" + self.value(value.tolist(), where)
            return f"ndarray:{value.shape}:{value.dtype.str}:" + _digest(np.ascontiguousarray(value).tobytes())
        if isinstance(value, np.generic):
            return f"numpy:{value.dtype.str}:{value!r}"
        if isinstance(value, np.dtype):
            return f"numpy-dtype:{value.str}"
        return None

    def pandas(self, value: Any) -> str | None:
        import pandas as pd

        if not isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            return None
        try:
            hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index)).to_numpy().tobytes()
        except TypeError:  # unhashable cells (lists, dicts): by their text
            hashed = repr(value.to_dict() if not isinstance(value, pd.Index) else value.tolist()).encode()
        columns = list(value.columns) if isinstance(value, pd.DataFrame) else [getattr(value, "name", None)]
        dtypes = value.dtypes.astype(str).tolist() if isinstance(value, pd.DataFrame) else [str(value.dtype)]
        return f"pandas:{type(value).__name__}:{columns!r}:{dtypes}:{value.shape}:" + _digest(hashed)

    # --- code ---------------------------------------------------------------------------------------

    def callable(self, value: Any, where: str) -> str | None:
        """Functions, methods and wrappers of them; ``None`` for other callables (instances, by their state)."""
        if isinstance(value, types.FunctionType):
            return self.function(value, where)
        if isinstance(value, types.MethodType):
            return f"method:{self.value(value.__func__, where)}@{self.value(value.__self__, where)}"
        if isinstance(value, functools.partial):
            return (f"partial:{self.value(value.func, where)}:{self.value(value.args, where)}:"
                    f"{self.value(value.keywords, where)}")
        if isinstance(value, (staticmethod, classmethod)):
            return f"{type(value).__name__}:{self.value(value.__func__, where)}"
        if isinstance(value, property):
            return "property:" + ",".join(self.value(f, where) for f in (value.fget, value.fset, value.fdel))
        if isinstance(value, functools.cached_property):
            return "cached_property:" + self.value(value.func, where)
        if hasattr(value, "cache_info") and isinstance(getattr(value, "__wrapped__", None), types.FunctionType):
            return "lru_cache:" + self.function(value.__wrapped__, where)  # functools.lru_cache / cache
        if isinstance(value, _WRAPPER_TYPES):
            owner = getattr(value, "__self__", None)
            name = f"{getattr(value, '__module__', None) or ''}.{getattr(value, '__qualname__', repr(value))}"
            if owner is None or isinstance(owner, (types.ModuleType, type)):
                return f"builtin:{name}"
            return f"builtin:{name}@{self.value(owner, where)}"  # a bound method of a set, dict, str, ...
        return None

    def function(self, func: types.FunctionType, where: str) -> str:
        # by the file its code came from: code run from text (a doctest, exec) may carry a library's module name
        if _is_library(func.__module__) and _is_library_file(func.__code__.co_filename):
            return f"func:{func.__module__}.{func.__qualname__}@{_library_version(func.__module__)}"
        return self._guarded(func, func.__qualname__, lambda: self._function(func), memo=True)

    def _function(self, func: types.FunctionType) -> str:
        code = func.__code__
        label = f"{func.__qualname__}() in {_module_label(func.__module__ or '?')}"
        parts = [f"def {func.__qualname__}", self.code(code, label)]
        refs = _code_refs(code)
        scope = func.__globals__
        builtins = scope.get("__builtins__", {})
        builtins = vars(builtins) if isinstance(builtins, types.ModuleType) else builtins
        for name in sorted(refs.globals):
            if name in scope:
                value = scope[name]
                where = f"global {name!r} of {_module_label(func.__module__ or '?')}"
                if isinstance(value, types.ModuleType):
                    parts.append(f"{name}={self.module(value, None if name in refs.bare else refs.attributes, where)}")
                else:
                    parts.append(f"{name}={self.value(value, where)}")
            elif name in builtins:
                if name in _IO_BUILTINS:
                    self.gap(label, f"calls {name}(): what it reads at run time is not covered")
                parts.append(f"{name}=<builtin>")
            else:
                parts.append(f"{name}=<undefined>")
        for name, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                parts.append(f"{name}=<empty>")
                continue
            parts.append(f"{name}={self.value(contents, f'variable {name!r} captured by {label}')}")
        for name, level in refs.imports:
            parts.append(f"import {name}={self.imported(name, level, func, refs.attributes, label)}")
        for name in sorted(refs.attributes & _IO_ATTRIBUTES):
            self.gap(label, f"calls .{name}(): what it reads at run time is not covered")
        parts.append(self.value(func.__defaults__, f"the defaults of {label}"))
        parts.append(self.value(func.__kwdefaults__, f"the defaults of {label}"))
        return "\n".join(parts)

    def code(self, code: types.CodeType, label: str) -> str:
        """Bytecode, names and constants; no file name or line numbers (moving code does not change it)."""
        consts = ",".join(self.code(c, label) if isinstance(c, types.CodeType) else self.value(c, label)
                          for c in code.co_consts)
        return "|".join([code.co_name, code.co_code.hex(), repr(code.co_names), repr(code.co_varnames),
                         repr(code.co_freevars), repr(code.co_cellvars), str(code.co_argcount),
                         str(code.co_posonlyargcount), str(code.co_kwonlyargcount), str(code.co_flags),
                         getattr(code, "co_exceptiontable", b"").hex(), consts])

    def imported(self, name: str, level: int, func: types.FunctionType, attributes: set[str], label: str) -> str:
        """A module the code imports when it runs (``import x`` / ``from x import y`` inside a function)."""
        if level:
            try:
                name = importlib.util.resolve_name("." * level + name, func.__globals__.get("__package__"))
            except (ImportError, ValueError):
                self.gap(label, f"imports a relative module {name!r} at run time")
                return f"<import {name}>"
        module = sys.modules.get(name)
        if module is not None:
            return self.module(module, attributes, label)
        if _is_library(name):
            return f"module:{name}@{_library_version(name)}"
        self.gap(label, f"imports module {name!r} at run time and it is not imported yet")
        return f"<import {name}>"

    def module(self, module: types.ModuleType, attributes: set[str] | None, where: str) -> str:
        """A library module by name and version; a user module by the members the code reads
        (``attributes``), or all its members when the module itself is passed around (``None``)."""
        name = module.__name__
        if _is_library(name):
            return f"module:{name}@{_library_version(name)}"

        def members() -> str:
            names = sorted(n for n in vars(module) if not (n.startswith("__") and n.endswith("__")))
            if attributes is not None:
                names = [n for n in names if n in attributes]
            label = _module_label(name)
            return f"module:{name}{{" + ",".join(
                f"{n}={self.value(getattr(module, n), f'{label}.{n}')}" for n in names) + "}"

        return self._guarded(module, name, members)

    def cls(self, cls: type, where: str) -> str:
        if _is_library_class(cls):
            return f"class:{cls.__module__}.{cls.__qualname__}@{_library_version(cls.__module__)}"
        return self._guarded(cls, cls.__qualname__, lambda: self._cls(cls), memo=True)

    def _cls(self, cls: type) -> str:
        label = f"class {cls.__qualname__} in {_module_label(cls.__module__)}"
        parts = [f"class {cls.__qualname__}"]
        parts += [self.value(base, label) for base in cls.__bases__]
        if type(cls) is not type:
            parts.append("meta=" + self.value(type(cls), label))
        for name, member in sorted(vars(cls).items()):
            if name not in _CLASS_SKIP:
                parts.append(f"{name}={self.value(member, f'{label}: {name}')}")
        return "\n".join(parts)

    # --- instances ----------------------------------------------------------------------------------

    def instance(self, value: Any, where: str) -> str:
        kind = type(value)
        if not all(_transparent(c) for c in kind.__mro__):
            self.gap(where, f"a {kind.__module__}.{kind.__qualname__} object, which labelflow cannot hash")
            return f"object:{kind.__module__}.{kind.__qualname__}"
        return self._guarded(value, kind.__qualname__, lambda: self.cls(kind, where) + self.state(value, where))

    def state(self, value: Any, where: str) -> str:
        """The instance's attributes (``__dict__`` and ``__slots__``) by value."""
        state: dict[str, Any] = {}
        skip = {"_cache"} if type(value).__module__.startswith("snorkel.") else set()  # a memo of past outputs
        for c in type(value).__mro__:
            slots = vars(c).get("__slots__", ())
            for slot in [slots] if isinstance(slots, str) else slots:
                if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                    state[slot] = getattr(value, slot)
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            state.update(attributes)
        items = [f"{k}={self.value(v, f'{where}.{k}')}" for k, v in sorted(state.items()) if k not in skip]
        return "(" + ",".join(items) + ")" if items else ""


def _transparent(cls: type) -> bool:
    """Whether an instance's behaviour is its class's code plus its ``__dict__``/``__slots__`` (so it can be hashed):
    ``object``, classes of user code, a few library bases that keep no state of their own (``SimpleNamespace``
    keeps it all in ``__dict__``), Snorkel's (pure Python) mappers."""
    if cls is object or not _is_library_class(cls):
        return True
    if cls in (abc.ABC, typing.Generic, types.SimpleNamespace) \
            or (getattr(cls, "_is_protocol", False) and cls.__module__ == "typing"):
        return True
    return cls.__module__.startswith(("snorkel.map.", "snorkel.preprocess.", "snorkel.labeling.lf."))


def _is_library_class(cls: type) -> bool:
    """Installed code by its module, unless a method's code came from elsewhere (a class made by ``exec`` or in a
    doctest may carry a library's module name)."""
    if not _is_library(cls.__module__):
        return False
    methods = [m.__func__ if isinstance(m, (staticmethod, classmethod)) else m for m in vars(cls).values()]
    return all(_is_library_file(m.__code__.co_filename) for m in methods if isinstance(m, types.FunctionType))


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


# --- LF output ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While LF code runs, send what it prints to stderr (``sys.stdout`` and file descriptor 1 both), so
    stdout carries only labelflow's own output (``--json`` documents). Processes forked meanwhile inherit it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # what was printed before goes where it was meant to
    saved = None
    try:
        os.fstat(2)
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 (closed): Python-level only
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
