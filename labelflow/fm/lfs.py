"""Labeling functions over foundation-model outputs: prompt, zero-shot and nearest-neighbour LFs.

Each computes its model outputs through the FM cache, then votes vectorized. A
threshold given as ``"auto"`` is fit on the dev split's gold labels: the value
that maximises (correct − incorrect) votes there; if no value gains, the LF
abstains everywhere.

``budget`` limits an LF (meant for costly LLM prompts) to the rows the *other*
LFs of the suite leave uncovered, or where they conflict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, LABEL_DTYPE
from labelflow.dataset import RESERVED
from labelflow.errors import LFError
from labelflow.fm.base import ModelHost, Provider, RunStats, get_provider
from labelflow.fm.cache import FMCache
from labelflow.fm.ops import embed_texts, prompt_logprobs, softmax, template_fields, zero_shot_similarity
from labelflow.lf import LabelingFunction
from labelflow.validation import check_choice, check_int, is_int

Budget = Literal["uncovered", "conflicts", "uncovered_or_conflicts"]
Threshold = float | Literal["auto"]
DEFAULT_EMBEDDER = {"model": "all-MiniLM-L6-v2"}
KNN_CHUNK = 8192


@dataclass(frozen=True)
class FMVotes:
    """What running an FM LF gives: its ``[n]`` int8 ``votes``, the ``threshold`` it voted at (fit on dev gold when
    ``"auto"``; ``inf`` when no cut-off gains there) and the ``stats`` of the model outputs it used."""

    votes: np.ndarray
    threshold: float
    stats: RunStats

    @property
    def fitted(self) -> dict[str, float]:
        """What the LF fit on the data, as JSON values (kept in the vote cache beside the votes)."""
        return {"threshold": self.threshold}

    @property
    def run(self) -> dict[str, Any]:
        """What the model run did (:class:`~labelflow.fm.base.RunStats` as JSON values)."""
        return asdict(self.stats)


class FMLF(LabelingFunction):
    """Base of LFs over FM outputs; subclasses implement :meth:`_predict`.

    Parameters
    ----------
    name
        LF name.
    provider, provider_config
        Registered provider kind and its settings (see :func:`labelflow.fm.get_provider`).
    threshold
        Minimum confidence to vote, or ``"auto"`` to fit it on dev gold.
    budget
        Only vote on rows the other LFs leave uncovered and/or conflict on.
    field
        Text column the LF reads.
    """

    kind = "fm"

    def __init__(self, name: str, *, provider: str, provider_config: Mapping[str, Any], threshold: Threshold,
                 budget: Budget | None = None, field: str = "text") -> None:
        super().__init__(name)
        if threshold != "auto" and not isinstance(threshold, (int, float)):
            raise LFError(f"LF {name!r}: threshold must be a number or 'auto'; got {threshold!r}")
        if budget is not None:
            check_choice(f"LF {name!r}: budget", budget, Budget, error=LFError)
        self.provider_kind, self.provider_config = provider, dict(provider_config)
        self.threshold, self.budget, self.field = threshold, budget, field

    def provider(self) -> Provider:
        return get_provider(self.provider_kind, **self.provider_config)

    def columns(self) -> tuple[str, ...]:
        return ("id", "split", "label", self.field)

    def _identity(self) -> Iterable[str]:
        yield json.dumps(self._spec(), sort_keys=True, default=str)

    def _spec(self) -> dict[str, Any]:
        return {"provider": self.provider_kind, "config": self.provider_config, "threshold": self.threshold,
                "budget": self.budget, "field": self.field}

    @property
    def scoped(self) -> bool:
        """Whether it votes only on the rows the other LFs' votes leave to it (it has a ``budget``)."""
        return self.budget is not None

    def scope(self, others: np.ndarray) -> np.ndarray:
        """``[n]`` bool: the rows it may vote on, given the ``[n, m]`` votes of the suite's LFs without a budget."""
        return budget_rows(others, self.budget)  # type: ignore[arg-type]

    def votes(self, frame: pl.DataFrame, *, cardinality: int, cache: FMCache | None, rows: np.ndarray | None = None,
              progress: bool = False, engine: ModelHost | None = None) -> FMVotes:
        """Its votes on the ``n`` rows of ``frame``, the threshold it voted at and what its model did.

        ``rows`` (bool ``[n]``) limits where it may vote (and call the model); ``engine`` runs the
        model elsewhere (a Ray cluster). Nothing is kept on the LF: a run on the same rows gives the same."""
        missing = [c for c in self.columns() if c not in RESERVED and c not in frame.columns]
        if missing:
            raise LFError(f"LF {self.name!r} reads column {missing[0]!r}, which the data lacks; columns are {frame.columns}")
        self._check(cardinality)
        n = frame.height
        dev = _dev_gold(frame)
        scope = np.ones(n, dtype=bool) if rows is None else rows
        needed = scope | dev if self.threshold == "auto" else scope
        pred = np.full(n, ABSTAIN, dtype=np.int64)
        conf = np.full(n, -np.inf)
        stats = RunStats()
        idx = np.flatnonzero(needed)
        if len(idx):
            provider = self.provider() if engine is None else engine.provider(self.provider_kind, self.provider_config)
            pred[idx], conf[idx], stats = self._predict(frame, idx, provider=provider, cache=cache, progress=progress)
        if self.threshold == "auto":
            gold = frame["label"].fill_null(ABSTAIN).to_numpy()
            if not dev.any():
                raise LFError(f"LF {self.name!r}: threshold='auto' needs gold-labeled rows in split 'dev'")
            threshold = _fit_threshold(conf[dev], pred[dev], gold[dev])
        else:
            threshold = float(self.threshold)
        out = np.where(scope & (pred != ABSTAIN) & (conf >= threshold), pred, ABSTAIN)
        return FMVotes(out.astype(LABEL_DTYPE), threshold, stats)

    def _check(self, cardinality: int) -> None:
        """Raise if the LF's settings do not fit ``cardinality`` classes."""

    def _predict(self, frame: pl.DataFrame, idx: np.ndarray, *, provider: Provider, cache: FMCache | None,
                 progress: bool) -> tuple[np.ndarray, np.ndarray, RunStats]:
        """Predicted class and confidence, ``[len(idx)]`` each, for rows ``idx``, from ``provider``'s outputs,
        and what computing those outputs did."""
        raise NotImplementedError

    def _row_outputs(self, frame: pl.DataFrame, idx: np.ndarray, *, provider: Provider, cache: FMCache | None,
                     dry_run: bool = False) -> RunStats:
        """The per-row model outputs of rows ``idx`` alone (no reference rows, no calibration input), through
        ``cache``; what the run did (with ``dry_run``: how many would be computed). For timing and projections."""
        raise NotImplementedError


class PromptLF(FMLF):
    """Vote the class whose answer words an LLM finds most likely after the prompt."""

    def __init__(self, name: str, *, template: str, answers: Mapping[int, Sequence[str]], provider: str,
                 provider_config: Mapping[str, Any], threshold: Threshold, budget: Budget | None,
                 calibrate: bool) -> None:
        super().__init__(name, provider=provider, provider_config=provider_config, threshold=threshold, budget=budget)
        bad = [c for c in answers if not is_int(c, minimum=0)]
        if bad or not answers:
            raise LFError(f"LF {name!r}: answers must map class indices (ints ≥ 0) to answer words; got {dict(answers)!r}")
        for c, words in answers.items():
            if isinstance(words, str) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise LFError(f"LF {name!r}: answers[{c}] must be a non-empty list of words; got {words!r}")
        self.template, self.answers = template, {c: list(w) for c, w in sorted(answers.items())}
        self.calibrate = calibrate

    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(("id", "split", "label", *template_fields(self.template))))

    def _spec(self) -> dict[str, Any]:
        return {**super()._spec(), "template": self.template, "answers": self.answers, "calibrate": self.calibrate}

    def _check(self, cardinality: int) -> None:
        outside = [c for c in self.answers if c >= cardinality]
        if outside:
            raise LFError(f"LF {self.name!r}: the answer mapping has class(es) {outside} outside the schema's "
                          f"classes 0..{cardinality - 1}")

    def _predict(self, frame, idx, *, provider, cache, progress):
        k = max(self.answers) + 1
        answers = [self.answers.get(c, []) for c in range(k)]
        logp, stats = prompt_logprobs(frame[idx], template=self.template, answers=answers, provider=provider,
                                      cache=cache, progress=progress)
        if self.calibrate:  # contextual calibration (Zhao et al. 2021): divide out the answer prior of "N/A"
            blank = pl.DataFrame({f: ["N/A"] for f in template_fields(self.template)})
            prior, prior_stats = prompt_logprobs(blank, template=self.template, answers=answers, provider=provider,
                                                 cache=cache)
            stats.add(prior_stats)
            logp = logp - prior
        probs = softmax(logp)
        return probs.argmax(axis=1), probs.max(axis=1), stats

    def _row_outputs(self, frame, idx, *, provider, cache, dry_run=False):
        answers = [self.answers.get(c, []) for c in range(max(self.answers) + 1)]
        return prompt_logprobs(frame[idx], template=self.template, answers=answers, provider=provider, cache=cache,
                               dry_run=dry_run)[1]


class ZeroShotLF(FMLF):
    """Vote the class whose description is most similar to the text, by a margin over the runner-up."""

    def __init__(self, name: str, *, descriptions: Sequence[str], threshold: Threshold, field: str,
                 provider_config: Mapping[str, Any]) -> None:
        super().__init__(name, provider="sentence-transformers", provider_config=provider_config,
                         threshold=threshold, field=field)
        if isinstance(descriptions, str) or len(descriptions) < 2:
            raise LFError(f"LF {name!r}: descriptions must list one description per class (≥ 2); got {descriptions!r}")
        self.descriptions = list(descriptions)

    def _spec(self) -> dict[str, Any]:
        return {**super()._spec(), "descriptions": self.descriptions}

    def _check(self, cardinality: int) -> None:
        if len(self.descriptions) != cardinality:
            raise LFError(f"LF {self.name!r}: {len(self.descriptions)} descriptions for {cardinality} classes")

    def _predict(self, frame, idx, *, provider, cache, progress):
        sims, stats = zero_shot_similarity(frame[self.field].gather(idx).to_list(), descriptions=self.descriptions,
                                           provider=provider, cache=cache, progress=progress)
        top2 = np.sort(sims, axis=1)[:, -2:]
        return sims.argmax(axis=1), top2[:, 1] - top2[:, 0], stats

    def _row_outputs(self, frame, idx, *, provider, cache, dry_run=False):
        return _embed_rows(frame, self.field, idx, provider=provider, cache=cache, dry_run=dry_run)


class KnnLF(FMLF):
    """Vote the gold label of the most similar dev rows (a row never counts as its own neighbour)."""

    def __init__(self, name: str, *, neighbors: int, threshold: Threshold, field: str,
                 provider_config: Mapping[str, Any], reference: Sequence[str] | None = None) -> None:
        super().__init__(name, provider="sentence-transformers", provider_config=provider_config,
                         threshold=threshold, field=field)
        check_int(f"LF {name!r}: neighbors", neighbors, minimum=1, error=LFError)
        if reference is not None and (isinstance(reference, str) or not reference):
            raise LFError(f"LF {name!r}: reference must be a non-empty list of row ids; got {reference!r}")
        self.neighbors = neighbors
        self.reference = None if reference is None else sorted(map(str, reference))

    def _spec(self) -> dict[str, Any]:
        return {**super()._spec(), "neighbors": self.neighbors, "reference": self.reference}

    def _predict(self, frame, idx, *, provider, cache, progress):
        ref_rows = _dev_gold(frame)
        if self.reference is not None:
            ref_rows &= frame["id"].is_in(self.reference).to_numpy()
        ref = np.flatnonzero(ref_rows)
        if not len(ref):
            raise LFError(f"LF {self.name!r}: needs gold-labeled rows in split 'dev'"
                          + (" among its reference ids" if self.reference is not None else "") + " to find neighbours among")
        texts = frame[self.field].to_list()
        emb, stats = embed_texts([texts[i] for i in idx], provider=provider, cache=cache, progress=progress)
        ref_emb, ref_stats = embed_texts([texts[i] for i in ref], provider=provider, cache=cache)
        stats.add(ref_stats)
        gold = frame["label"].to_numpy()[ref].astype(np.int64)
        k = min(self.neighbors, len(ref))
        pred, conf = np.empty(len(idx), dtype=np.int64), np.empty(len(idx))
        for lo in range(0, len(idx), KNN_CHUNK):
            sims = emb[lo:lo + KNN_CHUNK] @ ref_emb.T
            sims[idx[lo:lo + KNN_CHUNK, None] == ref[None, :]] = -np.inf  # leave-one-out
            top = np.argsort(-sims, axis=1)[:, :k]
            top_sims = np.take_along_axis(sims, top, axis=1)
            labels = np.where(np.isfinite(top_sims), gold[top], ABSTAIN)  # the row itself is never a neighbour
            # similarity-weighted vote among the classes of the k nearest; confidence = the winner's mean similarity
            classes = range(gold.max() + 1)
            weights = np.stack([np.where((labels == c).any(axis=1), np.where(labels == c, top_sims, 0).sum(axis=1),
                                         -np.inf) for c in classes], axis=1)
            found = np.isfinite(weights).any(axis=1)
            winner = np.where(found, weights.argmax(axis=1), ABSTAIN)
            hits = (labels == winner[:, None]) & found[:, None]
            pred[lo:lo + len(top)] = winner
            conf[lo:lo + len(top)] = np.where(found, np.where(hits, top_sims, 0).sum(axis=1)
                                              / np.maximum(hits.sum(axis=1), 1), -np.inf)
        return pred, conf, stats

    def _row_outputs(self, frame, idx, *, provider, cache, dry_run=False):
        return _embed_rows(frame, self.field, idx, provider=provider, cache=cache, dry_run=dry_run)


def prompt_lf(name: str, *, template: str, answers: Mapping[int, Sequence[str]], provider: str = "transformers",
              provider_config: Mapping[str, Any] | None = None, min_confidence: Threshold = 0.5,
              budget: Budget | None = None, calibrate: bool = True) -> PromptLF:
    """An LF asking an LLM: vote the class whose answer words are most probable next.

    Parameters
    ----------
    template
        ``str.format`` template over the row's columns, e.g. ``"Comment: {text}\\nSpam:"``.
    answers
        ``{class index: [answer words]}``, e.g. ``{SPAM: ["yes"], HAM: ["no"]}``.
    provider, provider_config
        ``"transformers"`` (default Gemma 3 270M) or ``"openai"`` with e.g.
        ``{"base_url": ..., "model": ...}``.
    min_confidence
        Vote only where the winning class's probability (over the mapped classes) is
        at least this; ``"auto"`` fits it on dev gold.
    budget
        Ask the model only about rows the other LFs leave uncovered / conflict on.
    calibrate
        Divide out the model's answer prior, measured on the template filled with
        ``"N/A"`` (contextual calibration), before taking probabilities.
    """
    return PromptLF(name, template=template, answers=answers, provider=provider,
                    provider_config=provider_config or {}, threshold=min_confidence, budget=budget,
                    calibrate=calibrate)


def zero_shot_lf(name: str, *, descriptions: Sequence[str], margin: Threshold = 0.05, field: str = "text",
                 model: str = "all-MiniLM-L6-v2") -> ZeroShotLF:
    """An LF voting the class whose description (``descriptions[c]``) an embedding finds
    closest to the text, when it beats the runner-up by ``margin`` cosine similarity
    (``"auto"``: fit on dev gold)."""
    return ZeroShotLF(name, descriptions=descriptions, threshold=margin, field=field, provider_config={"model": model})


def knn_lf(name: str, *, neighbors: int = 5, min_similarity: Threshold = 0.6, field: str = "text",
           model: str = "all-MiniLM-L6-v2", reference: Sequence[str] | None = None) -> KnnLF:
    """An LF voting the gold label of the ``neighbors`` most similar dev rows (by embedding,
    similarity-weighted) when their mean cosine similarity is at least ``min_similarity``
    (``"auto"``: fit on dev gold, leave-one-out). ``reference``: only these dev row ids
    are neighbours (for example the gold rows of one error slice)."""
    return KnnLF(name, neighbors=neighbors, threshold=min_similarity, field=field, provider_config={"model": model},
                 reference=reference)


def budget_rows(L_others: np.ndarray, budget: Budget) -> np.ndarray:
    """``[n]`` bool: rows an LF with ``budget`` may vote on, given the ``[n, m]`` votes of the other LFs.

    Examples
    --------
    >>> budget_rows(np.array([[-1, -1], [0, 1], [1, 1]]), "uncovered_or_conflicts")
    array([ True,  True, False])
    """
    voted = L_others != ABSTAIN
    uncovered = ~voted.any(axis=1)
    high = np.where(voted, L_others, -1).max(axis=1)
    low = np.where(voted, L_others, np.iinfo(np.int16).max).min(axis=1)
    conflict = voted.any(axis=1) & (high != low)
    return {"uncovered": uncovered, "conflicts": conflict, "uncovered_or_conflicts": uncovered | conflict}[budget]


def _embed_rows(frame: pl.DataFrame, field: str, idx: np.ndarray, *, provider: Provider, cache: FMCache | None,
                dry_run: bool) -> RunStats:
    return embed_texts(frame[field].gather(idx).to_list(), provider=provider, cache=cache, dry_run=dry_run)[1]


def _dev_gold(frame: pl.DataFrame) -> np.ndarray:
    if "split" not in frame.columns or "label" not in frame.columns:
        return np.zeros(frame.height, dtype=bool)
    return ((frame["split"] == "dev") & frame["label"].is_not_null()).to_numpy()


def _fit_threshold(conf: np.ndarray, pred: np.ndarray, gold: np.ndarray) -> float:
    """The confidence cut-off maximising (correct − incorrect) votes; ``inf`` when none gains.

    Examples
    --------
    >>> _fit_threshold(np.array([0.9, 0.8, 0.3]), np.array([1, 1, 0]), np.array([1, 1, 1]))
    0.8
    """
    ok = pred != ABSTAIN
    conf, gain = conf[ok], np.where(pred[ok] == gold[ok], 1, -1)
    if not len(conf):
        return float("inf")
    order = np.argsort(-conf, kind="stable")
    conf, total = conf[order], np.cumsum(gain[order])
    ends = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))  # last index of each tied confidence
    best = ends[np.argmax(total[ends])]
    return float(conf[best]) if total[best] > 0 else float("inf")
