"""A project's config file, ``labelflow.json``: its fields, their checks, reading and writing it, and re-tying its
paths after the project folder moved.

Paths in the config (``sources``, ``lfs``) are relative to the project folder (the folder
holding ``labelflow.json``), or absolute; ``root`` records that folder's absolute path when
the file was written, so a project found elsewhere can be recognised as moved or copied
(:func:`relocate_config`).
"""

from __future__ import annotations

import filecmp
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

from labelflow.chunk_applier import OnError
from labelflow.dataset import Duplicates
from labelflow.errors import DataError, LFError, ProjectError
from labelflow.extend import ExtendConfig
from labelflow.files import write_json
from labelflow.labelmodels import label_model_names
from labelflow.schema import ClassSchema
from labelflow.validation import is_int

CONFIG_FILE = "labelflow.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProjectConfig:
    """The contents of ``labelflow.json``.

    Paths (``sources``, ``lfs``) are relative to the project folder (the folder holding
    ``labelflow.json``), or absolute. ``root`` records that folder's absolute path when the
    file was written: a project found elsewhere was moved or copied, and :meth:`Project.open`
    re-checks its paths once (see :func:`relocate_config`).
    """

    name: str
    classes: list[dict[str, str]]
    text: dict[str, str]
    sources: dict[str, list[str]]
    id: str | None = None
    label: str | None = None
    split: str | None = None
    dev_sample: int = 0
    seed: int = 0
    hide_labels: list[str] = field(default_factory=list)
    duplicates: Duplicates = "error"
    lfs: str | None = None
    label_model: str = "labelflow"
    studio_url: str | None = None
    studio_api_key_env: str = "LABEL_STUDIO_API_KEY"
    ray_address: str | None = None
    extend: dict[str, Any] | None = None
    on_error: OnError = "raise"
    """What :meth:`Project.apply` and a tried LF do where an LF raises on a row: stop (``"raise"``) or abstain there."""
    disabled_lfs: list[str] = field(default_factory=list)
    """LFs of the suite left out of :meth:`Project.lfs`: not applied, not in the label matrix, not fit."""
    root: str | None = None
    format: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():  # a hand-edited labelflow.json may hold anything
            check, what = _CONFIG_TYPES[key]
            if not check(value):
                raise ProjectError(f"{key!r} must be {what}; got {json.dumps(value)[:80]}")
        ClassSchema.from_dict(self.classes)
        if self.dev_sample < 0:
            raise ProjectError(f"dev_sample must be ≥ 0; got {self.dev_sample}")
        if self.label_model not in label_model_names():
            raise ProjectError(f"unknown label model {self.label_model!r}; known models are {label_model_names()}")
        try:
            ExtendConfig.from_dict(self.extend)
        except LFError as exc:
            raise ProjectError(str(exc)) from None

    @property
    def schema(self) -> ClassSchema:
        return ClassSchema.from_dict(self.classes)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(map(_is_str, v))


_OPTIONAL_STR = (lambda v: v is None or _is_str(v), "a string or null")
_CONFIG_TYPES: dict[str, tuple[Any, str]] = {
    "name": (_is_str, "a string"),
    "classes": (lambda v: isinstance(v, list) and all(isinstance(c, dict) and _is_str(c.get("name"))
                                                      and _is_str(c.get("description", "")) for c in v),
                'a list of {"name": ..., "description": ...} objects'),
    "text": (lambda v: isinstance(v, dict) and bool(v) and all(map(_is_str, [*v, *v.values()])),
             "an object of text field → column name"),
    "sources": (lambda v: isinstance(v, dict) and all(_is_str(k) and _str_list(p) for k, p in v.items()),
                "an object of split → list of file paths"),
    "id": _OPTIONAL_STR, "label": _OPTIONAL_STR, "split": _OPTIONAL_STR, "lfs": _OPTIONAL_STR, "root": _OPTIONAL_STR,
    "studio_url": _OPTIONAL_STR, "ray_address": _OPTIONAL_STR,
    "dev_sample": (is_int, "an integer"), "seed": (is_int, "an integer"), "format": (is_int, "an integer"),
    "hide_labels": (_str_list, "a list of split names"),
    "duplicates": (lambda v: v in get_args(Duplicates), " or ".join(map(json.dumps, get_args(Duplicates)))),
    "label_model": (_is_str, "a label model's name"), "studio_api_key_env": (_is_str, "a string"),
    "extend": (lambda v: v is None or isinstance(v, dict), "null or an object of settings (labelflow.extend)"),
    "on_error": (lambda v: v in get_args(OnError), " or ".join(map(json.dumps, get_args(OnError)))),
    "disabled_lfs": (_str_list, "a list of LF names"),
}
"""What each key of ``labelflow.json`` holds: (check, what the error says it must be)."""


def read_config(root: Path) -> ProjectConfig:
    """The config of the project folder ``root``; :class:`ProjectError` naming the file and what is wrong in it."""
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ProjectError(f"{root} is not a labelflow project: {CONFIG_FILE} is missing (create one with `labelflow init`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProjectError(f"{path} must hold a JSON object; got {type(raw).__name__}")
    if raw.get("format") != FORMAT_VERSION:
        raise ProjectError(f"{path} has format {raw.get('format')!r}; this labelflow reads format {FORMAT_VERSION}")
    known = set(ProjectConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProjectError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    fields = ProjectConfig.__dataclass_fields__.values()
    missing = [f.name for f in fields if f.default is MISSING and f.default_factory is MISSING and f.name not in raw]
    if missing:
        raise ProjectError(f"{path}: missing keys {missing}")
    try:
        return ProjectConfig(**raw)
    except (ProjectError, DataError) as exc:
        raise ProjectError(f"{path}: {exc}; fix it by hand or re-create the project with `labelflow init`") from None


def write_config(root: Path, config: ProjectConfig) -> Path:
    """Write ``config`` to ``root/labelflow.json`` atomically; returns the file."""
    write_json(root / CONFIG_FILE, asdict(config))
    return root / CONFIG_FILE


def relocate_config(config: ProjectConfig, here: Path) -> tuple[ProjectConfig, list[str]]:
    """``config`` with its relative paths tied to ``here``, the folder holding it now, and what was decided.

    ``config.root`` records where the project was when its paths were written. When the
    project is found elsewhere (moved or copied), each relative path (``lfs``, ``sources``)
    is checked: a file found relative to ``here`` is kept (it moved along); a file found only
    relative to where the project was is pointed at (rewritten relative to ``here``); a path
    found in neither place, or in both with different contents, is said rather than guessed.
    An older config without ``root`` gets it.
    """
    old = None if config.root is None else Path(config.root)
    notes = [f"{CONFIG_FILE} now records the project's folder, {here} (it was written by an older labelflow), "
             "so its paths keep resolving after a move or copy" if old is None else
             f"the project was at {old} and is now at {here} (moved or copied): its paths were checked"]
    lfs = _relocated("lfs", config.lfs, old, here, notes)
    moved: list[str] = []  # data files re-pointed to where they were: said in one line when there are several
    sources = {split: [_relocated(f"sources.{split or 'all'}", p, old, here, notes, moved) for p in paths]
               for split, paths in config.sources.items()}
    if len(moved) > 2:
        notes = [n for n in notes if not (n.startswith("sources.") and n.endswith(tuple(moved)))]
        notes.append(f"sources: {len(moved)} data files are not beside the project's new folder; they now name the "
                     f"files they named before the move, in {', '.join(sorted({str(Path(m).parent) for m in moved}))}")
    return replace(config, lfs=lfs, sources=sources, root=str(here)), notes


def _relocated(key: str, path: str | None, old: Path | None, here: Path, notes: list[str],
               moved: list[str] | None = None) -> str | None:
    """A relative ``path`` of a project moved from ``old`` to ``here`` (``old`` ``None``: not known), as it should
    be written now; what was decided and is worth saying goes to ``notes`` (see :func:`relocate_config`), a file
    re-pointed to where it was to ``moved`` when given (its caller says those in one line when there are several)."""
    if path is None or Path(path).is_absolute():
        return path
    new_file = Path(os.path.normpath(here / path))
    old_file = None if old is None else Path(os.path.normpath(old / path))
    if new_file.exists():
        if old_file is not None and old_file.is_file() and new_file.is_file() and not _same_file(new_file, old_file):
            notes.append(f"{key}: using {new_file}, beside the project; the file it named before the move, {old_file}, "
                         f"also exists and differs (`labelflow config --set {key}=PATH` chooses another)")
        return path
    if old_file is not None and old_file.exists():
        if moved is not None:
            moved.append(str(old_file))
        notes.append(f"{key}: {path} is not beside the project's new folder; it now names the file it named before "
                     f"the move, {old_file}")
        return relative_path(old_file, here)
    notes.append(f"{key}: {path} is not found at {new_file}" + ("" if old_file is None else
                 f" nor at {old_file}, where the project was") + f"; set it with `labelflow config --set {key}=PATH`")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when possible (so a project folder can move), else absolute."""
    try:
        return os.path.relpath(path.resolve(), root.resolve())
    except ValueError:  # different drives on Windows
        return str(path.resolve())
