"""Writing LFs into a project's suite file: try typed LF code in the suite's namespace, save it, delete an LF.

The suite file is the truth (it lives in git): every edit parses it (:mod:`ast`),
changes the top-level definition concerned (:func:`merge_into_suite`,
:func:`remove_from_suite`), loads the result as the suite would be loaded, and writes
the file atomically only when the whole suite still loads.

* :func:`try_lf` compiles LF source a person typed, in the namespace of the
  project's suite file, and measures it at once;
* :func:`save_lf` writes it into the suite file (replacing an LF of the same name,
  else appending it);
* :func:`delete_lf` removes one.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from labelflow.apply import apply_lfs
from labelflow.conventions import ABSTAIN
from labelflow.error_analysis import gold_rows
from labelflow.errors import LabelflowError, LFError
from labelflow.files import atomic_path
from labelflow.lf import LabelingFunction, load_lf_suite
from labelflow.matrix import LabelMatrix, LFFailure

CODE_FILE = "<LF code>"


@dataclass(frozen=True)
class LFTrial:
    """What an LF typed by a person does, or why it cannot run.

    ``votes`` is ``[n]`` over every row of the project (empty when ``error`` is set);
    ``dev_accuracy`` is ``None`` when it votes on no dev row with gold.
    """

    name: str | None
    error: str | None
    votes: np.ndarray
    coverage: float
    dev_coverage: float
    dev_accuracy: float | None
    examples: pl.DataFrame
    """Up to 20 rows it votes on: ``id``, ``text``, ``vote`` (class name)."""
    failures: tuple[LFFailure, ...] = ()
    """The rows it raised on and abstained (the project's ``on_error`` is ``"abstain"``), at most
    :data:`~labelflow.apply.MAX_FAILURES_KEPT`."""


def try_lf(project, code: str) -> LFTrial:
    """Compile ``code`` (one LF definition, in the suite file's namespace) and apply it to every row. An LF that
    raises on a row is an error, unless the project's ``on_error`` setting is ``"abstain"``: then it abstains
    there and :attr:`LFTrial.failures` names the rows."""
    try:
        lf, _ = compile_into_suite(project, code)
        matrix = _matrix_beside_suite(project, lf)
    except LabelflowError as exc:
        return LFTrial(None, str(exc), np.empty(0, dtype=np.int64), 0.0, 0.0, None, pl.DataFrame())
    votes = matrix.values[:, -1].astype(np.int64)
    frame = project.dataset().frame
    dev = gold_rows(project, "dev")
    voted = votes != ABSTAIN
    gold = project.gold()
    names = np.array(project.schema.names, dtype=object)
    examples = frame.filter(pl.Series(voted)).head(20).select("id", "text").with_columns(
        pl.Series("vote", names[votes[voted][:20]].tolist(), dtype=pl.String))
    dev_voted = dev & voted
    return LFTrial(lf.name, None, votes, float(voted.mean()), float(voted[dev].mean()) if dev.any() else 0.0,
                   float((votes[dev_voted] == gold[dev_voted]).mean()) if dev_voted.any() else None, examples,
                   tuple(f for f in matrix.failures if f.lf == lf.name))


def save_lf(project, code: str) -> Path:
    """Write ``code`` into the project's suite file: replace the top-level definition with the same
    name, or add it (and to an ``LFS = [...]`` list when the suite has one). Raises :class:`LFError`
    and leaves the file unchanged when the code or the resulting suite does not load."""
    trial = try_lf(project, code)
    if trial.error:
        raise LFError(trial.error)
    _, source = compile_into_suite(project, code)
    with atomic_path(project.suite_path) as tmp:
        tmp.write_text(source, encoding="utf-8")
    project.trust()  # the suite was trusted (try_lf ran it); labelflow's own edit keeps it so
    return project.suite_path


def delete_lf(project, name: str) -> Path:
    """Remove LF ``name`` from the project's suite file (:func:`remove_from_suite`), atomically and only when the
    suite still loads without it and no longer holds it; returns the file. Raises :class:`LFError` and leaves the
    file unchanged otherwise (another LF uses it, it is the last one, it is not defined at the top level)."""
    path = project.suite_path
    project.require_trusted()  # the suite file's code runs below
    source = remove_from_suite(path.read_text(encoding="utf-8"), name)
    left, _ = _load_as_suite(path, source, lambda message: f"LF {name!r} was not deleted: without it the suite "
                                                           f"does not load ({message})")
    if name in {lf.name for lf in left}:
        raise LFError(f"LF {name!r} was not deleted: the suite still defines it elsewhere")
    with atomic_path(path) as out:
        out.write_text(source, encoding="utf-8")
    project.trust()  # the suite was trusted (require_trusted); labelflow's own edit keeps it so
    return path


def votes_beside_suite(project, lf: LabelingFunction, *, suite: Sequence[LabelingFunction] | None = None,
                        dataset=None) -> np.ndarray:
    """``[n]`` votes of ``lf`` applied together with the project's suite (cached votes), so an LF with a
    ``budget`` sees the other LFs' votes; an LF of the suite with the same name is left out."""
    return _matrix_beside_suite(project, lf, suite=suite, dataset=dataset).values[:, -1].astype(np.int64)


def _matrix_beside_suite(project, lf: LabelingFunction, *, suite: Sequence[LabelingFunction] | None = None,
                         dataset=None) -> LabelMatrix:
    """The label matrix of :func:`votes_beside_suite` (``lf`` last), applied with the project's ``on_error``."""
    others = [other for other in (project.lfs() if suite is None else suite) if other.name != lf.name]
    return apply_lfs(dataset or project.dataset(), [*others, lf], cardinality=project.schema.k,
                     cache=project.store.vote_cache(), fm_cache=project.fm_cache,
                     on_error=project.config.on_error)


def compile_into_suite(project, code: str) -> tuple[LabelingFunction, str]:
    """The LF that ``code`` defines, loaded as part of the suite, and the suite's new source."""
    try:
        tree = ast.parse(code, CODE_FILE)
    except SyntaxError as exc:
        raise LFError(f"line {exc.lineno} of the LF code: {exc.msg}") from None
    defined = _defined_names(tree.body)
    if not defined:
        raise LFError("the LF code defines nothing: write one `@labeling_function()` def or `name = keyword_lf(...)`")
    path = project.suite_path
    project.require_trusted()  # the suite file's code runs below
    source, offset = merge_into_suite(path.read_text(encoding="utf-8"), code)
    suite, module = _load_as_suite(path, source, lambda message: _code_lines(message, str(path), offset))
    objects = [module.__dict__.get(name) for name in defined]
    lfs = [o for o in objects if isinstance(o, LabelingFunction)]
    if len(lfs) != 1:
        raise LFError(f"the LF code must define exactly one LF; it defines {len(lfs)} ({', '.join(defined)})")
    by_name = {lf.name: lf for lf in suite}
    if lfs[0].name not in by_name:
        raise LFError(f"LF {lfs[0].name!r} is defined but not part of the suite (the suite's LFS list leaves it out)")
    return by_name[lfs[0].name], source


def _load_as_suite(path: Path, source: str, explain) -> tuple[list[LabelingFunction], Any]:
    """The LFs and module of ``source`` loaded as the suite file ``path`` would be (from a hidden trial file
    beside it, so its imports of neighbouring files work; removed after). An :class:`LFError` names ``path``,
    not the trial file, in the message ``explain(message)`` returns."""
    tmp = path.with_name(f".{path.stem}.trial.py")
    try:
        tmp.write_text(source, encoding="utf-8")
        try:
            suite = load_lf_suite(tmp)
        except LFError as exc:
            message = str(exc).replace(str(tmp.resolve()), str(path)).replace(str(tmp), str(path))
            raise LFError(explain(message)) from None
        return suite, _suite_module(tmp)
    finally:
        tmp.unlink(missing_ok=True)


def suite_globals(project) -> dict:
    project.require_trusted()  # the suite file's code runs below
    load_lf_suite(project.suite_path)
    return dict(vars(_suite_module(project.suite_path)))


def _suite_module(path: Path):
    """The module :func:`load_lf_suite` just ran ``path`` as. Its ``__file__`` is absolute (importlib makes
    it so) while ``path`` may be relative, as a project opened with a relative path gives: compare files."""
    target = Path(path).resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).name == target.name and Path(file).resolve() == target:
            return module
    raise RuntimeError(f"the LF suite {path} was loaded, yet no module in sys.modules comes from it")


def _code_lines(message: str, path: str, offset: int) -> str:
    """Turn ``path, line N`` in an error into a line of the typed code when it falls inside it."""
    def local(match: re.Match) -> str:
        line = int(match.group(1)) - offset
        return f"line {line} of the LF code" if line >= 1 else match.group(0)
    return re.sub(rf"{re.escape(path)}, line (\d+)", local, message)


def _defined_names(body: Sequence[ast.stmt]) -> list[str]:
    names = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def merge_into_suite(suite_source: str, code: str) -> tuple[str, int]:
    """Suite source with ``code`` merged in, and the line offset of the code's body in it.

    The code's imports join the suite's import block (unless already there); its
    definitions replace the suite's top-level definitions of the same names, or go
    before ``LFS = [...]`` (whose list gains the new names) or at the end.

    Examples
    --------
    >>> suite = "from labelflow import keyword_lf\\n\\na = keyword_lf('a', ['x'], label=1)\\nLFS = [a]\\n"
    >>> print(merge_into_suite(suite, "b = keyword_lf('b', ['y'], label=0)")[0])
    from labelflow import keyword_lf
    <BLANKLINE>
    a = keyword_lf('a', ['x'], label=1)
    <BLANKLINE>
    b = keyword_lf('b', ['y'], label=0)
    <BLANKLINE>
    LFS = [a, b]
    <BLANKLINE>
    """
    tree, code_tree = ast.parse(suite_source), ast.parse(code)
    lines, code_lines = suite_source.splitlines(), code.strip("\n").splitlines()
    imports = [n for n in code_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    import_lines = {i for n in imports for i in range(n.lineno - 1, n.end_lineno)}
    body = [line for i, line in enumerate(code_lines) if i not in import_lines]
    while body and not body[0].strip():
        body.pop(0)
    new_imports = [seg for seg in (ast.get_source_segment(code, n) for n in imports) if seg and seg not in lines]
    names = _defined_names(code_tree.body)
    old = [n for n in tree.body if set(_defined_names([n])) & set(names) and "LFS" not in _defined_names([n])]
    lfs_list = next((n for n in tree.body if "LFS" in _defined_names([n]) and isinstance(n.value, ast.List)), None)
    edits: list[tuple[int, int, list[str]]] = []  # replace lines[start:end] (0-based) with the list
    lead = 0  # blank lines put before the body
    if old:
        at = _first_line(old[0])
        edits += [(at, old[0].end_lineno, body)] + [(_first_line(n), n.end_lineno, []) for n in old[1:]]
    elif lfs_list is not None:
        at = _first_line(lfs_list)
        listed = {e.id for e in lfs_list.value.elts if isinstance(e, ast.Name)}
        new = [name for name in names if name not in listed]
        row, col = lfs_list.value.end_lineno - 1, lfs_list.value.end_col_offset - 1  # the closing bracket
        head, tail = lines[row][:col], lines[row][col:]
        if new and not head.strip():  # bracket on a line of its own: one name per line
            edits.append((row, row, [f"    {name}," for name in new]))
        elif new:
            sep = "" if head.rstrip().endswith(("[", ",")) else ", "
            edits.append((row, row + 1, [head.rstrip() + sep + ", ".join(new) + tail]))
        lead = int(at > 0 and bool(lines[at - 1].strip()))
        edits.append((at, at, [""] * lead + body + [""]))
    else:
        at = len(lines)
        lead = int(at > 0 and bool(lines[-1].strip()))
        edits.append((at, at, [""] * lead + body))
    last_import = max((n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), default=0)
    if new_imports:
        edits.append((last_import, last_import, new_imports))
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        lines[start:end] = replacement
    shift = len(new_imports) if last_import <= at else 0
    return "\n".join(lines) + "\n", at + shift + lead - (len(code_lines) - len(body))


def _first_line(node: ast.stmt) -> int:
    """0-based first line of a top-level statement, decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1


def lf_source(suite_source: str, name: str) -> str | None:
    """The top-level definition of LF ``name`` in a suite's source, decorators included (not the comments above
    it): the code :func:`merge_into_suite` replaces when it is saved again. ``None`` when no one top-level
    statement defines it (an LF made in a loop, say).

    The definition is the statement binding ``name`` (``name = keyword_lf(...)``, ``def name``), else the one
    statement holding the string ``name`` (``spam = keyword_lf("name", ...)``, ``@labeling_function(name="name")``).

    Examples
    --------
    >>> suite = "a = keyword_lf('a', ['x'], label=1)\\n\\n@labeling_function()\\ndef b(x):\\n    return 0\\nLFS = [a, b]\\n"
    >>> print(lf_source(suite, "b"), end="")
    @labeling_function()
    def b(x):
        return 0
    """
    node = _lf_node(ast.parse(suite_source), name)
    if node is None:
        return None
    return "\n".join(suite_source.splitlines()[_first_line(node):node.end_lineno]) + "\n"


def remove_from_suite(suite_source: str, name: str) -> str:
    """Suite source without LF ``name``: its top-level definition (see :func:`lf_source`) goes with the comment
    lines right above it, and its variable leaves an ``LFS = [...]`` list. Raises :class:`LFError` when no one
    top-level statement defines it.

    Examples
    --------
    >>> suite = "a = keyword_lf('a', ['x'], label=1)\\n\\n# b: zeros\\nb = keyword_lf('b', ['y'], label=0)\\n\\nLFS = [a, b]\\n"
    >>> print(remove_from_suite(suite, "b"))
    a = keyword_lf('a', ['x'], label=1)
    <BLANKLINE>
    LFS = [a]
    <BLANKLINE>
    """
    tree = ast.parse(suite_source)
    node = _lf_node(tree, name)
    if node is None:
        raise LFError(f"no top-level definition of LF {name!r} in the suite to remove")
    lines = suite_source.splitlines()
    variables = set(_defined_names([node]))
    lfs_list = next((n for n in tree.body if "LFS" in _defined_names([n]) and isinstance(n.value, ast.List)), None)
    if lfs_list is not None and any(isinstance(e, ast.Name) and e.id in variables for e in lfs_list.value.elts):
        kept = [e for e in lfs_list.value.elts if not (isinstance(e, ast.Name) and e.id in variables)]
        listed = "\n".join(lines[_first_line(lfs_list):lfs_list.end_lineno])
        one_per_line = lfs_list.value.lineno != lfs_list.value.end_lineno
        items = [ast.get_source_segment(suite_source, e) for e in kept]
        body = ("[\n" + "".join(f"    {item},\n" for item in items) + "]") if one_per_line and items else \
            "[" + ", ".join(items) + "]"
        head = listed[:listed.index("=") + 1]
        lines[_first_line(lfs_list):lfs_list.end_lineno] = (f"{head} {body}").splitlines()
    start, end = _first_line(node), node.end_lineno
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    del lines[start:end]
    while start < len(lines) and not lines[start].strip() and (start == 0 or not lines[start - 1].strip()):
        del lines[start]
    return "\n".join(lines).rstrip("\n") + "\n"


def _lf_node(tree: ast.Module, name: str) -> ast.stmt | None:
    """The one top-level statement (not ``LFS``) that binds ``name``, else the one holding the string ``name``."""
    body = [n for n in tree.body if "LFS" not in _defined_names([n])]
    binding = [n for n in body if name in _defined_names([n])]
    if len(binding) == 1:
        return binding[0]
    if binding:
        return None
    holding = [n for n in body if _defined_names([n]) and any(
        isinstance(c, ast.Constant) and c.value == name for c in ast.walk(n))]
    return holding[0] if len(holding) == 1 else None
