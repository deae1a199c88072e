"""What a labeling function's code reads and reaches: the row fields it reads, and its fingerprint.

:func:`row_attributes` reads from a Python LF's bytecode the row fields it uses
(``x.NAME``, ``x["NAME"]``), so the applier may memoize it and read only those
columns; :func:`mapper_reads` does the same for a Snorkel preprocessor.

:func:`lf_identity` gives an LF's fingerprint, which keys its votes in the vote cache,
and the gaps it could not cover; :class:`Hasher` turns the code and data an LF reaches
into deterministic text. :data:`FINGERPRINT_VERSION` keys every fingerprint: changing
it, or the text :class:`Hasher` makes, invalidates the vote caches of every project.
"""

from __future__ import annotations

import abc
import collections
import contextvars
import datetime
import decimal
import dis
import enum
import fractions
import functools
import hashlib
import importlib.util
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from labelflow.suite_loading import suite_file

FINGERPRINT_VERSION = "2"
"""Part of every fingerprint: votes cached under another version are never read."""


# --- row attributes an LF reads ----------------------------------------------------------------------


def row_attributes(func: Any, *, mutating: bool = False) -> tuple[str, ...] | None:
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


def mapper_reads(pre: Any) -> tuple[str, ...] | None:
    """Row fields a Snorkel mapper (and the mappers it runs first) reads, or ``None`` if unknown."""
    try:
        from snorkel.map.core import BaseMapper, LambdaMapper, Mapper
    except ImportError:
        return None
    if not isinstance(pre, BaseMapper) or type(pre).__call__ is not BaseMapper.__call__:
        return None
    generate = type(pre)._generate_mapped_data_point
    if generate is LambdaMapper._generate_mapped_data_point:
        found = row_attributes(pre._f, mutating=True)
    elif generate is Mapper._generate_mapped_data_point and isinstance(pre.field_names, Mapping):
        found = tuple(pre.field_names.values())  # run() sees these fields only
    else:
        return None
    if found is None:
        return None
    columns = dict.fromkeys(found)
    for inner in pre._pre:
        more = mapper_reads(inner)
        if more is None:
            return None
        columns.update(dict.fromkeys(more))
    return tuple(columns)


# --- fingerprints ------------------------------------------------------------------------------------
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


class Fingerprinted(Protocol):
    """What :func:`lf_identity` reads of an LF: its kind, its name and the parts of its identity (text each)."""

    kind: str
    name: str

    def _identity(self) -> Iterable[str]: ...


def lf_identity(lf: Fingerprinted) -> tuple[str, tuple[str, ...]]:
    """``(fingerprint, gaps)`` of ``lf``: the hex digest of its kind, name and identity parts under
    :data:`FINGERPRINT_VERSION`, and what the parts could not cover, one phrase each."""
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
    if module == "__main__" or suite_file(module) is not None:
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
    path = suite_file(module)
    return Path(path).name if path is not None else module


class Hasher:
    """Deterministic text for the code and data an LF depends on; what it cannot cover goes to :data:`_GAPS`.

    Parameters
    ----------
    lf_of
        The LF a value is, ready for :func:`lf_identity` (a Snorkel LF wrapped), or ``None`` when the value is
        no LF: an LF met in the data is hashed by its fingerprint.
    """

    def __init__(self, lf_of: Callable[[Any], Fingerprinted | None]) -> None:
        self.lf_of = lf_of
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
        lf = self.lf_of(value)
        if lf is not None:
            fingerprint, gaps = lf_identity(lf)
            for gap in gaps:
                self.gap(where, f"LF {lf.name!r}: {gap}")
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
