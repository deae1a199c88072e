"""LF builders over polars expressions: keywords, a regular expression, a length range, a numeric range.

Each returns an :class:`~labelflow.lf.ExpressionLF` that votes its ``label`` where its
condition holds and abstains elsewhere; they run vectorized over the whole frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import LFError
from labelflow.lf import ExpressionLF
from labelflow.validation import check_choice, check_int

LengthUnit = Literal["chars", "words"]
"""What :func:`length_lf` counts: Unicode characters or words (runs of non-space)."""


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
