""":class:`~labelflow.finetune.config.FinetuneConfig` as command-line options, generated from its fields.

Each field is one ``labelflow finetune`` option: ``--<name with dashes>`` (or the
field's ``flag`` metadata), its type and default from the annotation and default, its
choices from the ``Literal``, its help from the class docstring's entry. A ``bool``
field is a switch: ``--<name>`` when it defaults to ``False``, ``--no-<name>`` when it
defaults to ``True``. A ``tuple[str, ...]`` is comma-separated. A field with ``none``
metadata takes that value on the command line for ``None`` (``--patience 0``). Fields
with ``cli=False`` metadata have no option. The field metadata is set in
:mod:`labelflow.finetune.config` (``group``: the help section).

:func:`add_config_options` adds the options, :func:`config_from_args` reads them back,
:func:`config_argv` writes a config as options (for a background run).

Examples
--------
>>> from labelflow.finetune.config import FinetuneConfig
>>> config_argv(FinetuneConfig(lora_target_modules=("q", "v"), epochs=2, drop_uncovered=True, patience=None))
['--target-modules', 'q,v', '--epochs', '2', '--drop-uncovered', '--patience', '0']
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from typing import Any, Literal

from labelflow.errors import FinetuneError
from labelflow.finetune.config import FinetuneConfig


@dataclasses.dataclass(frozen=True)
class Option:
    """How one config field reads and writes on the command line.

    Attributes
    ----------
    field, flag
        The config field and its option (``--epochs``).
    kind
        ``value`` (one value), ``list`` (comma-separated), ``switch_on`` (``--x`` sets True) or ``switch_off``
        (``--no-x`` sets False).
    parse
        ``str`` → value for a ``value`` option (``int``, ``float``, ``str``).
    choices
        The ``Literal``'s values, or ``None``.
    none
        The command-line value that stands for ``None`` (``None``: there is none).
    default, group, help
        The field's default, its help section, the help text.
    """

    field: str
    flag: str
    kind: Literal["value", "switch_on", "switch_off", "list"]
    parse: Any
    choices: tuple[str, ...] | None
    none: Any
    default: Any
    group: str
    help: str


def options(cls: type = FinetuneConfig) -> list[Option]:
    """The command-line options of the config dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        tp, parse, choices, kind = hints[f.name], None, None, "value"
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is Literal:
            choices, parse = tuple(typing.get_args(tp)), str
        elif tp is bool:
            kind = "switch_off" if f.default else "switch_on"
        elif typing.get_origin(tp) is tuple:
            kind = "list"
        else:
            parse = tp
        name = f.name.replace("_", "-")
        flag = meta.get("flag") or (f"--no-{name}" if kind == "switch_off" else f"--{name}")
        help_ = ("Off (on by default): " if kind == "switch_off" else "") + docs.get(f.name, "")
        if meta.get("none") is not None:
            help_ += f" {meta['none']} on the command line: None."
        if kind in ("value", "list") and f.default is not None:
            help_ += f" Default {f.default}."
        out.append(Option(f.name, flag, kind, parse, choices, meta.get("none"), f.default, meta.get("group", "options"),
                           help_.strip().replace("%", "%%")))
    return out


def add_config_options(parser: argparse.ArgumentParser, cls: type = FinetuneConfig) -> None:
    """Add an option per field of ``cls`` to ``parser``, in argument groups by the fields' ``group``."""
    groups: dict[str, Any] = {}
    for o in options(cls):
        g = groups.get(o.group) or groups.setdefault(o.group, parser.add_argument_group(o.group))
        if o.kind == "switch_on":
            g.add_argument(o.flag, dest=o.field, action="store_true", help=o.help)
        elif o.kind == "switch_off":
            g.add_argument(o.flag, dest=o.field, action="store_false", help=o.help)
        elif o.kind == "list":
            g.add_argument(o.flag, dest=o.field, default=o.default, type=_comma_list, metavar="A,B,...", help=o.help)
        else:
            g.add_argument(o.flag, dest=o.field, default=o.default, type=o.parse, choices=o.choices, help=o.help)


def config_from_args(args: argparse.Namespace, cls: type = FinetuneConfig, **fixed: Any) -> Any:
    """The ``cls`` instance the options of :func:`add_config_options` describe, with ``fixed`` fields set as given
    (those without an option). Raises what ``cls`` raises for a bad value (:class:`FinetuneError`)."""
    values = {}
    for o in options(cls):
        value = getattr(args, o.field)
        values[o.field] = None if o.none is not None and value == o.none else value
    return cls(**values, **fixed)


def config_argv(config: Any) -> list[str]:
    """The options of :func:`add_config_options` that give ``config`` back; those at their default are left out
    (so are fields without an option: ``progress``, which the CLI sets from ``--json``)."""
    argv: list[str] = []
    for o in options(type(config)):
        value = getattr(config, o.field)
        if value == o.default:
            continue
        if o.kind in ("switch_on", "switch_off"):
            argv.append(o.flag)
        elif value is None:
            if o.none is None:
                raise FinetuneError(f"{o.field}=None has no command-line form ({o.flag} defaults to {o.default!r})")
            argv += [o.flag, str(o.none)]
        elif o.kind == "list":
            argv += [o.flag, ",".join(value)]
        else:
            argv += [o.flag, str(value)]
    return argv


def field_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from the numpydoc ``Parameters`` section of ``cls``'s docstring, reST markup
    removed (``\\`\\`x\\`\\``` and ``:role:`x``` become ``x``), one line per field.

    >>> field_docs(FinetuneConfig)["grad_accum"]
    'Micro-batches per optimizer step.'
    """
    doc = (cls.__doc__ or "").expandtabs()
    section = re.split(r"\n\s*Parameters\n\s*-+\n", doc, maxsplit=1)[-1]
    out, name, lines = {}, None, []
    for line in section.splitlines():
        if line.strip() and len(line) - len(line.lstrip()) <= 4:
            if name:
                out[name] = " ".join(lines)
            name, lines = line.strip(), []
        elif line.strip():
            lines.append(line.strip())
    if name:
        out[name] = " ".join(lines)
    text = {k: re.sub(r":\w+:`~?([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1], v) for k, v in out.items()}
    return {k: v.replace("``", "") for k, v in text.items()}


def _comma_list(value: str) -> tuple[str, ...] | None:
    """``"a, b"`` → ``("a", "b")``; ``""`` → ``None``."""
    return tuple(t.strip() for t in value.split(",") if t.strip()) or None
