"""Suggested LFs: for a slice where the labels fail, the LFs that would fix it, each measured honestly.

:func:`suggest_lfs` proposes concrete LFs for a slice (words and phrases whose rows
are the target class far more often than the class prior, a kNN LF over the slice's
gold rows, a prompt LF, an embedding extension of an LF) and measures each: the gold
rows of the split are cut into :data:`FOLDS` stratified folds; candidates are mined on
the other folds' rows and their effect, the change in the label model's accuracy when
it is refit with the LF (same model, seed and dev-gold setting as the saved one, never
the held-out rows' gold), is measured on the held-out fold. :func:`accept_suggestion`
saves one like :func:`~labelflow.suite_edit.save_lf`; :meth:`Project.accept
<labelflow.project.Project.accept>` is the whole step the CLI, the app and ``bench/guided_loop.py``
take: accept, apply, refit.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelflow.conventions import ABSTAIN
from labelflow.error_analysis import Analysis
from labelflow.errors import LFError
from labelflow.extend import EXT_SUFFIX, ExtendConfig, extension_candidates, wilson_lower_bound
from labelflow.labelmodels import get_label_model
from labelflow.labelmodels.base import stratified_folds
from labelflow.slices import Slice, ngram_matrix
from labelflow.suite_edit import compile_into_suite, save_lf, suite_globals, votes_beside_suite

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
    module_globals = suite_globals(project)
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
        if kind in kinds and wilson_lower_bound(hits[i], support[i], 1.645) >= MIN_PRECISION:
            ranked.append((-fixes[i] * np.log(lift[i]), -support[i], grams[i]))
    return [gram for *_, gram in sorted(ranked)[:MAX_NGRAMS]]


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
            lfs[code] = compile_into_suite(project, code)[0]
        except LFError:
            continue
    if not lfs and not precomputed:
        return []
    suite, gold = project.lfs(), project.gold()
    votes = {code: votes_beside_suite(project, lf, suite=suite, dataset=dataset) for code, lf in lfs.items()}
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


def _correct(project, model: str, settings: dict, L: np.ndarray, train: np.ndarray, dev: np.ndarray,
             gold: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[len(rows)]`` whether ``model``, fit on ``L``'s train rows (and ``dev`` rows' gold where the saved
    model used dev gold), predicts each of ``rows`` right (ties broken by the row's position, as everywhere)."""
    lm = get_label_model(model, project.schema.k, seed=settings["seed"])
    dev_args = {"L_dev": L[dev], "y_dev": gold[dev]} if settings["use_dev"] and dev.any() else {}
    lm.fit(L[train], **dev_args)
    return lm.predict(L, tie_policy="random")[rows] == gold[rows]


def accept_suggestion(project, suggestion: Suggestion) -> Path:
    """Write ``suggestion.code`` into the project's suite file (as :func:`save_lf` does); an ``"extend"``
    suggestion instead adds its LF to the ``extend`` setting of ``labelflow.json`` (its radius is then fit
    on all the dev gold when the matrix is next read). Returns the file written."""
    if suggestion.kind != "extend":
        return save_lf(project, suggestion.code)
    lf = suggestion.name.removesuffix(EXT_SUFFIX)
    config = (project.extend_config or ExtendConfig(lfs=[])).to_dict()
    if config["lfs"] is not None:  # None: every LF is extended already
        config["lfs"] = [*config["lfs"], lf] if lf not in config["lfs"] else config["lfs"]
    return project.update_config(extend=config)
