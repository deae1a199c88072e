"""Argument checks, each written once: an integer in a range, a number in a range, one of a ``Literal``'s values.

Every message names the argument and the value it got; the caller chooses the error class
(:class:`~labelflow.errors.LFError`, :class:`~labelflow.errors.LabelModelError` ...), so an
error keeps saying which part of labelflow refused it.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, get_args

from labelflow.errors import LabelflowError


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
              hint: str | None = None, error: type[Exception] = LabelflowError) -> int:
    """``value`` when it is an integer (Python's or NumPy's, not a bool) within ``[minimum, maximum]``; else raise
    ``error`` (``hint``, in parentheses after the rule, says what the number is).

    Examples
    --------
    >>> check_int("n_jobs", 4, minimum=1)
    4
    >>> check_int("n_jobs", True, minimum=1)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelflowError: n_jobs must be an integer ≥ 1; got True
    >>> check_int("k", 200, minimum=2, maximum=127)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelflowError: k must be an integer within 2..127; got 200
    """
    if not is_int(value, minimum=minimum, maximum=maximum):
        raise error(f"{name} must be {_kind('an integer', minimum, maximum)}{f' ({hint})' if hint else ''}; "
                    f"got {value!r}")
    return value


def is_int(value: Any, *, minimum: int | None = None, maximum: int | None = None) -> bool:
    """Whether ``value`` is an integer (Python's or NumPy's, not a bool) within ``[minimum, maximum]``: the test
    :func:`check_int` makes, for values read from files, where a failed test is not the caller's error.

    >>> is_int(3, minimum=1), is_int(3.0), is_int(False)
    (True, False, False)
    """
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and (minimum is None or value >= minimum) and (maximum is None or value <= maximum))


def check_number(name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None,
                 above: float | None = None, below: float | None = None, unit: str | None = None,
                 optional: bool = False, error: type[Exception] = LabelflowError) -> float | None:
    """``value`` when it is a finite number (not a bool) ``≥ minimum``, ``≤ maximum``, ``> above`` and ``< below``
    (each bound when given), or ``None`` when ``optional``; else raise ``error`` (``unit`` names what it counts).

    Examples
    --------
    >>> check_number("lr", 0.5, above=0, below=1)
    0.5
    >>> check_number("lr", 1, above=0, below=1)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelflowError: lr must be a number in (0, 1); got 1
    >>> check_number("timeout_s", float("nan"), above=0, unit="seconds", optional=True)
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelflowError: timeout_s must be a number of seconds > 0, or None; got nan
    """
    if value is None and optional:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or any(bound is not None and not holds(value, bound) for bound, holds in (
            (minimum, operator.ge), (maximum, operator.le), (above, operator.gt), (below, operator.lt))):
        what = "a number" if unit is None else f"a number of {unit}"
        raise error(f"{name} must be {what}{_range(minimum, maximum, above, below)}"
                    f"{', or None' if optional else ''}; got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Any, *, error: type[Exception] = LabelflowError) -> Any:
    """``value`` when it is one of the values of the ``Literal`` type ``choices``; else raise ``error`` naming them.

    Examples
    --------
    >>> from typing import Literal
    >>> check_choice("on_error", "skip", Literal["raise", "abstain"])
    Traceback (most recent call last):
    ...
    labelflow.errors.LabelflowError: on_error must be 'raise' or 'abstain'; got 'skip'
    """
    allowed = get_args(choices)
    if not allowed:
        raise TypeError(f"choices must be a typing.Literal of the allowed values; got {choices!r}")
    if isinstance(value, bool) or value not in allowed:  # True == 1: a bool is never an option's value
        raise error(f"{name} must be {one_of(allowed)}; got {value!r}")
    return value


def one_of(values: Any) -> str:
    """``"'a', 'b' or 'c'"``: values as a message lists them.

    >>> one_of(["a"]), one_of(("a", "b", "c"))
    ("'a'", "'a', 'b' or 'c'")
    """
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _kind(what: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} within {minimum}..{maximum}"
    if minimum is not None:
        return f"{what} ≥ {minimum}"
    if maximum is not None:
        return f"{what} ≤ {maximum}"
    return what


def _range(minimum: float | None, maximum: float | None, above: float | None, below: float | None) -> str:
    """``" in [0, 1)"``, ``" > 0"``, ``" ≤ 5"`` ...: the numbers the bounds allow."""
    low = f"[{minimum:g}" if minimum is not None else (None if above is None else f"({above:g}")
    high = f"{maximum:g}]" if maximum is not None else (None if below is None else f"{below:g})")
    if low and high:
        return f" in {low}, {high}"
    if low:
        return f" ≥ {minimum:g}" if minimum is not None else f" > {above:g}"
    if high:
        return f" ≤ {maximum:g}" if maximum is not None else f" < {below:g}"
    return ""
