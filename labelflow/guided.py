"""Guided error analysis: where the labels fail, and the LF that would fix it.

The app, the CLI and ``bench/guided_loop.py`` all go through these functions:

* :func:`try_lf` compiles LF source a person typed, in the namespace of the
  project's suite file, and measures it at once; :func:`save_lf` writes it into
  the suite file (replacing an LF of the same name, else appending it), atomically
  and only when the whole suite still loads.
* :func:`analyze` scores the label model on a gold split and finds the slices
  where it fails (:mod:`labelflow.slices`).
* :func:`suggest_lfs` proposes concrete LFs for a slice (words and phrases whose
  rows are the target class far more often than the class prior, a kNN LF over
  the slice's gold rows, a prompt LF) and measures each honestly: the gold rows of
  the split are cut into :data:`FOLDS` stratified folds; candidates are mined on
  the other folds' rows and their effect, the change in the label model's
  accuracy when it is refit with the LF (same model, seed and dev-gold setting
  as the saved one, never the held-out rows' gold), is measured on the held-out
  fold. :func:`accept_suggestion` saves one like :func:`save_lf`.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.decomposition import PCA

from labelflow.apply import VoteCache, apply_lfs
from labelflow.conventions import ABSTAIN
from labelflow.errors import LabelflowError, LFError
from labelflow.files import atomic_path
from labelflow.labelmodels import get_label_model
from labelflow.labelmodels.base import stratified_folds
from labelflow.lf import LabelingFunction, load_lf_suite
from labelflow.matrix import LabelMatrix, LFFailure
from labelflow.slices import Slice, find_slices, ngram_matrix

CODE_FILE = "<LF code>"
SUGGESTION_KINDS = ("keyword", "regex", "knn", "prompt", "extend")
"""What :func:`suggest_lfs` can propose (``kinds=``)."""
FOLDS = 2
"""Gold rows are cut into this many folds: candidates are mined on the others and measured on each."""
MIN_SUPPORT = 3
"""A word or phrase must be in at least this many gold rows of the mining folds."""
MIN_PRECISION = 0.5
"""A candidate's precision on the mining rows must be at least this with 95 % confidence (Wilson lower bound)."""
MAX_NGRAMS = 12
"""Words and phrases kept per fold (the highest ``errors fixed × log lift``) before measuring."""
MAX_REFITS = 8
"""Candidates refit and measured per fold."""
MAX_EXTENSIONS = 3
"""Embedding extensions (kind ``"extend"``) measured per fold: the LFs whose extension adds most votes."""
N_EXAMPLES = 3


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


@dataclass(frozen=True)
class Analysis:
    """The label model's predictions on a gold split, and the slices where they fail."""

    model_name: str
    split: str
    rows: pl.DataFrame
    """One row per gold-labelled row of ``split``: ``id, text, gold, pred, correct, covered``."""
    accuracy: float
    confusion: np.ndarray
    """``[k, k]`` counts, gold × predicted."""
    class_names: list[str]
    slices: list[Slice]
    embedding_2d: np.ndarray | None
    """``[len(rows), 2]`` PCA of the rows' embeddings (``None`` without an embedding column)."""
    fit_settings: dict = field(default_factory=lambda: {"seed": 123, "use_dev": False})
    """The saved label model's ``seed`` and ``use_dev``; suggestions are measured with the same."""


@dataclass(frozen=True)
class Suggestion:
    """A candidate LF for a slice and its measured effect; ``code`` is what accepting writes.

    The effect (:attr:`delta`) is measured on held-out gold rows only: rows of the
    folds the candidate was not mined on, where the label model refit with it
    (same model and settings as the saved one) is compared with the model refit
    without it. ``accuracy_before`` / ``accuracy_after`` are those rows' accuracy
    without / with it.
    """

    name: str
    kind: str
    label: int
    code: str
    precision: float
    """Of the split's gold rows it votes on, the share it gets right (``support_correct / support``)."""
    coverage: float
    """Share of all rows of the project it votes on."""
    accuracy_before: float
    accuracy_after: float
    support: int = 0
    """Gold rows of the split it votes on."""
    support_correct: int = 0
    held_out_rows: int = 0
    """Rows :attr:`delta` is measured on."""
    delta_se: float = 0.0
    """Standard error of :attr:`delta` (paired, over the held-out rows)."""
    examples: tuple[tuple[str, str], ...] = ()
    """Up to three ``(text, gold class name)`` of gold rows it votes on."""

    @property
    def delta(self) -> float:
        """Change in the label model's held-out accuracy when the LF is added and the model refit."""
        return self.accuracy_after - self.accuracy_before

    @property
    def interval(self) -> tuple[float, float]:
        """95 % normal interval of :attr:`delta`."""
        return self.delta - 1.96 * self.delta_se, self.delta + 1.96 * self.delta_se


# --- writing LFs ------------------------------------------------------------------------------------


def try_lf(project, code: str) -> LFTrial:
    """Compile ``code`` (one LF definition, in the suite file's namespace) and apply it to every row. An LF that
    raises on a row is an error, unless the project's ``on_error`` setting is ``"abstain"``: then it abstains
    there and :attr:`LFTrial.failures` names the rows."""
    try:
        lf, _ = _compile_into_suite(project, code)
        matrix = _matrix_beside_suite(project, lf)
    except LabelflowError as exc:
        return LFTrial(None, str(exc), np.empty(0, dtype=np.int64), 0.0, 0.0, None, pl.DataFrame())
    votes = matrix.values[:, -1].astype(np.int64)
    frame = project.dataset().frame
    dev = _gold_rows(project, "dev")
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
    _, source = _compile_into_suite(project, code)
    with atomic_path(project.suite_path) as tmp:
        tmp.write_text(source, encoding="utf-8")
    project.trust()  # the suite was trusted (try_lf ran it); labelflow's own edit keeps it so
    return project.suite_path


def _apply_beside_suite(project, lf: LabelingFunction, *, suite: Sequence[LabelingFunction] | None = None,
                        dataset=None) -> np.ndarray:
    """``[n]`` votes of ``lf`` applied together with the project's suite (cached votes), so an LF with a
    ``budget`` sees the other LFs' votes; an LF of the suite with the same name is left out."""
    return _matrix_beside_suite(project, lf, suite=suite, dataset=dataset).values[:, -1].astype(np.int64)


def _matrix_beside_suite(project, lf: LabelingFunction, *, suite: Sequence[LabelingFunction] | None = None,
                         dataset=None) -> LabelMatrix:
    """The label matrix of :func:`_apply_beside_suite` (``lf`` last), applied with the project's ``on_error``."""
    others = [other for other in (project.lfs() if suite is None else suite) if other.name != lf.name]
    return apply_lfs(dataset or project.dataset(), [*others, lf], cardinality=project.schema.k,
                     cache=VoteCache(project.store / "votes"), fm_cache=project.fm_cache,
                     on_error=project.config.on_error)


def _compile_into_suite(project, code: str) -> tuple[LabelingFunction, str]:
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


# --- analysis ---------------------------------------------------------------------------------------


def analyze(project, *, model: str | None = None, split: str = "dev", embedding: str | None = None,
            predictions: pl.DataFrame | None = None) -> Analysis:
    """The saved label model's predictions on the gold rows of ``split`` and the slices where they fail.

    ``predictions``: analyse these instead (a frame with ``id`` and ``pred``, the class
    index, for example a fine-tuned student's from ``labelflow predict``); every
    analysed row needs one. ``embedding`` names an array column of the dataset (an FM
    output such as ``labelflow fm embed``'s); by default the first such column, if any.
    Suggestions are still measured with the label model ``model``.
    """
    lm = project.label_model(model)
    matrix, frame = project.matrix(), project.dataset().frame
    rows = _gold_rows(project, split)
    if not rows.any():
        raise LabelflowError(f"{project.root}: no gold-labelled rows in split {split!r} to analyse; label some first")
    L = matrix.values[rows]
    gold, pred = project.gold()[rows], lm.predict(matrix.values)[rows]  # ties break by row index, as in evaluate
    model_name = getattr(getattr(lm, "chosen", None), "name", lm.name)
    if predictions is not None:
        pred = _external_predictions(predictions, frame["id"].filter(pl.Series(rows)), project.schema.k)
    sub = frame.filter(pl.Series(rows))
    k = project.schema.k
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (gold, pred), 1)
    arrays = [c for c, t in sub.schema.items() if isinstance(t, pl.Array)]
    column = embedding or (arrays[0] if arrays else None)
    X = _embedding(sub, column) if column else None
    reserved = {"id", "split", "label", "text", *project.config.text, *arrays}
    metadata = sub.select([c for c in sub.columns if c not in reserved]) if len(sub.columns) > len(reserved) else None
    slices = find_slices(sub["id"].to_list(), sub["text"].to_list(), gold, pred, L=L, lf_names=matrix.lf_names,
                         class_names=project.schema.names, embeddings=X, metadata=metadata)
    table = sub.select("id", "text").with_columns(pl.Series("gold", gold), pl.Series("pred", pred),
                                                  pl.Series("correct", gold == pred),
                                                  pl.Series("covered", (L != ABSTAIN).any(axis=1)))
    embedding_2d = None if X is None or len(X) < 2 else PCA(n_components=2).fit_transform(X)
    return Analysis(model_name, split, table, float((gold == pred).mean()), confusion, list(project.schema.names),
                    slices, embedding_2d, project.fit_settings(model))


def _external_predictions(predictions: pl.DataFrame, ids: pl.Series, k: int) -> np.ndarray:
    """``[len(ids)]`` classes from a frame of ``id, pred``, in the order of ``ids``."""
    missing_cols = {"id", "pred"} - set(predictions.columns)
    if missing_cols:
        raise LabelflowError(f"predictions need columns 'id' and 'pred'; missing {sorted(missing_cols)}")
    joined = pl.DataFrame({"id": ids}).join(predictions.select(pl.col("id").cast(pl.String), "pred"), on="id",
                                           how="left", maintain_order="left")
    absent = joined.filter(pl.col("pred").is_null())["id"]
    if len(absent):
        raise LabelflowError(f"predictions lack {len(absent)} analysed row(s), e.g. id {absent[0]!r}")
    pred = joined["pred"].to_numpy().astype(np.int64)
    bad = (pred < 0) | (pred >= k)
    if bad.any():
        raise LabelflowError(f"prediction {pred[bad][0]} for row {joined['id'][int(np.argmax(bad))]!r} is not a class 0..{k - 1}")
    return pred


def _gold_rows(project, split: str) -> np.ndarray:
    return (project.dataset().frame["split"].to_numpy() == split) & (project.gold() != ABSTAIN)


def _embedding(frame: pl.DataFrame, column: str) -> np.ndarray | None:
    values = frame[column]
    if values.null_count():
        return None
    return values.to_numpy().astype(np.float64)


# --- suggestions ------------------------------------------------------------------------------------


def suggest_lfs(project, analysis: Analysis, slice: Slice, *, max_suggestions: int = 3,
                kinds: Sequence[str] = ("keyword", "regex"), seed: int = 0) -> list[Suggestion]:
    """Candidate LFs for ``slice`` that raise held-out accuracy, best first.

    The gold rows of the analysed split are cut into :data:`FOLDS` folds (stratified
    by class, seeded). For each fold, candidates are mined on the *other* folds' rows
    and measured on this one, so no candidate is scored on rows it was chosen from:

    * the target class is the gold class most of the slice's errors (in the mining
      rows) should have had;
    * ``"keyword"`` / ``"regex"``: words / two-word phrases (:func:`labelflow.slices.ngram_matrix`,
      no stop words) in at least :data:`MIN_SUPPORT` mining rows, in at least one of the
      slice's errors, whose mining rows are the target class more often than the class
      prior (lift > 1), with a precision whose Wilson lower bound is at least
      :data:`MIN_PRECISION` and above the label model's current accuracy on those rows;
      the :data:`MAX_NGRAMS` with the most ``errors fixed × log lift`` are kept;
    * ``"knn"``: a nearest-neighbour LF whose neighbours are the slice's mining gold rows;
    * ``"prompt"``: the default local LLM (Gemma 3 270M) asked about the target class on
      the rows no other LF covers;
    * ``"extend"``: an LF's votes extended to the rows near them in embedding space
      (:mod:`labelflow.extend`, radius fit on the mining rows' gold); accepting it adds
      the LF to the ``extend`` setting instead of writing code.

    Candidates whose votes an existing LF already casts are dropped. Up to
    :data:`MAX_REFITS` per fold are each added to the label matrix and the label model
    (the analysis's, with the saved model's seed and dev-gold setting; dev gold of the
    held-out fold is never passed) refit on the train rows; the held-out fold's accuracy
    with and without it gives the effect. Only candidates with a positive effect are
    returned, best first by :func:`suggestion_rank`.
    """
    dataset, matrix = project.dataset(), project.matrix()
    frame, gold = dataset.frame, project.gold()
    split = frame["split"].to_numpy()
    gold_rows = np.flatnonzero((split == analysis.split) & (gold != ABSTAIN))  # dataset rows of analysis.rows
    y, pred = gold[gold_rows], analysis.rows["pred"].to_numpy()
    folds = stratified_folds(y, FOLDS, seed=seed)
    in_slice = np.zeros(len(gold_rows), dtype=bool)
    in_slice[slice.rows] = True
    module_globals = _suite_globals(project)
    taken = {lf.name for lf in project.lfs()}
    not_test = split != "test"  # test rows never shape a candidate
    grams_X, grams = ngram_matrix(frame["text"].to_list()) if {"keyword", "regex"} & set(kinds) else (None, [])
    made: dict[tuple, tuple[str, str, str]] = {}  # (kind, what, target) -> (kind, name, code): one name per candidate
    codes: dict[str, tuple[str, str, int]] = {}  # code -> (kind, name, target)
    precomputed: dict[str, np.ndarray] = {}  # code -> [n] votes, for candidates that are not LF code (extend)
    mined: list[list[str]] = []  # per fold: codes, best first
    for fold in range(FOLDS):
        mine = folds != fold
        target = _target(y, pred, in_slice & mine)
        fold_codes: list[str] = []
        if target is None:
            mined.append(fold_codes)
            continue
        label_code = _label_code(project, target, module_globals)
        wanted: list[tuple[tuple, object]] = []
        if grams:
            for gram in _discriminative_ngrams(grams_X, grams, gold_rows, y, pred, mine, in_slice, target, not_test,
                                               {k for k in kinds if k in ("keyword", "regex")}):
                kind = "regex" if " " in gram else "keyword"
                wanted.append(((kind, gram, target),
                               lambda g=gram, k=kind: _ngram_code(g, k, label_code, taken, module_globals)))
        if "knn" in kinds:
            ids = frame["id"].to_numpy()[gold_rows[in_slice & mine]].tolist()
            wanted.append((("knn", fold, target), lambda i=ids: _knn_code(slice, i, taken, module_globals)))
        if "prompt" in kinds:
            wanted.append((("prompt", None, target),
                           lambda: _prompt_code(project, target, label_code, taken, module_globals)))
        for key, make in wanted:
            if key not in made:
                made[key] = make()
            kind, name, code = made[key]
            codes[code] = (kind, name, target)
            fold_codes.append(code)
        if "extend" in kinds:
            for candidate in _extension_candidates(project, matrix, gold_rows[mine], gold[gold_rows[mine]]):
                code = _extend_code(project, candidate, fold)
                codes[code] = ("extend", candidate.column, int(np.bincount(
                    candidate.votes[candidate.votes != ABSTAIN].astype(np.int64)).argmax()))
                precomputed[code] = candidate.votes.astype(np.int64)
                fold_codes.append(code)
        mined.append(fold_codes)
    return _measure(project, analysis, dataset, matrix, gold_rows, folds, codes, mined, max_suggestions, precomputed)


def _extension_candidates(project, matrix, dev_rows: np.ndarray, y_dev: np.ndarray) -> list:
    """The best :data:`MAX_EXTENSIONS` embedding extensions of the suite's LFs with radii fit on ``dev_rows``
    (dataset row indices) and their gold ``y_dev`` only (:func:`labelflow.extend.extension_candidates`)."""
    from labelflow.extend import ExtendConfig, extension_candidates

    config = project.extend_config or ExtendConfig()
    mask = np.zeros(matrix.shape[0], dtype=bool)
    mask[dev_rows] = True  # dev_rows ascend, so y_dev is in the mask's order
    found = extension_candidates(matrix.values, project.embeddings(config.embedding), dev_rows=mask, y_dev=y_dev,
                                 cardinality=project.schema.k, lf_names=matrix.lf_names, config=config)
    return found[:MAX_EXTENSIONS]


def _extend_code(project, candidate, fold: int) -> str:
    """What accepting an extension writes: not LF code but the ``extend`` setting of ``labelflow.json``."""
    column = (project.extend_config.embedding if project.extend_config else "embedding")
    return (f"# labelflow.json \"extend\": add {candidate.lf!r} to \"lfs\" — its votes reach rows within cosine "
            f"similarity {candidate.radius:.3f} of rows it votes on (embedding column {column!r}; radius fit on "
            f"the mining rows of fold {fold + 1})\n")


def _target(y: np.ndarray, pred: np.ndarray, rows: np.ndarray) -> int | None:
    """The gold class most of the errors among ``rows`` (a ``[n_gold]`` mask) should have had; ``None`` without errors."""
    errors = rows & (y != pred)
    return int(np.bincount(y[errors]).argmax()) if errors.any() else None


def _discriminative_ngrams(X, grams: list[str], gold_rows: np.ndarray, y: np.ndarray, pred: np.ndarray,
                           mine: np.ndarray, in_slice: np.ndarray, target: int, not_test: np.ndarray,
                           kinds: set[str]) -> list[str]:
    """Words and phrases that single out ``target`` on the mining gold rows (see :func:`suggest_lfs`), best first.

    ``X`` is the ``[n, V]`` n-gram matrix of every row of the project; ``gold_rows`` the
    dataset rows of the ``[n_gold]`` arrays ``y``, ``pred``, ``mine``, ``in_slice``.
    """
    rows = gold_rows[mine]
    Xm = X[rows]
    is_target = y[mine] == target
    support = np.asarray(Xm.sum(axis=0)).ravel()
    hits = np.asarray(Xm[is_target].sum(axis=0)).ravel()
    model_right = np.asarray(Xm[pred[mine] == y[mine]].sum(axis=0)).ravel()
    fixes = np.asarray(X[gold_rows[mine & in_slice & (y == target) & (pred != y)]].sum(axis=0)).ravel()
    anywhere = np.asarray(X[np.flatnonzero(not_test)].sum(axis=0)).ravel() > 0
    prior = max(is_target.mean(), 1e-9)
    precision = hits / np.maximum(support, 1)
    lift = precision / prior
    ok = (support >= MIN_SUPPORT) & (fixes > 0) & (lift > 1) & (precision > model_right / np.maximum(support, 1)) & anywhere
    ranked = []
    for i in np.flatnonzero(ok):
        kind = "regex" if " " in grams[i] else "keyword"
        if kind in kinds and wilson_lower(float(precision[i]), int(support[i])) >= MIN_PRECISION:
            ranked.append((-fixes[i] * np.log(lift[i]), -support[i], grams[i]))
    return [gram for *_, gram in sorted(ranked)[:MAX_NGRAMS]]


def _suite_globals(project) -> dict:
    project.require_trusted()  # the suite file's code runs below
    load_lf_suite(project.suite_path)
    return dict(vars(_suite_module(project.suite_path)))


def _suite_module(path: Path):
    """The module :func:`load_lf_suite` just ran ``path`` as. Its ``__file__`` is absolute (importlib makes
    it so) while ``path`` may be relative, as a project opened with a relative path gives: compare files."""
    import sys

    target = Path(path).resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and Path(file).name == target.name and Path(file).resolve() == target:
            return module
    raise RuntimeError(f"the LF suite {path} was loaded, yet no module in sys.modules comes from it")


def _free_name(base: str, taken: set[str], module_globals: dict) -> str:
    """``base``, or ``base_2``, ``base_3`` ... whichever no LF or suite global uses yet (then marked taken)."""
    name, i = base, 2
    while name in taken or name in module_globals:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _ngram_code(gram: str, kind: str, label_code: str, taken: set[str], module_globals: dict) -> tuple[str, str, str]:
    name = _free_name(f"{kind}_" + re.sub(r"\W+", "_", gram).strip("_"), taken, module_globals)
    if kind == "keyword":
        call = f'keyword_lf("{name}", ["{gram}"], label={label_code})'
    else:
        call = f'regex_lf("{name}", r"{_regex(gram)}", label={label_code})'
    helper = "keyword_lf" if kind == "keyword" else "regex_lf"
    imports = "" if helper in module_globals else f"from labelflow import {helper}\n\n"
    return kind, name, f"{imports}{name} = {call}\n"


def _regex(gram: str) -> str:
    """The pattern of a phrase LF: its words in order, any whitespace between, whole words."""
    return r"\b" + r"\s+".join(re.escape(w) for w in gram.split()) + r"\b"


def _knn_code(slice: Slice, ids: Sequence[str], taken: set[str], module_globals: dict) -> tuple[str, str, str]:
    """A kNN LF whose neighbours are ``ids``, the slice's gold rows of the mining folds."""
    name = _free_name("knn_" + re.sub(r"\W+", "_", slice.name.lower()).strip("_")[:40], taken, module_globals)
    listed = textwrap.fill(", ".join(f'"{i}"' for i in ids), width=96, initial_indent=" " * 8,
                           subsequent_indent=" " * 8)
    imports = "" if "knn_lf" in module_globals else "from labelflow.fm import knn_lf\n\n"
    return "knn", name, (f"{imports}# neighbours: gold rows of the slice {slice.name!r}\n"
                         f'{name} = knn_lf("{name}", neighbors=3, min_similarity="auto", reference=[\n{listed}\n])\n')


def _label_code(project, c: int, module_globals: dict) -> str:
    """How the suite file names class ``c``: its upper-case constant (``SPAM = 1``) if it has one, else the number."""
    name = project.schema.names[c].upper()
    return name if type(module_globals.get(name)) is int and module_globals[name] == c else str(c)


def _prompt_code(project, target: int, label_code: str, taken: set[str], module_globals: dict) -> tuple[str, str, str]:
    """A prompt LF (the default local LLM) on the rows no other LF covers, asking about the target class."""
    names = list(project.schema.names)
    what = project.config.classes[target].get("description") or names[target]
    name = _free_name(f"prompt_{names[target].lower()}", taken, module_globals)
    if len(names) == 2:
        other = _label_code(project, 1 - target, module_globals)
        question, answers = f"Is it {what}?", f'{{{label_code}: ["yes"], {other}: ["no"]}}'
    else:
        question = "Which is it: " + ", ".join(names) + "?"
        answers = "{" + ", ".join(f'{_label_code(project, c, module_globals)}: ["{n.lower()}"]'
                                  for c, n in enumerate(names)) + "}"
    imports = "" if "prompt_lf" in module_globals else "from labelflow.fm import prompt_lf\n\n"
    return "prompt", name, (f'{imports}{name} = prompt_lf(\n    "{name}",\n'
                            f"    template='Text: \"{{text}}\"\\nQuestion: {question}\\nAnswer:',\n"
                            f"    answers={answers},\n    provider_config={{\"max_length\": 96}},\n"
                            f'    min_confidence="auto",\n    budget="uncovered",\n)\n')


def _measure(project, analysis: Analysis, dataset, matrix, gold_rows: np.ndarray, folds: np.ndarray,
             codes: dict[str, tuple[str, str, int]], mined: list[list[str]], max_suggestions: int,
             precomputed: dict[str, np.ndarray]) -> list[Suggestion]:
    """Apply every candidate once, then per fold refit with each of that fold's candidates and compare the
    held-out fold's correct predictions with and without it."""
    lfs = {}
    for code in codes:
        if code in precomputed:
            continue
        try:
            lfs[code] = _compile_into_suite(project, code)[0]
        except LFError:
            continue
    if not lfs and not precomputed:
        return []
    suite, gold = project.lfs(), project.gold()
    votes = {code: _apply_beside_suite(project, lf, suite=suite, dataset=dataset) for code, lf in lfs.items()}
    votes = {code: v for code, v in {**votes, **precomputed}.items() if not _redundant(v, matrix.values)}
    split = dataset.frame["split"].to_numpy()
    train = split == "train"
    settings = analysis.fit_settings
    diffs: dict[str, list[np.ndarray]] = {}
    before_rows: dict[str, list[np.ndarray]] = {}
    for fold, fold_codes in enumerate(mined):
        held = gold_rows[folds == fold]
        if not len(held):
            continue
        dev = (split == "dev") & (gold != ABSTAIN)
        dev[held] = False  # the held-out fold's gold is never passed to the model
        before = _correct(project, analysis.model_name, settings, matrix.values, train, dev, gold, held)
        measured = [code for code in fold_codes if code in votes and _votes_on(votes[code], gold_rows[folds != fold])]
        for code in measured[:MAX_REFITS]:
            after = _correct(project, analysis.model_name, settings, np.column_stack([matrix.values, votes[code]]),
                             train, dev, gold, held)
            diffs.setdefault(code, []).append(after.astype(float) - before)
            before_rows.setdefault(code, []).append(before.astype(float))
    names = np.array(project.schema.names, dtype=object)
    texts = dataset.frame["text"].to_numpy()
    out = []
    for code, parts in diffs.items():
        d, b = np.concatenate(parts), np.concatenate(before_rows[code])
        if d.mean() <= 0:
            continue
        kind, name, target = codes[code]
        v = votes[code]
        on_gold = gold_rows[v[gold_rows] != ABSTAIN]
        right = int((v[on_gold] == gold[on_gold]).sum())
        examples = tuple(dict.fromkeys((str(texts[i]), str(names[gold[i]])) for i in on_gold))[:N_EXAMPLES]
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        out.append(Suggestion(name, kind, target, code, right / len(on_gold) if len(on_gold) else 0.0,
                              float((v != ABSTAIN).mean()), float(b.mean()), float(b.mean() + d.mean()),
                              len(on_gold), right, len(d), se, examples))
    return sorted(out, key=suggestion_rank)[:max_suggestions]


def suggestion_rank(suggestion: Suggestion) -> tuple[float, float, str]:
    """Best first: the highest lower end of the effect's 95 % interval (a sure small gain before a lucky large
    one), then the largest effect."""
    return -suggestion.interval[0], -suggestion.delta, suggestion.name


def _votes_on(v: np.ndarray, rows: np.ndarray) -> bool:
    """Whether ``[n]`` votes ``v`` vote on any of ``rows`` (a candidate that never fires where it was mined is skipped)."""
    return bool((v[rows] != ABSTAIN).any())


def _redundant(v: np.ndarray, L: np.ndarray) -> bool:
    """Whether an existing LF (a column of ``[n, m]`` ``L``) already casts every vote of ``[n]`` ``v``."""
    voted = v != ABSTAIN
    return bool(((L[voted] == v[voted, None]).all(axis=0)).any())


def wilson_lower(p: float, n: int, z: float = 1.645) -> float:
    """One-sided 95 % Wilson lower bound of a proportion ``p`` observed on ``n`` trials.

    Examples
    --------
    >>> round(wilson_lower(1.0, 3), 2), round(wilson_lower(1.0, 20), 2)
    (0.53, 0.88)
    """
    centre = p + z * z / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - margin) / (1 + z * z / n))


def _correct(project, model: str, settings: dict, L: np.ndarray, train: np.ndarray, dev: np.ndarray,
             gold: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[len(rows)]`` whether ``model``, fit on ``L``'s train rows (and ``dev`` rows' gold where the saved
    model used dev gold), predicts each of ``rows`` right (ties broken by the row's position, as everywhere)."""
    lm = get_label_model(model, project.schema.k, seed=settings["seed"])
    dev_args = {"L_dev": L[dev], "y_dev": gold[dev]} if settings["use_dev"] and dev.any() else {}
    lm.fit(L[train], **dev_args)
    return lm.predict(L)[rows] == gold[rows]


def accept_suggestion(project, suggestion: Suggestion) -> Path:
    """Write ``suggestion.code`` into the project's suite file (as :func:`save_lf` does); an ``"extend"``
    suggestion instead adds its LF to the ``extend`` setting of ``labelflow.json`` (its radius is then fit
    on all the dev gold when the matrix is next read). Returns the file written."""
    if suggestion.kind != "extend":
        return save_lf(project, suggestion.code)
    from labelflow.extend import EXT_SUFFIX, ExtendConfig

    lf = suggestion.name.removesuffix(EXT_SUFFIX)
    config = (project.extend_config or ExtendConfig(lfs=[])).to_dict()
    if config["lfs"] is not None:  # None: every LF is extended already
        config["lfs"] = [*config["lfs"], lf] if lf not in config["lfs"] else config["lfs"]
    return project.update_config(extend=config)
