"""Label models on synthetic label matrices drawn from known generative models, regime by regime.

Every matrix comes from a seeded generative model whose truth is known, so a label
model can be scored on regimes no real dataset covers on its own: 2–50 classes,
3–1,000 LFs, unipolar and multipolar LFs, coverage from 5 % to 100 %, LF
accuracies from 0.2 (worse than chance) to 0.99, class imbalance up to 1:100,
correlated and duplicated LFs, and matrices shaped like real ones (single-vote
relation extraction, low-quality multi-class suites, broad mediocre LFs beside
narrow precise ones, spam).

Generative model
----------------
A matrix has ``k`` classes with a prior ``π`` (class 0 the most frequent) and
``m`` LFs built in groups. The true classes ``y`` of ``n_train + n_dev + n_test``
rows are drawn from ``π``; every LF then votes on every row independently given
``y`` unless its group says otherwise. Each LF is described by its firing rate
per class, ``R[j, y] = P(LF j votes | y)``, and what it votes when it fires:

``Unipolar``
    LF ``j`` only ever votes its target class ``c_j``. It fires on rows of ``c_j``
    with probability ``tpr_j`` (its recall) and on rows of other classes with a
    false-positive rate chosen so that its precision hits a drawn target ``P_j``:
    the false-positive mass is ``F = tpr·π_c·(1−P)/P``; a share ``confusable`` of it
    falls on one confusable class ``c'_j`` (a fixed derangement of the classes)
    and the rest spreads evenly over the remaining classes, so
    ``precision = tpr·π_c / (tpr·π_c + F)``. Rates are clipped at 1 (which raises
    the precision where ``P`` is far below ``π_c``). With ``exclusive``, the group's
    LFs partition the rows: a row gets at most one vote from the group (a
    categorical draw over the group's LFs with probabilities ``R[:, y]``, the
    column scaled down where it sums past 1) — how narrow keyword or pattern
    LFs of a relation classifier behave.
``Multipolar``
    LF ``j`` fires with propensity ``p_j`` whatever the class, votes the true
    class with probability ``a_j`` and otherwise a wrong class: with probability
    ``confusion`` the true class's confusable class, else a uniform wrong class.
``Copies``
    LFs that copy a parent from an earlier group: on each row, with probability
    ``q_j`` the child repeats the parent's vote (abstain included), otherwise it
    draws its own vote from the parent's distribution, independently. The child
    has the parent's accuracy and coverage but its errors coincide with the
    parent's — conditional independence fails. ``q = 1`` gives exact duplicates.
``Feature``
    Latent features (a keyword, a template) that are themselves unipolar in
    class: feature ``f`` is present on rows of its class with probability
    ``tpr_f`` and elsewhere at the rate its precision implies. Each LF of the group
    watches one feature and fires on a fraction ``fire_j`` of the rows where it is
    present, voting the feature's class; LFs sharing a feature make the same
    mistakes on the same rows.

Parameters are drawn uniformly from each group's ranges with a parameter
generator, the rows with a separate data generator, both from the spec's seed,
so a matrix is the same on every machine and a change of split sizes leaves the
LFs' parameters alone. The train, dev and test splits are consecutive slices of
one sample. :func:`generate` also returns, per LF, its kind, target class,
parent and its expected coverage and accuracy under the model.

Regimes
-------
``ci``
    Conditionally independent multipolar LFs, the assumption shared by
    one-coin Dawid–Skene and Snorkel's model: 2–50 classes, 3–1,000 LFs.
``unipolar``
    Only unipolar LFs (round-robin over classes), 2–50 classes, up to 1,000 LFs.
``coverage``
    Coverage extremes: about 5 % of rows covered; every LF voting on every row.
``accuracy``
    LF accuracies below chance among good ones, all low (0.2–0.6), all high
    (0.9–0.99), and the whole 0.2–0.99 range.
``imbalance``
    Class imbalance up to 1:100 with multipolar, unipolar and mixed LFs.
``correlated``
    Conditional independence broken: copies of a parent LF, exact duplicates of
    a bad or a good LF, LFs sharing latent features, and all at once.
``single_vote``
    Most covered rows carry exactly one vote from many narrow, precise, unipolar
    LFs — shaped like a relation-classification matrix (9 classes, 164 unipolar
    LFs, median LF accuracy 1.0, class balance 29 % down to 3.4 %, ~74 % of rows
    with exactly one vote).
``low_quality``
    Few unipolar LFs of median accuracy ≈ 0.5, several worse than chance, over
    strongly imbalanced classes (10 classes, 26 LFs, ~85 % coverage, ~1.8 votes
    per covered row, class balance 33 % down to 0.6 %).
``broad_narrow``
    Broad mediocre multipolar LFs (coverage ~100 %, accuracy 0.72–0.75) beside 5
    narrow precise unipolar LFs that cover ~43 % of rows together.
``spam``
    Binary, ~60 % of rows uncovered, high-precision unipolar LFs for the rare
    class and a few for the common one.
``mixed``
    Unipolar and multipolar LFs together, with some correlation.

Which models run
----------------
Every model of ``--models`` (default: every registered label model) is fit on the
train split alone ("unsupervised") and, unless ``--no-dev``, again with the dev
split's votes and gold (``fit(L_train, L_dev=..., y_dev=...)``); both are scored on
test by accuracy (ties broken with ``tie_policy="random"``), macro-F1 and fit
seconds. Snorkel's ``LabelModel`` works on an ``(m·k) × (m·k)`` matrix, so it is
skipped where ``m·k`` exceeds ``--snorkel-max-mk`` (default 2,000), and so is
``auto`` with dev gold, which fits Snorkel three times inside; a failing fit is
recorded with its error and the other models still run. Torch runs on one thread
unless ``--torch-threads`` says otherwise: on a busy 2-core machine Snorkel's fit on
these matrices ran several times faster on one thread than on two.

Run::

    python bench/synthetic_matrices.py                        # every matrix, every model
    python bench/synthetic_matrices.py --quick --models majority_vote labelflow
    python bench/synthetic_matrices.py --list                 # the specs, nothing fitted

Human-readable lines first (a row per matrix and mode, a column per model, then a
summary for ``--default`` against majority vote and Snorkel); the last line is one
JSON object ``{"matrices": [...], "summary": {...}}``.

Other code can reuse the generator::

    from bench.synthetic_matrices import generate, matrix_specs
    data = generate(next(s for s in matrix_specs() if s.name == "ci_k5_m30"))
    data["L_train"].shape  # (n_train, m), int8
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Range = tuple[float, float]
"""A closed interval ``(low, high)`` a parameter is drawn from uniformly; ``(x, x)`` fixes it."""

DEFAULT_SNORKEL_MAX_MK = 2000
"""Snorkel's ``LabelModel`` is skipped where ``m·k`` exceeds this (``--snorkel-max-mk``)."""

TOLERANCE = 0.005
"""The default model "matches" the better baseline when it scores at least this much below it, or better."""

QUICK = ("ci_k2_m10", "unipolar_k4_m20", "correlated_dups_bad_k3", "single_vote_k5_m60", "spam_k2_m10")
"""The matrices ``--quick`` runs: small, one per main regime."""


# --- specs ------------------------------------------------------------------------------------------------


def _check_range(name: str, value: Range, low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be (low, high) with {low} ≤ low ≤ high ≤ {high}; got {value!r}")


@dataclass(frozen=True)
class Unipolar:
    """``count`` LFs that each vote only their target class (see the module docstring).

    ``recall`` is ``P(fires | y = target)``; ``precision`` the target precision,
    except that a share ``perfect`` of the LFs gets precision 1.0. ``targets``:
    ``"cycle"`` (classes 0, 1, … in turn), ``"rare"`` (the least frequent class),
    ``"common"`` (the most frequent), or a tuple of classes taken in turn.
    """

    count: int
    recall: Range
    precision: Range
    perfect: float = 0.0
    targets: Literal["cycle", "rare", "common"] | tuple[int, ...] = "cycle"
    confusable: float = 0.0
    exclusive: bool = False

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be ≥ 1; got {self.count}")
        _check_range("recall", self.recall, 0.0, 1.0)
        _check_range("precision", self.precision, 1e-3, 1.0)
        if not 0 <= self.perfect <= 1 or not 0 <= self.confusable <= 1:
            raise ValueError(f"perfect and confusable must be in [0, 1]; got {self.perfect}, {self.confusable}")
        if isinstance(self.targets, str) and self.targets not in ("cycle", "rare", "common"):
            raise ValueError(f"targets must be 'cycle', 'rare', 'common' or a tuple of classes; got {self.targets!r}")


@dataclass(frozen=True)
class Multipolar:
    """``count`` LFs that fire with propensity in ``propensity`` and are right with probability in ``accuracy``;
    a wrong vote is the true class's confusable class with probability ``confusion``, else uniform."""

    count: int
    propensity: Range
    accuracy: Range
    confusion: float = 0.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be ≥ 1; got {self.count}")
        _check_range("propensity", self.propensity, 0.0, 1.0)
        _check_range("accuracy", self.accuracy, 0.0, 1.0)
        if not 0 <= self.confusion <= 1:
            raise ValueError(f"confusion must be in [0, 1]; got {self.confusion}")


@dataclass(frozen=True)
class Copies:
    """``count`` LFs copying parents from group ``of`` (an earlier group's index): the parents are that
    group's first ``parents`` LFs (all when ``None``), taken in turn; ``copy`` is the per-row probability
    of repeating the parent's vote, ``(1, 1)`` for exact duplicates."""

    count: int
    of: int
    copy: Range
    parents: int | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or self.of < 0 or (self.parents is not None and self.parents < 1):
            raise ValueError(f"need count ≥ 1, of ≥ 0, parents ≥ 1; got {self.count}, {self.of}, {self.parents}")
        _check_range("copy", self.copy, 0.0, 1.0)


@dataclass(frozen=True)
class Feature:
    """``count`` LFs watching ``features`` latent unipolar features (LF ``j`` watches feature ``j % features``);
    a feature has recall in ``recall`` and precision in ``precision`` for its class (``targets`` as in
    :class:`Unipolar`); an LF fires on a fraction in ``fire`` of the rows where its feature is present."""

    count: int
    features: int
    recall: Range
    precision: Range
    fire: Range
    targets: Literal["cycle", "rare", "common"] | tuple[int, ...] = "cycle"
    confusable: float = 0.0

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.features <= self.count:
            raise ValueError(f"need count ≥ 1 and 1 ≤ features ≤ count; got {self.count}, {self.features}")
        _check_range("recall", self.recall, 0.0, 1.0)
        _check_range("precision", self.precision, 1e-3, 1.0)
        _check_range("fire", self.fire, 0.0, 1.0)


Group = Unipolar | Multipolar | Copies | Feature


@dataclass(frozen=True)
class MatrixSpec:
    """One synthetic matrix: ``k`` classes with prior ``class_balance`` (``[k]``, summing to 1), LF ``groups``
    (``m`` LFs in all, in group order), split sizes and a seed."""

    name: str
    regime: str
    k: int
    class_balance: tuple[float, ...]
    groups: tuple[Group, ...]
    n_train: int
    n_dev: int = 300
    n_test: int = 2000
    seed: int = 0
    note: str = ""
    m: int = field(init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.k <= 127:
            raise ValueError(f"k must be in 2..127 (int8 votes); got {self.k}")
        if len(self.class_balance) != self.k or min(self.class_balance) <= 0 or abs(sum(self.class_balance) - 1) > 1e-6:
            raise ValueError(f"class_balance must be {self.k} positive numbers summing to 1; got {self.class_balance}")
        if not self.groups:
            raise ValueError(f"{self.name}: groups must not be empty")
        for i, group in enumerate(self.groups):
            if isinstance(group, Copies) and (group.of >= i or isinstance(self.groups[group.of], Copies)):
                raise ValueError(f"{self.name}: group {i} copies group {group.of}, which must be an earlier, non-copy group")
            targets = getattr(group, "targets", "cycle")
            if not isinstance(targets, str) and (not targets or not all(0 <= c < self.k for c in targets)):
                raise ValueError(f"{self.name}: group {i} targets must be classes in 0..{self.k - 1}; got {targets}")
        if min(self.n_train, self.n_dev, self.n_test) < 1:
            raise ValueError(f"{self.name}: split sizes must be ≥ 1; got {self.n_train}, {self.n_dev}, {self.n_test}")
        object.__setattr__(self, "m", sum(g.count for g in self.groups))

    def describe(self) -> str:
        """One line: shape, class balance and the LF groups."""
        groups = "; ".join(_describe_group(g) for g in self.groups)
        bal = f"balance {max(self.class_balance):.1%}..{min(self.class_balance):.1%}"
        return f"k={self.k} m={self.m} n={self.n_train}/{self.n_dev}/{self.n_test} {bal} | {groups}"


def _describe_group(g: Group) -> str:
    r = lambda v: f"{v[0]:g}" if v[0] == v[1] else f"{v[0]:g}-{v[1]:g}"  # noqa: E731
    if isinstance(g, Unipolar):
        extra = (f" perfect {g.perfect:g}" if g.perfect else "") + (" exclusive" if g.exclusive else "") + (
            f" confusable {g.confusable:g}" if g.confusable else "")
        return f"{g.count} unipolar({g.targets if isinstance(g.targets, str) else list(g.targets)}) recall {r(g.recall)} precision {r(g.precision)}{extra}"
    if isinstance(g, Multipolar):
        return f"{g.count} multipolar propensity {r(g.propensity)} accuracy {r(g.accuracy)}" + (
            f" confusion {g.confusion:g}" if g.confusion else "")
    if isinstance(g, Copies):
        kind = "duplicates" if g.copy == (1.0, 1.0) else f"copies (q {r(g.copy)})"
        return f"{g.count} {kind} of group {g.of}" + (f"[:{g.parents}]" if g.parents else "")
    return f"{g.count} on {g.features} features recall {r(g.recall)} precision {r(g.precision)} fire {r(g.fire)}"


def balanced(k: int) -> tuple[float, ...]:
    """``[k]`` uniform class prior."""
    return tuple([1.0 / k] * k)


def geometric(k: int, ratio: float) -> tuple[float, ...]:
    """``[k]`` class prior falling geometrically from class 0 to class ``k-1``, ``ratio`` times smaller."""
    p = ratio ** (-np.arange(k) / (k - 1))
    return tuple((p / p.sum()).tolist())


def between(k: int, top: float, bottom: float) -> tuple[float, ...]:
    """``[k]`` class prior with class 0 at ``top``, class ``k-1`` at ``bottom`` and geometric steps between,
    the middle classes scaled to make the sum 1."""
    p = top * (bottom / top) ** (np.arange(k) / (k - 1))
    p[1:-1] *= (1 - top - bottom) / p[1:-1].sum()
    return tuple(p.tolist())


def matrix_specs() -> list[MatrixSpec]:
    """Every benchmark matrix, grouped by regime (see the module docstring), each with a fixed seed."""
    S, U, M, C, F = MatrixSpec, Unipolar, Multipolar, Copies, Feature
    specs = [
        # --- ci: conditionally independent multipolar LFs ---
        S("ci_k2_m10", "ci", 2, balanced(2), (M(10, (0.2, 0.7), (0.55, 0.85)),), 2000, seed=101),
        S("ci_k3_m3", "ci", 3, geometric(3, 2), (M(3, (0.5, 0.9), (0.6, 0.8)),), 2000, seed=102),
        S("ci_k5_m30", "ci", 5, geometric(5, 3), (M(30, (0.05, 0.4), (0.35, 0.8)),), 4000, seed=103),
        S("ci_k10_m50", "ci", 10, geometric(10, 5), (M(50, (0.05, 0.3), (0.3, 0.8), confusion=0.5),), 5000, seed=104),
        S("ci_k20_m100", "ci", 20, geometric(20, 5), (M(100, (0.02, 0.15), (0.25, 0.8)),), 5000, seed=105),
        S("ci_k50_m200", "ci", 50, geometric(50, 10), (M(200, (0.01, 0.08), (0.2, 0.8), confusion=0.3),), 8000,
          seed=106),
        S("ci_k2_m1000", "ci", 2, geometric(2, 2), (M(1000, (0.002, 0.02), (0.5, 0.8)),), 3000, seed=107),
        # --- unipolar: every LF votes one class ---
        S("unipolar_k2_m6", "unipolar", 2, geometric(2, 3), (U(6, (0.1, 0.5), (0.6, 0.95)),), 2000, seed=201),
        S("unipolar_k4_m20", "unipolar", 4, geometric(4, 4), (U(20, (0.05, 0.4), (0.5, 0.95), confusable=0.5),), 3000,
          seed=202),
        S("unipolar_k10_m60", "unipolar", 10, geometric(10, 10), (U(60, (0.05, 0.5), (0.4, 0.99), confusable=0.5),),
          5000, seed=203),
        S("unipolar_k25_m150", "unipolar", 25, geometric(25, 10), (U(150, (0.05, 0.4), (0.4, 0.99)),), 6000, seed=204),
        S("unipolar_k50_m1000", "unipolar", 50, geometric(50, 20), (U(1000, (0.01, 0.15), (0.3, 0.99), confusable=0.5),),
          3000, seed=205),
        # --- coverage extremes ---
        S("coverage_sparse_k3_m20", "coverage", 3, balanced(3), (M(20, (0.001, 0.005), (0.5, 0.9)),), 10000, seed=301,
          note="about 5 % of rows covered"),
        S("coverage_full_k3_m8", "coverage", 3, geometric(3, 2), (M(8, (1.0, 1.0), (0.45, 0.75)),), 3000, seed=302,
          note="every LF votes on every row"),
        S("coverage_sparse_k10_m300", "coverage", 10, geometric(10, 4), (M(300, (0.0002, 0.0015), (0.4, 0.9)),),
          8000, seed=303, note="many LFs, each on well under 1 % of rows"),
        # --- accuracy regimes ---
        S("accuracy_adversarial_k2_m12", "accuracy", 2, balanced(2),
          (M(8, (0.2, 0.6), (0.65, 0.85)), M(4, (0.2, 0.6), (0.2, 0.4))), 3000, seed=401,
          note="4 of 12 LFs worse than chance"),
        S("accuracy_low_k5_m30", "accuracy", 5, geometric(5, 2), (M(30, (0.1, 0.5), (0.15, 0.6)),), 4000, seed=402),
        S("accuracy_high_k5_m15", "accuracy", 5, geometric(5, 2), (M(15, (0.05, 0.3), (0.9, 0.99)),), 3000, seed=403),
        S("accuracy_wide_k10_m60", "accuracy", 10, geometric(10, 3),
          (M(40, (0.05, 0.3), (0.2, 0.99), confusion=0.5), U(20, (0.05, 0.4), (0.2, 0.99))), 5000, seed=404),
        # --- class imbalance ---
        S("imbalance_k2_1to20_m10", "imbalance", 2, geometric(2, 20), (M(10, (0.1, 0.6), (0.6, 0.9)),), 4000, seed=501),
        S("imbalance_k2_1to100_m20", "imbalance", 2, geometric(2, 100),
          (M(12, (0.1, 0.5), (0.6, 0.9)), U(8, (0.2, 0.6), (0.3, 0.9), targets="rare")), 8000, seed=502),
        S("imbalance_k5_1to100_m40", "imbalance", 5, geometric(5, 100), (U(40, (0.1, 0.5), (0.4, 0.95)),), 8000,
          seed=503),
        S("imbalance_k10_1to50_m80", "imbalance", 10, geometric(10, 50),
          (M(30, (0.05, 0.3), (0.4, 0.8), confusion=0.5), U(50, (0.1, 0.5), (0.5, 0.99), confusable=0.5)), 8000,
          seed=504),
        # --- correlated LFs and duplicates ---
        S("correlated_copies_k2_m30", "correlated", 2, balanced(2),
          (M(3, (0.3, 0.6), (0.58, 0.62)), C(18, 0, (0.7, 0.95)), M(9, (0.1, 0.3), (0.72, 0.8))), 3000, seed=601,
          note="3 mediocre parents with 6 near-copies each outvote 9 better independent LFs"),
        S("correlated_dups_bad_k3", "correlated", 3, balanced(3),
          (M(6, (0.3, 0.6), (0.6, 0.8)), M(1, (0.5, 0.5), (0.4, 0.4)), C(7, 1, (1.0, 1.0))), 2000, seed=602,
          note="one poor LF and 7 exact duplicates of it"),
        S("correlated_dups_good_k2", "correlated", 2, geometric(2, 2),
          (M(8, (0.2, 0.5), (0.55, 0.7)), U(2, (0.3, 0.4), (0.95, 0.98), targets="rare"), C(6, 1, (1.0, 1.0))), 3000,
          seed=603, note="a precise rare-class LF duplicated 6 times"),
        S("correlated_features_k3_m24", "correlated", 3, balanced(3),
          (F(18, 3, (0.2, 0.4), (0.5, 0.6), (0.8, 1.0)), M(6, (0.2, 0.4), (0.7, 0.8))), 3000, seed=604,
          note="18 LFs watching 3 mediocre latent features"),
        S("correlated_features_k10_m100", "correlated", 10, geometric(10, 5),
          (F(60, 12, (0.1, 0.4), (0.4, 0.9), (0.5, 1.0)), U(40, (0.05, 0.3), (0.6, 0.95))), 6000, seed=605),
        S("correlated_mixed_k20_m90", "correlated", 20, geometric(20, 5),
          (M(30, (0.05, 0.2), (0.4, 0.8), confusion=0.5), C(20, 0, (0.5, 0.9), parents=5),
           F(30, 6, (0.1, 0.3), (0.5, 0.9), (0.6, 1.0)), C(10, 0, (1.0, 1.0), parents=2)), 6000, seed=606),
        # --- single-vote dominated ---
        S("single_vote_relation_k9_m164", "single_vote", 9, between(9, 0.29, 0.034),
          (U(150, (0.01, 0.08), (0.55, 0.99), perfect=0.6, exclusive=True, confusable=0.7),
           U(14, (0.02, 0.1), (0.5, 0.9))), 8000, seed=701,
          note="like a relation-classification matrix: ~74 % of rows with exactly one vote, median LF accuracy 1.0"),
        S("single_vote_k5_m60", "single_vote", 5, geometric(5, 4),
          (U(55, (0.02, 0.12), (0.7, 0.99), perfect=0.4, exclusive=True), U(5, (0.02, 0.1), (0.5, 0.8))), 3000,
          seed=702),
        S("single_vote_k20_m300", "single_vote", 20, geometric(20, 15),
          (U(280, (0.02, 0.08), (0.5, 0.99), perfect=0.5, exclusive=True, confusable=0.7),
           U(20, (0.01, 0.05), (0.4, 0.9))), 6000, seed=703),
        # --- low quality ---
        S("low_quality_k10_m26", "low_quality", 10, between(10, 0.33, 0.006),
          (U(16, (0.15, 0.35), (0.45, 0.85), exclusive=True, confusable=0.5),
           U(6, (0.15, 0.4), (0.25, 0.55), confusable=0.5), U(4, (0.02, 0.06), (0.1, 0.2), targets=(0, 1))), 5000,
          seed=801,
          note="like a weak multi-class suite: median LF accuracy ~0.5, several worse than chance"),
        S("low_quality_k4_m12", "low_quality", 4, geometric(4, 10),
          (U(12, (0.2, 0.6), (0.2, 0.65), confusable=0.6),), 3000, seed=802),
        S("low_quality_k2_m8", "low_quality", 2, geometric(2, 3),
          (M(4, (0.3, 0.7), (0.45, 0.65)), U(4, (0.1, 0.5), (0.15, 0.6))), 3000, seed=803),
        # --- broad mediocre + narrow precise ---
        S("broad_narrow_k2_m8", "broad_narrow", 2, balanced(2),
          (M(3, (0.97, 1.0), (0.72, 0.75)), U(5, (0.15, 0.25), (0.9, 0.98))), 3000, seed=901,
          note="3 broad LFs (coverage ~100 %, accuracy 0.72-0.75) and 5 narrow precise ones covering ~43 %"),
        S("broad_narrow_k4_m11", "broad_narrow", 4, geometric(4, 3),
          (M(6, (0.97, 1.0), (0.72, 0.75), confusion=0.6), U(5, (0.3, 0.5), (0.9, 0.98))), 4000, seed=902),
        S("broad_narrow_k6_m25", "broad_narrow", 6, geometric(6, 4),
          (M(20, (0.97, 1.0), (0.72, 0.75), confusion=0.5), U(5, (0.4, 0.7), (0.92, 0.99), targets=(1, 2, 3, 4, 5))),
          4000, seed=903),
        # --- spam-like binary ---
        S("spam_k2_m10", "spam", 2, (0.87, 0.13),
          (U(8, (0.1, 0.35), (0.85, 0.99), targets="rare"), U(2, (0.08, 0.2), (0.95, 0.99), targets="common")), 4000,
          seed=1001, note="~60 % of rows uncovered"),
        S("spam_k2_m30", "spam", 2, (0.9, 0.1),
          (U(22, (0.03, 0.15), (0.8, 0.99), targets="rare"), U(8, (0.03, 0.07), (0.92, 0.99), targets="common")), 6000,
          seed=1002),
        S("spam_k2_m73", "spam", 2, (0.8, 0.2),
          (U(40, (0.02, 0.08), (0.7, 0.99), targets="rare"), U(25, (0.005, 0.02), (0.85, 0.98), targets="common"),
           C(8, 0, (0.8, 1.0), parents=4)), 8000, seed=1003),
        # --- mixed unipolar + multipolar ---
        S("mixed_k3_m40", "mixed", 3, geometric(3, 3),
          (M(15, (0.1, 0.5), (0.45, 0.85)), U(20, (0.05, 0.3), (0.6, 0.99)), C(5, 1, (0.6, 0.9))), 4000, seed=1101),
        S("mixed_k8_m80", "mixed", 8, geometric(8, 8),
          (M(30, (0.05, 0.3), (0.3, 0.8), confusion=0.6), U(40, (0.05, 0.3), (0.5, 0.99), confusable=0.6),
           F(10, 3, (0.2, 0.4), (0.5, 0.8), (0.7, 1.0))), 5000, seed=1102),
        S("mixed_k15_m250", "mixed", 15, geometric(15, 10),
          (M(100, (0.01, 0.1), (0.3, 0.85), confusion=0.4), U(150, (0.02, 0.2), (0.4, 0.99), confusable=0.5)), 5000,
          seed=1103),
    ]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"matrix names must be unique; got {names}")
    return specs


# --- generation -------------------------------------------------------------------------------------------


def _targets(targets: str | tuple[int, ...], count: int, prior: np.ndarray) -> np.ndarray:
    """``[count]`` target classes."""
    if targets == "cycle":
        return np.arange(count) % len(prior)
    if targets == "rare":
        return np.full(count, int(np.argmin(prior)))
    if targets == "common":
        return np.full(count, int(np.argmax(prior)))
    return np.asarray(targets)[np.arange(count) % len(targets)]


def _unipolar_rates(target: np.ndarray, recall: np.ndarray, precision: np.ndarray, confusable: float,
                    prior: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """``[count, k]`` firing rates ``P(fires | y)`` of unipolar LFs with ``[count]`` targets, recalls and precisions."""
    count, k = len(target), len(prior)
    pi_c = prior[target]
    fp_mass = recall * pi_c * (1 - precision) / precision                       # [count]
    rates = np.zeros((count, k))
    rows = np.arange(count)
    if k == 2:
        rates[rows, 1 - target] = fp_mass / prior[1 - target]
    else:
        c2 = conf[target]
        rest = 1 - pi_c - prior[c2]
        spread = (1 - confusable) * fp_mass / rest                                # [count]
        rates[:] = spread[:, None]
        rates[rows, c2] = confusable * fp_mass / prior[c2]
    rates[rows, target] = recall
    return np.clip(rates, 0.0, 1.0)


def _lf_params(spec: MatrixSpec, rng: np.random.Generator, prior: np.ndarray, conf: np.ndarray) -> dict[str, Any]:
    """Per-LF parameters of every group, drawn with ``rng``; arrays of length ``m`` (``rates`` is ``[m, k]``)."""
    k, m = spec.k, spec.m
    p = {"rates": np.zeros((m, k)), "target": np.full(m, -1), "accuracy": np.zeros(m), "confusion": np.zeros(m),
         "group": np.zeros(m, dtype=np.int64), "parent": np.full(m, -1), "copy": np.zeros(m),
         "feature": np.full(m, -1), "exclusive": np.zeros(m, dtype=bool), "feature_rates": [], "feature_target": []}
    starts = np.cumsum([0] + [g.count for g in spec.groups])
    n_features = 0
    for gi, g in enumerate(spec.groups):
        sl = slice(starts[gi], starts[gi + 1])
        p["group"][sl] = gi
        u = lambda r: rng.uniform(r[0], r[1], g.count)  # noqa: E731
        if isinstance(g, Unipolar):
            target = _targets(g.targets, g.count, prior)
            recall, precision = u(g.recall), u(g.precision)
            precision[rng.random(g.count) < g.perfect] = 1.0
            rates = _unipolar_rates(target, recall, precision, g.confusable, prior, conf)
            if g.exclusive:  # at most one LF of the group per row: a column of rates must sum to ≤ 1
                rates /= np.maximum(rates.sum(axis=0), 1.0)
            p["rates"][sl], p["target"][sl], p["exclusive"][sl] = rates, target, g.exclusive
        elif isinstance(g, Multipolar):
            p["rates"][sl] = u(g.propensity)[:, None]
            p["accuracy"][sl], p["confusion"][sl] = u(g.accuracy), g.confusion
        elif isinstance(g, Feature):
            f_target = _targets(g.targets, g.features, prior)
            f_rates = _unipolar_rates(f_target, u(g.recall)[: g.features], u(g.precision)[: g.features],
                                      g.confusable, prior, conf)
            watch = np.arange(g.count) % g.features
            fire = u(g.fire)
            p["rates"][sl] = f_rates[watch] * fire[:, None]
            p["target"][sl], p["copy"][sl], p["feature"][sl] = f_target[watch], fire, n_features + watch
            p["feature_rates"].append(f_rates)
            p["feature_target"].append(f_target)
            n_features += g.features
        else:  # Copies: the parent's marginal, with a per-row copy probability
            n_parents = spec.groups[g.of].count if g.parents is None else min(g.parents, spec.groups[g.of].count)
            parent = starts[g.of] + np.arange(g.count) % n_parents
            for key in ("rates", "target", "accuracy", "confusion"):
                p[key][sl] = p[key][parent]
            p["parent"][sl], p["copy"][sl] = parent, u(g.copy)
    p["feature_rates"] = np.concatenate(p["feature_rates"]) if n_features else np.zeros((0, k))
    p["feature_target"] = np.concatenate(p["feature_target"]) if n_features else np.zeros(0, dtype=np.int64)
    return p


def _draw_votes(rates: np.ndarray, target: np.ndarray, accuracy: np.ndarray, confusion: np.ndarray,
                y: np.ndarray, conf: np.ndarray, k: int, rng: np.random.Generator,
                fires: np.ndarray | None = None) -> np.ndarray:
    """``[n, c]`` int8 votes of ``c`` LFs drawn independently given the ``[n]`` classes ``y``.

    ``rates`` is ``[c, k]``; ``target``, ``accuracy``, ``confusion`` are ``[c]`` (``target`` −1 for a
    multipolar LF). ``fires``, an optional ``[n, c]`` boolean, replaces the draw of which rows each LF votes on.
    """
    n, c = len(y), len(target)
    if fires is None:
        fires = rng.random((n, c)) < rates.T[y]
    votes = np.broadcast_to(target.astype(np.int8), (n, c)).copy()
    multi = target < 0
    if multi.any():
        nm = int(multi.sum())
        wrong = (y[:, None] + rng.integers(1, k, (n, nm))) % k
        if k > 2:
            wrong = np.where(rng.random((n, nm)) < confusion[multi], conf[y][:, None], wrong)
        right = rng.random((n, nm)) < accuracy[multi]
        votes[:, multi] = np.where(right, y[:, None], wrong)
    votes[~fires] = -1
    return votes


def _draw_exclusive(rates: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[n, c]`` booleans, at most one ``True`` per row: LF ``j`` on row ``i`` with probability ``rates[j, y_i]``."""
    cum = np.cumsum(rates.T[y], axis=1)                                           # [n, c]
    chosen = (cum < rng.random(len(y))[:, None]).sum(axis=1)                      # [n], c = none
    return chosen[:, None] == np.arange(rates.shape[0])[None, :]


def generate(spec: MatrixSpec) -> dict[str, Any]:
    """Draw the splits of one matrix (see the module docstring).

    Returns
    -------
    dict
        ``L_train``, ``L_dev``, ``L_test``: ``[n_split, m]`` int8 votes, −1 = abstain;
        ``y_train``, ``y_dev``, ``y_test``: ``[n_split]`` int64 true classes;
        ``prior``: ``[k]`` class prior; and per LF, ``[m]`` arrays:
        ``lf_target`` (the one class a unipolar LF votes, −1 for multipolar),
        ``lf_parent`` (the LF it copies, −1 if none), ``lf_copy`` (its copy probability; for a
        feature LF, its firing rate on its feature), ``lf_group`` (its group's index),
        ``lf_coverage`` and ``lf_accuracy`` (expected under the model); and ``lf_rates``, ``[m, k]``,
        ``P(LF votes | y)``.
    """
    param_seq, data_seq = np.random.SeedSequence(spec.seed).spawn(2)
    prng, rng = np.random.default_rng(param_seq), np.random.default_rng(data_seq)
    k, m = spec.k, spec.m
    prior = np.asarray(spec.class_balance, dtype=np.float64)
    conf = (np.arange(k) + prng.integers(1, k, k)) % k                            # [k] a wrong class for each class
    p = _lf_params(spec, prng, prior, conf)

    n = spec.n_train + spec.n_dev + spec.n_test
    y = rng.choice(k, size=n, p=prior)
    L = np.full((n, m), -1, dtype=np.int8)
    features = rng.random((n, len(p["feature_target"]))) < p["feature_rates"].T[y]  # [n, n_features]
    starts = np.cumsum([0] + [g.count for g in spec.groups])
    for gi, g in enumerate(spec.groups):
        sl = slice(starts[gi], starts[gi + 1])
        args = (p["rates"][sl], p["target"][sl], p["accuracy"][sl], p["confusion"][sl], y, conf, k, rng)
        if isinstance(g, Copies):
            own = _draw_votes(*args)
            copied = rng.random((n, g.count)) < p["copy"][sl]
            L[:, sl] = np.where(copied, L[:, p["parent"][sl]], own)
        elif isinstance(g, Feature):
            fires = features[:, p["feature"][sl]] & (rng.random((n, g.count)) < p["copy"][sl])
            L[:, sl] = _draw_votes(*args, fires=fires)
        elif isinstance(g, Unipolar) and g.exclusive:
            L[:, sl] = _draw_votes(*args, fires=_draw_exclusive(p["rates"][sl], y, rng))
        else:
            L[:, sl] = _draw_votes(*args)

    correct = np.where(p["target"][:, None] >= 0, np.arange(k)[None, :] == p["target"][:, None],
                       p["accuracy"][:, None])                                    # [m, k] P(right | fires, y)
    vote_mass = p["rates"] @ prior
    a, b = spec.n_train, spec.n_train + spec.n_dev
    return {
        "L_train": L[:a], "y_train": y[:a], "L_dev": L[a:b], "y_dev": y[a:b], "L_test": L[b:], "y_test": y[b:],
        "prior": prior, "lf_target": p["target"], "lf_parent": p["parent"], "lf_copy": p["copy"],
        "lf_group": p["group"], "lf_rates": p["rates"], "lf_coverage": vote_mass,
        "lf_accuracy": np.divide((p["rates"] * correct) @ prior, vote_mass, out=np.zeros(m), where=vote_mass > 0),
    }


def matrix_stats(L: np.ndarray, y: np.ndarray, k: int) -> dict[str, Any]:
    """Realised statistics of ``[n, m]`` votes ``L`` against ``[n]`` classes ``y``.

    ``coverage`` (rows with a vote), ``votes_per_covered_row``, ``single_vote_rows`` (share of all
    rows with exactly one vote), LF accuracy median/min/max over LFs that voted, ``lfs_below_chance``
    (accuracy below that of an LF voting the same classes at random rows), ``unipolar_lfs``
    and the largest and smallest class shares.
    """
    votes = L >= 0
    per_row = votes.sum(axis=1)
    n_votes = votes.sum(axis=0)
    voted = n_votes > 0
    acc = (L == y[:, None]).sum(axis=0)[voted] / n_votes[voted]
    share = np.bincount(y, minlength=k) / len(y)
    class_votes = np.stack([(L == c).sum(axis=0) for c in range(k)], axis=1)[voted]  # [m_voted, k]
    chance = (class_votes / class_votes.sum(axis=1, keepdims=True)) @ share
    return {
        "coverage": round(float(np.mean(per_row > 0)), 4),
        "votes_per_covered_row": round(float(per_row.sum() / max(1, (per_row > 0).sum())), 3),
        "single_vote_rows": round(float(np.mean(per_row == 1)), 4),
        "lf_accuracy_median": round(float(np.median(acc)), 3) if len(acc) else None,
        "lf_accuracy_min": round(float(acc.min()), 3) if len(acc) else None,
        "lf_accuracy_max": round(float(acc.max()), 3) if len(acc) else None,
        "lfs_below_chance": int(np.sum(acc < chance - 1e-9)),
        "unipolar_lfs": int(np.sum((class_votes > 0).sum(axis=1) == 1)),
        "class_max": round(float(share.max()), 4),
        "class_min": round(float(share.min()), 4),
    }


# --- the benchmark ----------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="registered label model names (default: all of label_model_names())")
    parser.add_argument("--default", default="labelflow", help="the model the summary compares with the baselines")
    parser.add_argument("--only", default=None, metavar="SUBSTRING", help="only matrices whose name contains it")
    parser.add_argument("--quick", action="store_true", help=f"only the small matrices {', '.join(QUICK)}")
    parser.add_argument("--no-dev", action="store_true", help="skip the fits with dev gold")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the JSON result there")
    parser.add_argument("--list", action="store_true", help="print the matrix specs and exit; fit nothing")
    parser.add_argument("--markdown", action="store_true", help="also print the per-regime summary as a Markdown "
                        "table (as in the README); Snorkel-skipped matrices are left out of its means")
    parser.add_argument("--stats", action="store_true", help="with --list: also generate each matrix and print "
                        "its realised statistics")
    parser.add_argument("--seed", type=int, default=123, help="the label models' seed")
    parser.add_argument("--snorkel-max-mk", type=int, default=DEFAULT_SNORKEL_MAX_MK,
                        help="skip snorkel (and auto with dev gold) where m·k exceeds this")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch's CPU threads for the models that use torch (Snorkel); one was several times "
                        "faster than two on a busy 2-core machine; 0 keeps torch's default")
    return parser


def select(cfg: argparse.Namespace) -> list[MatrixSpec]:
    """The specs that ``--quick`` and ``--only`` select, in :func:`matrix_specs` order."""
    specs = matrix_specs()
    if cfg.quick:
        specs = [s for s in specs if s.name in QUICK]
    if cfg.only:
        specs = [s for s in specs if cfg.only in s.name]
    if not specs:
        raise SystemExit(f"no matrix matches --only {cfg.only!r}{' within --quick' if cfg.quick else ''}")
    return specs


def _skip_reason(name: str, spec: MatrixSpec, with_dev: bool, max_mk: int) -> str | None:
    mk = spec.m * spec.k
    if name == "snorkel" and mk > max_mk:
        return f"m·k = {mk} > {max_mk}: Snorkel's (m·k)² matrix is too slow here"
    if name == "auto" and with_dev and mk > max_mk:
        return f"m·k = {mk} > {max_mk}: auto with dev gold fits Snorkel 3 times"
    return None


def run_model(name: str, spec: MatrixSpec, data: dict[str, Any], *, with_dev: bool, seed: int,
              max_mk: int) -> dict[str, Any]:
    """Fit one model on ``data["L_train"]`` (with the dev split's gold if ``with_dev``) and score it on test.

    Returns ``{"status": "ok", "accuracy", "macro_f1", "fit_seconds"}``, or ``{"status": "skipped" |
    "failed", "reason"}``.
    """
    from labelflow.analysis import classification_metrics
    from labelflow.labelmodels import get_label_model

    reason = _skip_reason(name, spec, with_dev, max_mk)
    if reason:
        return {"status": "skipped", "reason": reason}
    try:
        model = get_label_model(name, spec.k, seed=seed)
        start = time.perf_counter()
        model.fit(data["L_train"], **({"L_dev": data["L_dev"], "y_dev": data["y_dev"]} if with_dev else {}))
        fit_seconds = time.perf_counter() - start
        preds = model.predict(data["L_test"], tie_policy="random")
        scores = classification_metrics(data["y_test"], preds, class_names=[str(c) for c in range(spec.k)])
    except Exception as exc:  # noqa: BLE001 — one model's failure is a result, not the end of the run
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "ok", "accuracy": round(scores["accuracy"], 4), "macro_f1": round(scores["macro_f1"], 4),
            "fit_seconds": round(fit_seconds, 3)}


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    return f"{r['accuracy']:.3f}/{r['macro_f1']:.3f} {r['fit_seconds']:.2g}s"


def summarize(matrices: list[dict[str, Any]], default: str) -> dict[str, Any]:
    """Margins of ``default`` over the better of majority vote and Snorkel (unsupervised) and over Snorkel
    with dev gold, per matrix where both sides ran; see the module docstring."""

    def acc(row: dict[str, Any], model: str, mode: str) -> float | None:
        r = row["scores"].get(model, {}).get(mode)
        return r["accuracy"] if r and r["status"] == "ok" else None

    out: dict[str, Any] = {"default": default, "tolerance": TOLERANCE}
    unsup, dev, by_regime = [], [], {}
    for row in matrices:
        mine = acc(row, default, "unsupervised")
        base = [a for a in (acc(row, "majority_vote", "unsupervised"), acc(row, "snorkel", "unsupervised"))
                if a is not None]
        if mine is not None and base:
            unsup.append((round(mine - max(base), 4), row["name"]))
            reg = by_regime.setdefault(row["regime"], {"matrices": 0, "matched": 0, "margins": []})
            reg["matrices"] += 1
            reg["matched"] += mine >= max(base) - TOLERANCE
            reg["margins"].append(mine - max(base))
        mine_dev, snorkel_dev = acc(row, default, "dev"), acc(row, "snorkel", "dev")
        if mine_dev is not None and snorkel_dev is not None:
            dev.append((round(mine_dev - snorkel_dev, 4), row["name"]))
    if unsup:
        worst = min(unsup)
        out["unsupervised"] = {
            "compared": len(unsup), "matched": sum(mg >= -TOLERANCE for mg, _ in unsup),
            "mean_margin": round(float(np.mean([mg for mg, _ in unsup])), 4),
            "worst_margin": worst[0], "worst_matrix": worst[1],
            "baseline": "max(majority_vote, snorkel) where each ran"}
        out["by_regime"] = {r: {"matrices": v["matrices"], "matched": int(v["matched"]),
                                "mean_margin": round(float(np.mean(v["margins"])), 4)} for r, v in by_regime.items()}
    else:
        out["unsupervised"] = None
    if dev:
        worst = min(dev)
        out["dev"] = {"compared": len(dev), "at_least_snorkel": sum(mg >= 0 for mg, _ in dev),
                      "mean_margin": round(float(np.mean([mg for mg, _ in dev])), 4),
                      "worst_margin": worst[0], "worst_matrix": worst[1]}
    else:
        out["dev"] = None
    return out


def markdown_summary(matrices: list[dict[str, Any]], default: str) -> str:
    """A Markdown table with a row per regime (and one for all matrices): mean test accuracy of majority
    vote, Snorkel and ``default``, unsupervised and with dev gold, over the matrices where all three ran,
    and on how many matrices ``default`` is within ``TOLERANCE`` of the better baseline (unsupervised) or at
    least Snorkel-with-dev (dev gold); where Snorkel was skipped, the unsupervised count compares with majority
    vote alone."""

    def acc(row: dict[str, Any], model: str, mode: str) -> float | None:
        r = row["scores"].get(model, {}).get(mode)
        return r["accuracy"] if r and r["status"] == "ok" else None

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in matrices:
        groups.setdefault(row["regime"], []).append(row)
    groups["all"] = list(matrices)
    lines = [f"| regime | matrices | majority vote | Snorkel | {default} | {default} ≥ best − {TOLERANCE} "
             f"| Snorkel + dev | {default} + dev | {default} + dev ≥ Snorkel + dev |", "|---" * 9 + "|"]
    for regime, rows in groups.items():
        cells = []
        unsup = [(acc(r, "majority_vote", "unsupervised"), acc(r, "snorkel", "unsupervised"),
                  acc(r, default, "unsupervised")) for r in rows]
        matched = [u[2] >= max(b for b in u[:2] if b is not None) - TOLERANCE for u in unsup
                   if u[2] is not None and u[0] is not None]
        unsup = [u for u in unsup if None not in u]
        dev = [(acc(r, "snorkel", "dev"), acc(r, default, "dev")) for r in rows]
        dev = [d for d in dev if None not in d]
        mean = (lambda xs: f"{np.mean(xs):.3f}" if xs else "–")
        cells += [mean([u[0] for u in unsup]), mean([u[1] for u in unsup]), mean([u[2] for u in unsup]),
                  f"{sum(matched)}/{len(matched)}",
                  mean([d[0] for d in dev]), mean([d[1] for d in dev]),
                  f"{sum(d[1] >= d[0] for d in dev)}/{len(dev)}"]
        name = f"**{regime}**" if regime == "all" else regime
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(cfg: argparse.Namespace) -> dict[str, Any]:
    from labelflow.labelmodels import label_model_names

    specs = select(cfg)
    if cfg.list:
        for s in specs:
            print(f"{s.name:32s} {s.regime:12s} {s.describe()}" + (f"  [{s.note}]" if s.note else ""))
            if cfg.stats:
                data = generate(s)
                print(f"{'':45s} realised (train): {matrix_stats(data['L_train'], data['y_train'], s.k)}")
        print(f"{len(specs)} matrices")
        return {"matrices": [{"name": s.name, "regime": s.regime, "k": s.k, "m": s.m, "n_train": s.n_train}
                             for s in specs]}

    if cfg.torch_threads > 0:
        try:
            import torch
        except ImportError:
            pass
        else:
            torch.set_num_threads(cfg.torch_threads)
    models = list(cfg.models or label_model_names())
    unknown = [m for m in models if m not in label_model_names()]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; registered: {label_model_names()}")
    modes = ("unsupervised",) if cfg.no_dev else ("unsupervised", "dev")
    width = 27
    header = f"{'matrix':32s} {'regime':12s} {'k':>3s} {'m':>5s} {'n':>6s} {'cov':>5s} {'gold':5s}" + "".join(
        f" {name[:width]:>{width}s}" for name in models)
    print(f"cells: test accuracy/macro-F1 fit-seconds; {len(specs)} matrices, models {models}")
    print(header)
    print("-" * len(header), flush=True)
    matrices, notes = [], []
    total_start = time.perf_counter()
    for spec in specs:
        data = generate(spec)
        stats = matrix_stats(data["L_train"], data["y_train"], spec.k)
        scores: dict[str, dict[str, Any]] = {name: {} for name in models}
        for mode in modes:
            for name in models:
                r = run_model(name, spec, data, with_dev=mode == "dev", seed=cfg.seed, max_mk=cfg.snorkel_max_mk)
                scores[name][mode] = r
                if r["status"] != "ok":
                    notes.append(f"{spec.name} {name} {mode}: {r['status']} — {r['reason']}")
            print(f"{spec.name:32s} {spec.regime:12s} {spec.k:3d} {spec.m:5d} {spec.n_train:6d} "
                  f"{stats['coverage']:5.2f} {'no' if mode == 'unsupervised' else 'dev':5s}"
                  + "".join(f" {_cell(scores[name][mode]):>{width}s}" for name in models), flush=True)
        matrices.append({"name": spec.name, "regime": spec.regime, "k": spec.k, "m": spec.m, "n_train": spec.n_train,
                         "n_dev": spec.n_dev, "n_test": spec.n_test, "coverage": stats["coverage"], "stats": stats,
                         "scores": scores})
    seconds = time.perf_counter() - total_start
    summary = summarize(matrices, cfg.default)
    summary["seconds"] = round(seconds, 1)
    summary["snorkel_max_mk"] = cfg.snorkel_max_mk

    if notes:
        print("\nskipped / failed:")
        for line in notes:
            print(f"  {line}")
    print(f"\nsummary for {cfg.default!r} ({seconds:.0f} s in all):")
    u, d = summary["unsupervised"], summary["dev"]
    if u:
        print(f"  unsupervised: ≥ max(majority_vote, snorkel) − {TOLERANCE} on {u['matched']}/{u['compared']} matrices;"
              f" mean margin {u['mean_margin']:+.4f}; worst {u['worst_margin']:+.4f} ({u['worst_matrix']})")
        for regime, v in summary["by_regime"].items():
            print(f"    {regime:12s} {v['matched']}/{v['matrices']} matched, mean margin {v['mean_margin']:+.4f}")
    elif cfg.default not in models:
        print(f"  nothing to compare: --default {cfg.default!r} is not among --models {models}")
    else:
        print(f"  unsupervised: nothing to compare (neither majority_vote nor snorkel ran beside {cfg.default!r})")
    if d:
        print(f"  with dev gold: ≥ snorkel-with-dev on {d['at_least_snorkel']}/{d['compared']} matrices;"
              f" mean margin {d['mean_margin']:+.4f}; worst {d['worst_margin']:+.4f} ({d['worst_matrix']})")
    elif not cfg.no_dev and cfg.default in models:
        print(f"  with dev gold: nothing to compare ({cfg.default!r} or snorkel did not run with dev gold)")
    if cfg.markdown:
        print("\n" + markdown_summary(matrices, cfg.default) + "\n")
    result = {"matrices": matrices, "summary": summary}
    line = json.dumps(result)
    if cfg.out:
        with open(cfg.out, "w") as fh:
            fh.write(line + "\n")
    print(line)
    return result


if __name__ == "__main__":
    main(make_parser().parse_args())
