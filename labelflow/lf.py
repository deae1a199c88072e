"""Labeling functions: Python functions over a row, and polars expressions.

Three kinds share one interface, :class:`LabelingFunction`:

* :class:`PythonLF`, made with :func:`labeling_function`, runs once per row on a
  :class:`Row` with attribute access (``x.text``, ``x.author``, ...).
* :class:`ExpressionLF` wraps a polars expression that evaluates to a class index,
  or null / ``ABSTAIN``; :func:`keyword_lf`, :func:`regex_lf`, :func:`length_lf`
  and :func:`threshold_lf` build them. They run vectorized over the whole frame.
* Snorkel ``LabelingFunction`` objects are accepted unchanged and run as Python LFs.

Every LF has a :meth:`~LabelingFunction.fingerprint` that changes exactly when its
behaviour may change: its own source, the module-level helpers and constants it
reads, its closure and its resources. Votes are cached under it.
"""

from __future__ import annotations

import dis
import hashlib
import importlib.util
import inspect
import linecache
import re
import sys
import textwrap
import tokenize
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl

from labelflow.errors import LFError
from labelflow.typing import ABSTAIN

FINGERPRINT_VERSION = "1"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class Row(types.SimpleNamespace):
    """One data row as an object: each column is an attribute (``x.text``, ``x.id``)."""


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
        """Hex digest that changes whenever the LF's behaviour may change."""
        digest = hashlib.blake2b(digest_size=16)
        for part in (FINGERPRINT_VERSION, self.kind, self.name, *self._identity()):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
        return digest.hexdigest()

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
        """The row attributes ``func`` reads, when its code touches the row only as ``x.NAME``; else ``None``.

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
        return _row_attributes(self.func)

    def _identity(self) -> Iterable[str]:
        yield _callable_fingerprint(self.func, set())
        yield _value_fingerprint(self.resources, set())


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
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise LFError(f"LF {name!r}: label must be a class index ≥ 0; got {label!r}")
    return label


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
    unit: Literal["chars", "words"] = "chars",
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
    if unit not in ("chars", "words"):
        raise LFError(f"LF {name!r}: unit must be 'chars' or 'words'; got {unit!r}")
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

    Raises :class:`LFError` naming the file and line when the code fails.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        linecache.cache[path] = (len(source), None, source.decode("utf-8").splitlines(True), path)
        exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    except Exception as exc:
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
        """Unknown: preprocessors may read any field."""
        return None

    def _identity(self) -> Iterable[str]:
        lf = self.func
        yield _callable_fingerprint(lf._f, set())
        yield _value_fingerprint(lf._resources, set())
        for pre in lf._pre:
            yield type(pre).__qualname__ + getattr(pre, "name", "")
            if callable(getattr(pre, "_f", None)):
                yield _callable_fingerprint(pre._f, set())


# --- row attributes a Python LF reads ---------------------------------------------------------------


def _row_attributes(func: Any) -> tuple[str, ...] | None:
    """Attribute names loaded from ``func``'s first argument, if that is all it does with it."""
    if not isinstance(func, types.FunctionType) or func.__code__.co_argcount < 1:
        return None
    code = func.__code__
    row = code.co_varnames[0]
    if row in code.co_cellvars:  # captured by a nested function, lambda or comprehension
        return None
    fields: list[str] = []
    instructions = list(dis.get_instructions(code))
    for ins, nxt in zip(instructions, [*instructions[1:], None]):
        names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
        if "FAST" not in ins.opname or row not in names:
            continue
        if not ins.opname.startswith("LOAD_FAST") or len(names) > 1 or nxt is None \
                or nxt.opname not in ("LOAD_ATTR", "LOAD_METHOD") or str(nxt.argval).startswith("__"):
            return None
        fields.append(nxt.argval)
    return tuple(dict.fromkeys(fields)) or None


# --- fingerprints ----------------------------------------------------------------------------------


def _callable_fingerprint(func: Any, seen: set[int]) -> str:
    """Source of ``func`` plus fingerprints of the globals, closure cells and defaults it uses."""
    func = inspect.unwrap(func)
    if id(func) in seen:
        return f"<recursive {getattr(func, '__qualname__', '?')}>"
    seen.add(id(func))
    if not isinstance(func, types.FunctionType):
        if isinstance(func, (types.BuiltinFunctionType, type)):
            return f"{getattr(func, '__module__', '')}.{func.__qualname__}"
        return _callable_fingerprint(type(func).__call__, seen) + _value_fingerprint(vars(func), seen)
    code = func.__code__
    try:
        parts = [textwrap.dedent(inspect.getsource(func))]
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):  # no source, or a file that is not its source
        parts = [repr(code.co_code), repr(code.co_consts)]
    module = func.__module__
    for name in sorted(_code_names(code)):
        if name in func.__globals__:
            parts.append(f"{name}={_dependency_fingerprint(func.__globals__[name], module, seen)}")
    for name, cell in zip(code.co_freevars, func.__closure__ or ()):
        try:
            parts.append(f"{name}={_dependency_fingerprint(cell.cell_contents, module, seen)}")
        except ValueError:  # empty cell
            parts.append(f"{name}=<empty>")
    parts.append(_value_fingerprint(func.__defaults__, seen))
    parts.append(_value_fingerprint(func.__kwdefaults__, seen))
    return "\n".join(parts)


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _dependency_fingerprint(value: Any, module: str, seen: set[int]) -> str:
    """Functions from the LF's own module are fingerprinted by source; others by name."""
    target = inspect.unwrap(value) if callable(value) else value
    if isinstance(target, types.FunctionType) and target.__module__ == module:
        return _callable_fingerprint(target, seen)
    return _value_fingerprint(value, seen)


def _value_fingerprint(value: Any, seen: set[int]) -> str:
    """Deterministic text for plain data; a type or qualified name for everything else."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "[" + ",".join(_value_fingerprint(v, seen) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "set[" + ",".join(sorted(_value_fingerprint(v, seen) for v in value)) + "]"
    if isinstance(value, Mapping):
        items = sorted((_value_fingerprint(k, seen), _value_fingerprint(v, seen)) for k, v in value.items())
        return "dict{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r},{value.flags})"
    if isinstance(value, pl.Expr):
        return value.meta.serialize(format="json")
    if isinstance(value, LabelingFunction):
        return f"lf:{value.fingerprint()}"
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}:{getattr(value, '__version__', '')}"
    if isinstance(value, types.FunctionType):
        return f"func:{value.__module__}.{value.__qualname__}"
    if isinstance(value, type) or callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return f"object:{type(value).__module__}.{type(value).__qualname__}"
