"""A project's settings, shown and changed in place (``labelflow config``), without re-creating the project.

``labelflow config --set KEY=VALUE`` changes ``labelflow.json`` atomically and keeps
the store (FM outputs, vote caches, the label matrix, fitted models, annotations).
A change to the column mapping or the data files re-imports the dataset; what a
change leaves stale (the label matrix after a new suite or new rows, FM outputs
computed from other rows) is recorded (:meth:`~labelflow.project.Project.stale`)
and said by every later command until it is recomputed.

Keys (:data:`KEYS`); an empty VALUE clears an optional setting::

    labelflow config -p proj --set lfs=lfs/other_suite.py --set label_model=snorkel
    labelflow config -p proj --set text=TITLE --set text.body=CONTENT --set id=
    labelflow config -p proj --set sources.test=data/new_test.csv --set describe.SPAM="an ad"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from labelflow.errors import DataError, ProjectError

if TYPE_CHECKING:
    from labelflow.project import Project

KEYS: dict[str, str] = {
    "name": "the task's name",
    "lfs": "the LF suite: a Python file (a path from the working directory; empty: none)",
    "label_model": "the default label model (a registered name)",
    "text": "the column of the primary text field",
    "text.FIELD": "the column of another text field (empty: drop the field)",
    "id": "the id column (empty: ids are <file>:<row>)",
    "label": "the gold label column (empty: none)",
    "split": "the column holding each row's split (empty: splits from the data files)",
    "sources.SPLIT": "the data files of SPLIT (train, dev, test), comma-separated (empty: drop the split)",
    "sources": "data files without a split, comma-separated (every row train, or split by the split column)",
    "dev_sample": "train rows moved to dev (a whole number ≥ 0)",
    "seed": "the seed of the dev sample (a whole number ≥ 0)",
    "hide_labels": "splits whose gold labels are dropped, comma-separated (empty: none)",
    "duplicates": "error or drop_identical (rows repeating an earlier row exactly)",
    "describe.CLASS": "the one-sentence description of class CLASS (zero-shot and prompt LFs read it)",
    "ray_address": "the Ray cluster `apply --engine ray` connects to (empty: none)",
    "studio_url": "the Label Studio URL (empty: none; a URL is used with the API key only once confirmed with --url)",
}
"""The settable keys and what each holds."""
DATA_KEYS = ("text", "sources", "id", "label", "split", "dev_sample", "seed", "hide_labels", "duplicates")
"""Config fields that shape the imported dataset: changing one re-imports it."""
REFUSED = {
    "classes": "class names cannot change in place (gold labels, annotations and models refer to them); change a "
               "description with describe.CLASS=TEXT, or create a new project with `labelflow init`",
    "extend": "embedding-extended LFs are turned on and off with `labelflow apply --extend [COLUMN]` / `--no-extend`",
    "format": "the file format version is labelflow's own",
    "root": "the project's folder is where labelflow.json is; it is recorded by labelflow",
}


def parse_settings(items: Sequence[str], project: Project) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` → the config fields they change, each value checked.

    Paths are read from the working directory and stored relative to the project's folder.
    Raises :class:`~labelflow.errors.ProjectError` naming the key, the value and what it takes.
    """
    from labelflow.dataset import STANDARD_SPLITS, Duplicates, canonical_split
    from labelflow.labelmodels import label_model_names
    from labelflow.project_config import relative_path

    config = project.config
    changes: dict[str, Any] = {}

    def current(field: str) -> Any:
        return changes.get(field, getattr(config, field))

    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ProjectError(f"--set takes KEY=VALUE; got {item!r}")
        base, dot, sub = key.partition(".")
        if base in REFUSED and not dot:
            raise ProjectError(f"--set {key}: {REFUSED[base]}")
        if not ((base in ("text", "sources", "describe") and bool(sub)) if dot else base in KEYS):
            raise ProjectError(f"--set {key}: unknown setting; settable keys are {', '.join(KEYS)}")
        where = f"--set {key}={value}"
        if base == "name":
            if not value:
                raise ProjectError(f"{where}: the name must not be empty")
            changes["name"] = value
        elif base == "lfs":
            changes["lfs"] = _suite(value, project, where) if value else None
        elif base == "label_model":
            if value not in label_model_names():
                raise ProjectError(f"{where}: unknown label model; known models are {', '.join(label_model_names())}")
            changes["label_model"] = value
        elif base == "text":
            text = dict(current("text"))
            field = sub or "text"
            if value:
                text[field] = value
            elif field == "text":
                raise ProjectError(f"{where}: the primary text field needs a column")
            elif text.pop(field, None) is None:
                raise ProjectError(f"{where}: there is no text field {field!r} to drop; fields are {sorted(text)}")
            changes["text"] = text
        elif base in ("id", "label", "split", "ray_address", "studio_url"):
            changes[base] = value or None
        elif base == "sources":
            sources = {k: list(v) for k, v in current("sources").items()}
            split = "" if not dot else canonical_split(sub)
            if dot and split not in STANDARD_SPLITS:
                raise ProjectError(f"--set {key}: unknown split {sub!r}; a source split is one of "
                                   f"{', '.join(STANDARD_SPLITS)} (valid, validation, val mean dev)")
            if not value:
                if sources.pop(split, None) is None:
                    raise ProjectError(f"{where}: the project has no {split or 'split-less'} data files to drop")
            else:
                paths = [p.strip() for p in value.split(",") if p.strip()]
                missing = [p for p in paths if not Path(p).is_file()]
                if missing:
                    raise ProjectError(f"{where}: no such data file: {missing[0]!r}")
                sources[split] = [relative_path(Path(p), project.root) for p in paths]
                if ("" in sources) and len(sources) > 1:
                    raise ProjectError(f"{where}: give every data file a split, or none (the project's data files "
                                       f"are {_sources_text(sources)}); drop the others first, e.g. --set sources.train=")
            if not sources:
                raise ProjectError(f"{where}: a project needs data files")
            changes["sources"] = sources
        elif base in ("dev_sample", "seed"):
            if not value.isdigit():
                raise ProjectError(f"{where}: expected a whole number ≥ 0")
            changes[base] = int(value)
        elif base == "hide_labels":
            changes["hide_labels"] = [canonical_split(s.strip()) for s in value.split(",") if s.strip()]
        elif base == "duplicates":
            if value not in get_args(Duplicates):
                raise ProjectError(f"{where}: expected {' or '.join(get_args(Duplicates))}")
            changes["duplicates"] = value
        elif base == "describe":
            classes = [dict(c) for c in current("classes")]
            names = [c["name"] for c in classes]
            if sub not in names:
                raise ProjectError(f"--set {key}: no class {sub!r}; the classes are {', '.join(names)}")
            classes[names.index(sub)]["description"] = value
            changes["classes"] = classes
    return changes


def change_settings(project: Project, changes: dict[str, Any]) -> dict[str, Any]:
    """Change the project's config fields ``changes`` (from :func:`parse_settings`) in place.

    Checked as a whole first (nothing is written when a value is wrong). A change of a
    :data:`DATA_KEYS` field re-imports the dataset from the data files (a missing file or
    column is an error naming it, and nothing changes); then ``labelflow.json`` is written
    atomically and the new dataset renamed into place. Nothing else in the store is
    removed: what the change leaves stale is marked (:meth:`Project.stale`). A suite
    named here is trusted as it is now (the user named the file, as with ``init --lfs``).

    Returns
    -------
    dict
        ``changed`` (``{field: {"from": old, "to": new}}``), ``reimported`` (rows, or
        ``None``), ``stale`` (all marks now) and ``todo`` (the commands that recompute them).
    """
    from labelflow.project_config import CONFIG_FILE
    from labelflow.project_setup import import_dataset

    old = project.config
    changed = {k: v for k, v in changes.items() if getattr(old, k) != v}
    report: dict[str, Any] = {"changed": {k: {"from": getattr(old, k), "to": v} for k, v in changed.items()},
                              "reimported": None}
    if not changed:
        return {**report, "stale": project.stale(), "todo": todo(project)}
    try:
        new = replace(old, **changed)
    except (ProjectError, DataError) as exc:
        raise ProjectError(f"{project.root / CONFIG_FILE}: {exc}") from None
    marks: dict[str, str] = {}
    store = project.store
    has_matrix = store.matrix.is_file()
    staged = None
    data = [k for k in DATA_KEYS if k in changed]
    if data:
        dataset = import_dataset(project.root, new)
        if not store.holds_rows(dataset.frame):
            why = f"the dataset was re-imported with other rows or texts ({', '.join(data)} changed)"
            if has_matrix:
                marks["apply"] = why
            marks.update({f"fm {p.stem}": why for p in store.fm_outputs()})
        staged = store.stage_dataset(dataset.frame)
        report["reimported"] = dataset.frame.height
    if "lfs" in changed and has_matrix:
        marks["apply"] = (f"the LF suite is now {new.lfs} (was {old.lfs})" if new.lfs else
                          f"the project has no LF suite now (was {old.lfs})")
    trusted = project.trusted
    try:
        project.update_config(**changed)  # atomic; keeps a trusted project trusted
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if staged is not None:
        store.commit_dataset()
    if "lfs" in changed and new.lfs is not None and not trusted and new.ray_address is None:
        project.trust()  # the user named the file
    project.mark_stale(marks)
    return {**report, "stale": project.stale(), "todo": todo(project)}


def todo(project: Project) -> list[str]:
    """The commands that recompute what :meth:`Project.stale` marks."""
    marks, where = project.stale(), f" -p {project.root}"
    out = [f"labelflow apply{where}" for k in marks if k == "apply"]
    out += [f"labelflow fm ... --name {k[3:]}{where} (or remove {project.store.fm_output(k[3:])})"
            for k in marks if k.startswith("fm ")]
    return out


def describe(project: Project) -> dict[str, Any]:
    """The project's settings (``config``: ``labelflow.json`` as written), with each path resolved (``paths``:
    ``{key: [absolute path, exists]}``), whether the project is trusted, and the stale marks."""
    config = project.config
    paths: dict[str, list[Any]] = {}
    if config.lfs is not None:
        paths["lfs"] = _resolved(project, config.lfs)
    for split, files in config.sources.items():
        for i, f in enumerate(files):
            paths[f"sources.{split or 'all'}[{i}]"] = _resolved(project, f)
    return {"project": str(project.root.resolve()), "config": asdict(config), "paths": paths,
            "trusted": project.trusted if config.lfs is not None else None, "stale": project.stale(),
            "todo": todo(project)}


def format_settings(info: dict[str, Any]) -> str:
    """:func:`describe`'s dict as the lines ``labelflow config`` prints."""
    c = info["config"]
    none = "(none)"
    text = ", ".join(f"{field} ← {column}" for field, column in c["text"].items())
    classes = "; ".join(f"{x['name']}" + (f": {x['description']}" if x.get("description") else "") for x in c["classes"])
    lfs = none if c["lfs"] is None else _path_text(c["lfs"], info["paths"]["lfs"])
    if c["lfs"] is not None and info["trusted"] is not None:
        lfs += "" if info["trusted"] else "  [not trusted: see `labelflow trust`]"
    sources = []
    for split, files in c["sources"].items():
        name = split or "all"
        for i, f in enumerate(files):
            sources.append(f"{name}: {_path_text(f, info['paths'][f'sources.{name}[{i}]'])}")
    rows = [("name", c["name"]), ("classes", classes), ("text", text), ("id", c["id"] or "(none: <file>:<row>)"),
            ("label", c["label"] or none), ("split", c["split"] or none), ("sources", "\n".join(sources)),
            ("lfs", lfs), ("label_model", c["label_model"]), ("dev_sample", f"{c['dev_sample']} (seed {c['seed']})"),
            ("hide_labels", ", ".join(c["hide_labels"]) or none), ("duplicates", c["duplicates"]),
            ("ray_address", c["ray_address"] or none), ("studio_url", c["studio_url"] or none),
            ("extend", none if c["extend"] is None else ", ".join(f"{k}={v}" for k, v in c["extend"].items()))]
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"project {c['name']!r} in {info['project']}"]
    for key, value in rows:
        first, *rest = str(value).split("\n")
        lines.append(f"  {key:<{width}}{first}")
        lines += [f"  {'':<{width}}{line}" for line in rest]
    lines += _stale_lines(info["stale"], info["todo"])
    return "\n".join(lines)


def format_changes(report: dict[str, Any]) -> str:
    """:func:`change_settings`' report as lines."""
    if not report["changed"]:
        lines = ["nothing changed (the settings already hold these values)"]
    else:
        lines = []
        for k, v in report["changed"].items():
            if k == "classes":  # only descriptions change in place
                lines += [f"set describe.{new['name']}: {_short(old.get('description') or None)} → "
                          f"{_short(new.get('description') or None)}"
                          for old, new in zip(v["from"], v["to"]) if old != new]
            elif k == "text":
                lines.append(f"set text: {_fields(v['from'])} → {_fields(v['to'])}")
            else:
                lines.append(f"set {k}: {_short(v['from'])} → {_short(v['to'])}")
    if report["reimported"] is not None:
        lines.append(f"re-imported the dataset: {report['reimported']} rows (store kept: FM outputs, votes, matrix, "
                     "models, annotations)")
    return "\n".join(lines + _stale_lines(report["stale"], report["todo"]))


def _stale_lines(stale: dict[str, str], commands: list[str]) -> list[str]:
    if not stale:
        return []
    lines = ["to recompute since the settings changed:"]
    lines += [f"  {'label matrix' if k == 'apply' else 'FM output ' + repr(k[3:])}: {why}" for k, why in stale.items()]
    lines += [f"  run: {c}" for c in commands]
    return lines


def _suite(value: str, project: Project, where: str) -> str:
    from labelflow.project_config import relative_path

    path = Path(value)
    if not path.is_file():
        raise ProjectError(f"{where}: no such file: {value!r} (paths are read from the working directory)")
    if path.suffix != ".py":
        raise ProjectError(f"{where}: an LF suite is a Python file (.py); got {path.name!r}")
    return relative_path(path, project.root)


def _resolved(project: Project, path: str) -> list[Any]:
    full = (Path(path) if Path(path).is_absolute() else project.root / path).resolve()
    return [str(full), full.is_file()]


def _path_text(written: str, resolved: list[Any]) -> str:
    full, exists = resolved
    return f"{written}" + ("" if written == full else f" → {full}") + ("" if exists else "  [MISSING]")


def _sources_text(sources: dict[str, list[str]]) -> str:
    return "; ".join(f"{k or 'no split'}: {', '.join(v)}" for k, v in sources.items())


def _fields(text: dict[str, str]) -> str:
    return ", ".join(f"{field}={column}" for field, column in text.items())


def _short(value: Any) -> str:
    text = "(none)" if value is None else value if isinstance(value, str) else str(value)
    return text if len(text) <= 100 else text[:97] + "..."
