"""Labeling functions: Python functions over a row, and polars expressions.

Three kinds share one interface, :class:`LabelingFunction`:

* :class:`PythonLF`, made with :func:`labeling_function`, runs once per row on a
  :class:`Row` with attribute and item access (``x.text``, ``x["author"]``, ...).
* :class:`ExpressionLF` wraps a polars expression that evaluates to a class index,
  or null / ``ABSTAIN``; :mod:`labelflow.lf_builders` builds the common ones (keywords,
  regular expressions, ranges). They run vectorized over the whole frame.
* Snorkel ``LabelingFunction`` objects are accepted unchanged and run as Python LFs.

Every LF has a :meth:`~LabelingFunction.fingerprint` that changes whenever its
behaviour may change: its own code, the helpers, classes, modules and data it
reaches (in the suite file or other user modules, followed recursively), its
closure and its resources. Votes are cached under it. What the fingerprint cannot
cover (an object of a library or C type, a file opened at run time) is listed by
:meth:`~LabelingFunction.uncovered`; such an LF is re-applied, never read from the cache.
Fingerprints and the row fields an LF reads are computed in :mod:`labelflow.lf_fingerprint`;
suite files are run as modules by :mod:`labelflow.suite_loading`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from labelflow.conventions import ABSTAIN  # noqa: F401 (the examples use it)
from labelflow.errors import LFError
from labelflow.lf_fingerprint import Hasher, lf_identity, mapper_reads, row_attributes
from labelflow.suite_loading import import_suite_file

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
        return lf_identity(self)[0]

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
        return lf_identity(self)[1]

    def cache_identity(self) -> tuple[str, tuple[str, ...]]:
        """``(fingerprint, uncovered)`` computed in one pass: :meth:`fingerprint` and :meth:`uncovered`."""
        return lf_identity(self)

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
        return row_attributes(self.func) or None

    def columns(self) -> tuple[str, ...] | None:
        """The row fields the function reads (:meth:`row_fields`), or ``None`` when it may read any column."""
        return self.row_fields()

    def _identity(self) -> Iterable[str]:
        hasher = Hasher(_lf_or_none)
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
    module = source if isinstance(source, types.ModuleType) else import_suite_file(Path(source))
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
        found = row_attributes(self.func._f)
        if found is None:
            return None
        columns = dict.fromkeys(found)
        for pre in self.func._pre:
            more = mapper_reads(pre)
            if more is None:
                return None
            columns.update(dict.fromkeys(more))
        return tuple(columns)

    def _identity(self) -> Iterable[str]:
        lf, hasher = self.func, Hasher(_lf_or_none)
        yield hasher.value(lf._f, f"LF {self.name!r}")
        yield hasher.value(lf._resources, f"the resources of LF {self.name!r}")
        for pre in lf._pre:
            yield hasher.value(pre, f"preprocessor {getattr(pre, 'name', '?')!r} of LF {self.name!r}")


def _lf_or_none(value: Any) -> LabelingFunction | None:
    """``value`` as an LF when it is one (labelflow's or Snorkel's), else ``None``: how a :class:`Hasher` tells
    the LFs an LF's code reaches, to hash them by their fingerprint."""
    return as_lf(value) if isinstance(value, LabelingFunction) or _is_snorkel_lf(value) else None
