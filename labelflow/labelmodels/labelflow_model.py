"""labelflow's own label model: an accuracy-weighted vote whose accuracies, class prior and
uncovered-row distribution are estimated so that it generalizes to matrices it was never tuned on.

The model
---------
Each LF ``j`` has an accuracy ``a_j``: when it votes, it names the true class with
probability ``a_j`` and each wrong class with probability ``(1 - a_j) / (k - 1)``.
Given the votes of a row, ``P(y | votes) ∝ π_y · exp(Σ_j w_j [λ_j = y])`` with the
log-odds weight ``w_j = share_j · log(a_j (k-1) / (1 - a_j))`` (a one-coin
Dawid–Skene posterior) for an LF that votes several classes, and a firing-rate ratio for one
that votes a single class (below). ``share_j`` is ``1 / (number of LFs whose column is
identical to j's)``, so duplicating an LF does not double its say; for a multipolar LF it is
``1 / (1 + Σ_i φ_ij²)`` over the multipolar LFs ``i`` that fire significantly together with it
(a copy, or LFs reading one latent feature: under the model they would fire independently), so a
group of near-copies counts about once (:func:`_firing_share`).

**Accuracies without gold** are fit by EM on the rows where at least two LFs vote
(a row with one vote says nothing about that LF's accuracy), and only where the
votes can tell accuracies apart. Between LFs that vote several classes (multipolar)
they can, as in Dawid–Skene. Between *unipolar* LFs (each only ever votes one
class) they cannot: when a spam LF and a ham LF disagree, votes alone do not say
which is wrong, and EM then drifts to whichever side it favoured first (usually
the LFs of the larger class), which looks like skill on some matrices and is a
coin toss on others. So a unipolar LF is judged on its own only on rows where a
multipolar LF votes too; elsewhere its votes count towards one accuracy shared by
all unipolar LFs.

**A unipolar LF is then weighed as a detector** (:meth:`LabelflowModel._fit_unipolar_weights`):
by the log of how much more often it fires on its class than on the others, ``log(α_j / β_j)``,
estimated in one M-step from that one-coin posterior. Disagreements cannot tell unipolar LFs
apart, but how often each fires on the rows the others place in each class can: an LF that fires
on most rows of every class loses its say, one that fires on its class alone keeps it. One step,
not EM to convergence, since iterated these rates drift like the accuracies above.

Each ``a_j`` is shrunk, with ``prior_strength`` pseudo-votes, towards the *pooled*
accuracy of its kind (multipolar: an evidence-weighted mean of the LFs' logit
accuracies; unipolar: the shared accuracy), re-estimated each iteration —
empirical Bayes, not a fixed constant. An LF with little evidence keeps the
common weight; one whose disagreements are many and one-sided moves away from it.
An LF that only ever votes one class keeps an accuracy above ``1/k``: the one-coin
model cannot tell a unipolar LF's precision from chance, so it may lose its say but
never votes against its class. An LF that votes several classes may fall below
``1/k``, and then its vote counts against the class it names (an LF right 30 % of the
time on a binary task is informative once inverted).

**The class prior on covered rows** is given to ``fit`` (``class_balance``); with dev gold it is
the dev class balance (add-one smoothed), or, where the suite has multipolar LFs, the
maximum-likelihood balance of the dev gold and the multipolar LFs' train votes together (a few
hundred gold rows alone are a noisy estimate); otherwise it is estimated from the votes of
the *multipolar* LFs. The one-coin model assumes an LF fires at one rate whatever the class, so
the rows a multipolar LF votes on are a fair sample of the classes and ``π`` is their
maximum-likelihood class balance given the fitted accuracies. A unipolar LF fires on its own
class by construction, so counting its votes would read coverage as class size. That estimate
is used where a Wald test (observed information) rejects the uniform balance at
``SIGNIFICANCE``. Otherwise, where the suite has unipolar LFs, ``π`` is the mean posterior of the
train rows under their firing-rate weights (one EM step for the prior, from uniform): those
weights already discount a class whose LFs also fire on other classes. With neither, covered
rows get a uniform prior and ties are broken by the tie policy, like majority vote.
:attr:`LabelflowModel.prior_source` says which.

**Rows no LF votes on** get their own distribution ``u``, not the uniform one. Rows
are uncovered more often in classes whose LFs fire less, so ``u_y ∝ n_y · P(no vote | y)``
with ``P(no vote | y) = Π_j (1 - r_jy)``, where ``r_jy`` is unipolar LF ``j``'s firing rate on
class ``y`` (its vote mass on the model's posterior of covered rows divided by ``n_y``;
multipolar LFs fire alike on every class and drop out) and ``n_y`` the class's row count: ``π·n``
where a prior is known, else the covered posterior mass plus the class's share of the uncovered
rows, solved as a fixed point. On a suite whose LFs all vote the rare class (spam LFs and no ham
LFs), ``u`` puts the uncovered rows in the common class instead of splitting them at random.
Where no prior is known and a Pearson test on the covered rows does not tell ``u`` from uniform,
``u`` is uniform and uncovered rows are ties. With dev gold, ``u`` is the class distribution of
the uncovered dev rows, smoothed towards that estimate with ``k`` pseudo-rows.

**Dev gold** enters the accuracy counts with its real correctness: each dev vote
weighs ``n / n_dev`` pseudo-votes (``dev_weight="balanced"``: the dev split as a
whole counts as much as the unlabeled rows) or a fixed number, and the shrinkage is
at least ``3`` dev votes' worth, so one lucky dev vote cannot make an LF perfect.

**With dev gold the model also tries a class-conditional fit** and keeps whichever predicts
held-out gold better. The one-coin model gives an LF one accuracy; the class-conditional model
(Dawid–Skene with abstain as an outcome, the parameterisation of Snorkel's ``LabelModel``) gives
it ``θ_j[v, y] = P(votes v | y)``, so a rare-class LF that also fires on common rows, or an LF
whose silence says something, is weighed by what it does on each class. It is fit by
semi-supervised EM from the one-coin posterior, with a Dirichlet prior of ``strength`` pseudo-rows
per class centred on it (``conditional_strengths``, 50 and 1,000 by default), the dev rows counted
with their gold class and the one-coin fit's class prior. Without gold the class-conditional model
is not used: its extra parameters are not identified from votes alone, and on correlated LFs
its EM runs away. The choice is made by cross-validation on the dev gold (``DEV_FOLDS``
stratified folds, mean log-likelihood of the held-out gold, ties keep the one-coin model; at
least ``MIN_SELECTION_DEV_ROWS`` rows), recorded in :attr:`selection`; the winner is refit on
all the dev gold. The class-conditional arithmetic runs in NumPy.

Time is linear in the number of votes and memory is bounded: fitting and
prediction walk the rows in chunks of ``CHUNK_ROWS`` and never expand the matrix
to ``[n, m, k]``. ``device="cuda"`` runs the same arithmetic in torch on the GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import chi2

from labelflow.errors import LabelModelError, require
from labelflow.validation import check_choice, check_int, check_number
from labelflow.labelmodels.base import LabelModel, register_label_model, stratified_folds
from labelflow.conventions import Device, GoldArray, LabelArray, ProbArray

CHUNK_ROWS = 1 << 18
MIN_SHRINK_DEV_VOTES = 3.0
"""With dev gold, the shrinkage towards the pooled accuracy is worth at least this many dev votes."""
SIGNIFICANCE = 0.05
"""A class balance (or uncovered-row distribution) estimated without gold is used only where a test
rejects the uniform one at this level."""
MAX_PRIOR_ROWS = 100_000
"""The class balance without gold is estimated on at most this many rows (a seeded sample)."""
FIRING_CHI2 = 10.83
"""χ²(1) at 0.001: a pair of multipolar LFs counts as dependent only where ``n φ²`` exceeds it."""
MAX_FIRING_CELLS = 2_000_000_000
"""Rows × (multipolar LFs)² at most in the firing-correlation estimate (bounds its time)."""
DEV_FOLDS = 5
MIN_SELECTION_DEV_ROWS = 50
"""With fewer dev gold rows than this, the one-coin model is kept without cross-validation."""


@register_label_model
class LabelflowModel(LabelModel):
    """Accuracy-weighted vote with shrunk EM accuracies and an uncovered-row distribution
    (see the module docstring).

    Parameters
    ----------
    cardinality
        Number of classes ``k``.
    seed
        Unused by the fit (it is deterministic); kept for the common interface.
    n_iter, tol
        EM iterations at most, and the accuracy change below which EM stops.
    prior_accuracy
        Starting accuracy of every LF, and the pooled target when no LF has evidence.
    prior_strength
        Pseudo-votes that pull each LF's accuracy towards the pooled accuracy.
    dev_weight
        Pseudo-votes each dev gold vote counts for; ``"balanced"``: ``n / n_dev``.
    device
        ``"cpu"`` (NumPy), ``"cuda"`` or ``"auto"`` (torch on the GPU when present).
    conditional_strengths
        With dev gold, the prior strengths (pseudo-rows per class) of the class-conditional
        candidates tried against the one-coin model; ``()`` keeps the one-coin model.

    Examples
    --------
    >>> L = np.array([[0, 0, -1], [1, 1, 1], [1, -1, 0], [-1, -1, -1]])
    >>> model = LabelflowModel(2).fit(L)
    >>> model.predict(L, tie_policy="abstain")  # three covered rows cannot tell the classes' sizes apart
    array([ 0,  1,  1, -1])
    >>> model.uncovered  # so the last row, which no LF votes on, is a tie
    array([0.5, 0.5])
    """

    name = "labelflow"

    def __init__(self, cardinality: int, *, seed: int = 123, n_iter: int = 100, tol: float = 1e-5,
                 prior_accuracy: float = 0.7, prior_strength: float = 20.0,
                 dev_weight: float | Literal["balanced"] = "balanced", device: Device = "cpu",
                 conditional_strengths: Sequence[float] = (50.0, 1000.0)) -> None:
        super().__init__(cardinality, seed=seed)
        for strength in conditional_strengths:
            check_number("each of conditional_strengths", strength, above=0, error=LabelModelError)
        check_number("prior_accuracy", prior_accuracy, above=1 / cardinality, below=1, error=LabelModelError)
        if dev_weight != "balanced":
            check_number("dev_weight (or 'balanced')", dev_weight, minimum=0, error=LabelModelError)
        check_int("n_iter", n_iter, minimum=1, error=LabelModelError)
        check_number("tol", tol, above=0, error=LabelModelError)
        check_number("prior_strength", prior_strength, above=0, error=LabelModelError)
        check_choice("device", device, Device, error=LabelModelError)
        self.n_iter, self.tol, self.prior_accuracy, self.prior_strength = n_iter, tol, prior_accuracy, prior_strength
        self.dev_weight, self.device = dev_weight, device
        self.conditional_strengths = tuple(float(s) for s in conditional_strengths)
        self.accuracy: np.ndarray | None = None
        """``[m]`` fitted one-coin accuracy of each LF."""
        self.weight: np.ndarray | None = None
        """``[m]`` log-weight a vote of each LF adds to its class's score: ``share ·`` log-odds of the
        accuracy for a multipolar LF, ``share ·`` log firing-rate ratio for a unipolar one (see
        :meth:`_fit_unipolar_weights`)."""
        self.prior_source: str | None = None
        """Where :attr:`class_balance` came from: ``"given"``, ``"dev"``, ``"multipolar"``,
        ``"posterior"`` (see :meth:`_fit_unipolar_weights`) or ``None`` (uniform); saved with the model
        (``None`` too for a file saved before sources were recorded: check :attr:`class_balance`)."""
        self.share: np.ndarray | None = None
        """``[m]`` fraction of its weight each LF keeps: 1 / size of its group of identical columns, and for a
        multipolar LF the smaller of that and its firing-correlation share (:func:`_firing_share`)."""
        self.class_balance: np.ndarray | None = None
        """``[k]`` prior on covered rows (given to ``fit``, from dev gold, or from the multipolar LFs' votes
        where they tell it apart from uniform), or ``None`` (uniform)."""
        self.prior_p_value: float | None = None
        """Without gold: p-value of the test that ``class_balance`` differs from uniform (``None``: not tested)."""
        self.uncovered: np.ndarray | None = None
        """``[k]`` distribution given to rows no LF votes on."""
        self.conditional: np.ndarray | None = None
        """``[m, k, k]`` ``P(LF j votes v | y)`` where dev gold chose the class-conditional model, else ``None``."""
        self.selection: dict[str, float] | None = None
        """With dev gold: each candidate's cross-validated mean log-likelihood of the gold (see :meth:`_fit`)."""
        self.n_iter_run = 0

    # --- fitting ------------------------------------------------------------------------------------

    def _fit(self, L: LabelArray, *, L_dev: LabelArray | None, y_dev: GoldArray | None,
             class_balance: np.ndarray | None, progress: bool) -> None:
        self._fit_one_coin(L, L_dev, y_dev, class_balance)
        self.conditional, self.selection = None, None
        if y_dev is None or len(y_dev) < MIN_SELECTION_DEV_ROWS or not self.conditional_strengths:
            return
        self.selection = self._cross_validate(L, L_dev, y_dev, class_balance)
        best = max(self.selection, key=self.selection.get)
        if best != "one_coin":  # ties keep the one-coin model
            self._fit_conditional(L, L_dev, y_dev, float(best.split("_")[-1]))

    def _cross_validate(self, L: LabelArray, L_dev: LabelArray, y_dev: GoldArray,
                        class_balance: np.ndarray | None) -> dict[str, float]:
        """Mean held-out log-likelihood of the dev gold under each candidate, ``{"one_coin": …,
        "conditional_50": …, …}``: dev gold is split into ``DEV_FOLDS`` stratified folds; each fold is
        predicted by candidates fit on the train rows and the other folds' gold."""
        folds = stratified_folds(y_dev, DEV_FOLDS, seed=self.seed)
        names = ["one_coin"] + [f"conditional_{s:g}" for s in self.conditional_strengths]
        total = dict.fromkeys(names, 0.0)
        trial = LabelflowModel(self.cardinality, seed=self.seed, **self._state()[0])
        for fold in range(DEV_FOLDS):
            fit_rows, held = folds != fold, folds == fold
            if not held.any():
                continue
            trial._fit_one_coin(L, L_dev[fit_rows], y_dev[fit_rows], class_balance)
            trial.conditional, one_coin_uncovered = None, trial.uncovered
            total["one_coin"] += _log_likelihood(trial._predict_proba(L_dev[held]), y_dev[held])
            for name, strength in zip(names[1:], self.conditional_strengths):
                trial._fit_conditional(L, L_dev[fit_rows], y_dev[fit_rows], strength)
                total[name] += _log_likelihood(trial._predict_proba(L_dev[held]), y_dev[held])
                trial.conditional, trial.uncovered = None, one_coin_uncovered
        return {name: value / len(y_dev) for name, value in total.items()}

    def _fit_one_coin(self, L: LabelArray, L_dev: LabelArray | None, y_dev: GoldArray | None,
                      class_balance: np.ndarray | None) -> None:
        """Fit the one-coin accuracies, the class prior and the uncovered-row distribution."""
        xp, to = _backend(self.device)
        k, (n, m) = self.cardinality, L.shape
        classes_voted = _classes_voted(L, k)
        multi_np = classes_voted > 1
        self.share = _duplicate_share(L)
        # an LF that fires on every row has no firing to correlate: its identical copies still share
        self.share[multi_np] = np.minimum(self.share[multi_np], _firing_share(L, multi_np, seed=self.seed))
        has_dev = L_dev is not None and y_dev is not None and len(y_dev) > 0
        strength = self.prior_strength
        dev_num = dev_den = None
        if has_dev:
            weight = n / len(y_dev) if self.dev_weight == "balanced" else float(self.dev_weight)
            strength = max(strength, MIN_SHRINK_DEV_VOTES * weight)
            dr, dc, dv = _votes(L_dev)
            dev_num = to(np.bincount(dc, weights=(dv == y_dev[dr]) * weight, minlength=m))
            dev_den = to(np.bincount(dc, minlength=m) * weight)
        acc = to(np.full(m, self.prior_accuracy))
        share = to(self.share)
        floor = 1 / k + 1e-3
        lowest = to(np.where(multi_np, 1e-3, floor))  # multipolar LFs may fall below chance
        multi = to(multi_np)
        for it in range(self.n_iter):
            weight_of_lf = _log_odds(acc, k, xp) * share
            num = den = group_num = group_den = 0.0
            for block in _chunks(L):  # bounded memory: votes of one chunk at a time
                rows, cols, votes = (to(a) for a in _votes(block))
                agree = _posterior_agreement(rows, votes, weight_of_lf[cols], block.shape[0], k, xp)
                others = xp.bincount(rows, minlength=block.shape[0])[rows] > 1  # another LF voted on the row
                on_multi = multi[cols]
                other_multi = xp.bincount(rows, weights=on_multi * 1.0, minlength=block.shape[0])[rows] - on_multi * 1.0
                # a unipolar LF is judged on its own only beside a multipolar vote; otherwise with its group
                judged = others & (on_multi | (other_multi > 0))
                group = others & ~on_multi
                num = num + xp.bincount(cols[judged], weights=agree[judged], minlength=m)
                den = den + xp.bincount(cols[judged], minlength=m) * 1.0
                group_num, group_den = group_num + float(agree[group].sum()), group_den + float(group.sum())
            if dev_num is not None:
                num, den = num + dev_num, den + dev_den
                group_num += float((dev_num * ~multi).sum())
                group_den += float((dev_den * ~multi).sum())
            target = _pooled_accuracy(num, den, strength, self.prior_accuracy, floor, xp)
            unipolar_target = min(max((group_num + strength * target) / (group_den + strength), floor), 1 - 1e-3)
            target = xp.where(multi, target, unipolar_target)
            new = xp.clip(xp.maximum((num + strength * target) / (den + strength), lowest), None, 1 - 1e-3)
            moved = float(xp.abs(new - acc).max())
            acc = new
            self.n_iter_run = it + 1
            if moved < self.tol:
                break
        self.accuracy = _numpy(acc)
        self.weight = _log_odds(self.accuracy, k, np) * self.share
        covered_mass, fired_mass, n_uncovered = self._class_masses(L)
        fired_mass[multi_np] = 0.0  # a multipolar LF fires at one rate whatever the class: no say on u
        self.prior_p_value = None
        if class_balance is not None:
            self.class_balance, self.prior_source = class_balance, "given"
        elif has_dev and multi_np.any():
            self.class_balance = self._multipolar_class_balance(L, multi_np, np.bincount(y_dev, minlength=k))[0]
            self.prior_source = "dev"
        elif has_dev:
            self.class_balance, self.prior_source = (np.bincount(y_dev, minlength=k) + 1.0) / (len(y_dev) + k), "dev"
        elif multi_np.any():
            prior, self.prior_p_value = self._multipolar_class_balance(L, multi_np)
            self.class_balance = prior if self.prior_p_value <= SIGNIFICANCE else None
            self.prior_source = None if self.class_balance is None else "multipolar"
        else:
            self.class_balance, self.prior_source = None, None
        if self.class_balance is not None:
            implied = _uncovered_given_prior(self.class_balance * n, fired_mass)
        else:
            implied = _uncovered_fixed_point(covered_mass, fired_mass, n_uncovered)
            if _chi2_p_value(implied, n - n_uncovered) > SIGNIFICANCE:
                implied = np.full(k, 1 / k)  # not told apart from uniform: uncovered rows are ties
        if has_dev and class_balance is None:
            uncovered_dev = y_dev[(L_dev < 0).all(axis=1)]
            counts = np.bincount(uncovered_dev, minlength=k) + k * implied
            self.uncovered = counts / counts.sum()
        else:
            self.uncovered = implied
        self._fit_unipolar_weights(L, classes_voted == 1)

    def _fit_unipolar_weights(self, L: LabelArray, unipolar: np.ndarray) -> None:
        """Weigh each unipolar LF by how much more often it fires on its class than on the others, and,
        where no class balance is known, take it from the reweighed posterior.

        A unipolar LF ``j`` voting class ``c`` is a detector: it fires with probability ``α_j`` on rows
        of ``c`` and ``β_j`` on the others, and a vote multiplies the odds of ``c`` by ``α_j / β_j``.
        One accuracy shared by the unipolar LFs (the one-coin fit) weighs a detector that fires on
        every third row of every class like a precise one. So ``α_j`` and ``β_j`` are estimated in one
        M-step from the one-coin posterior ``P`` of the train rows — ``α_j = Σ_i P_ic F_ij / Σ_i P_ic``
        and ``β_j`` the same with ``1 - P_ic``, each smoothed by one pseudo-row at the LF's firing rate
        — and the vote's weight becomes ``share_j · max(log(α_j / β_j), 0)``: a detector that fires no
        more on its class than elsewhere loses its say but never votes against its class. One step, not
        EM to convergence: iterated, the class-conditional rates of unipolar LFs drift to whichever
        class the first steps favoured (their votes never disagree in a way that pins them down).

        Where no class balance is known (none given, no dev gold, none the multipolar LFs tell apart
        from uniform) it is the mean posterior of the train rows under the new weights and a uniform
        prior (uncovered rows counted with :attr:`uncovered`), add-one smoothed — the EM update of the
        prior, one step from uniform. The firing-rate ratios already discount a class whose LFs fire
        on other classes too, so this counts rows, not raw votes.
        """
        if not unipolar.any():
            return
        k, n = self.cardinality, L.shape[0]
        target = np.zeros(L.shape[1], dtype=np.int64)  # [m] the class each unipolar LF votes
        class_mass, on_target, fired = np.zeros(k), np.zeros(L.shape[1]), np.zeros(L.shape[1])
        for block in _chunks(L):
            rows, cols, votes = _votes(block)
            target[cols] = votes
            probs = self._covered_and_uncovered(block)
            class_mass += probs.sum(axis=0)
            on_target += np.bincount(cols, weights=probs[rows, votes], minlength=L.shape[1])
            fired += np.bincount(cols, minlength=L.shape[1])
        rate = fired / n
        alpha = (on_target + rate) / (class_mass[target] + 1.0)
        beta = (fired - on_target + rate) / (n - class_mass[target] + 1.0)
        ratio = np.log(np.maximum(alpha, 1e-12) / np.maximum(beta, 1e-12))
        self.weight = np.where(unipolar, np.maximum(ratio, 0.0) * self.share, self.weight)
        if self.class_balance is None:
            total = sum(self._covered_and_uncovered(block).sum(axis=0) for block in _chunks(L))
            self.class_balance, self.prior_source = (total + 1.0) / (n + k), "posterior"

    def _multipolar_class_balance(self, L: LabelArray, multi: np.ndarray,
                                  gold_counts: np.ndarray | None = None) -> tuple[np.ndarray | None, float]:
        """The class balance ``[k]`` the multipolar LFs' votes imply, and the p-value of the Wald test
        that it differs from uniform.

        A multipolar LF fires at one rate whatever the class (the model's assumption), so the rows it
        votes on are a fair sample of the classes: ``π`` is the maximum-likelihood class balance of the
        rows with a multipolar vote, given their multipolar votes and the fitted accuracies (EM on
        ``π`` alone, on at most ``MAX_PRIOR_ROWS`` of those rows, seeded). Unipolar LFs are left out:
        how often they fire depends on the class by construction. ``π`` is used only where a Wald
        test with the observed information rejects the uniform balance at ``SIGNIFICANCE`` (the caller
        decides). ``gold_counts`` (``[k]``, dev gold per class) join the EM as rows of known class.
        """
        k = self.cardinality
        weight_of_lf = self.weight * multi
        parts = []
        for block in _chunks(L):
            rows, cols, votes = _votes(block)
            keep = np.flatnonzero(np.bincount(rows, weights=multi[cols] * 1.0, minlength=block.shape[0]) > 0)
            scores = np.bincount(rows * k + votes, weights=weight_of_lf[cols],
                                 minlength=block.shape[0] * k).reshape(block.shape[0], k)
            parts.append(scores[keep])
        scores = np.concatenate(parts)
        if len(scores) > MAX_PRIOR_ROWS:
            scores = scores[np.random.default_rng(self.seed).choice(len(scores), MAX_PRIOR_ROWS, replace=False)]
        likelihood = np.exp(scores - scores.max(axis=1, keepdims=True))  # [rows, k] ∝ P(votes | y)
        prior = np.full(k, 1 / k)
        extra = np.zeros(k) if gold_counts is None else gold_counts
        for _ in range(1000):
            post = likelihood * prior
            post /= post.sum(axis=1, keepdims=True)
            new = (post.sum(axis=0) + extra + 1.0) / (len(post) + extra.sum() + k)  # add-one: no class is ruled out
            moved = np.abs(new - prior).max()
            prior = new
            if moved < 1e-8:
                break
        ratio = likelihood / (likelihood @ prior)[:, None]  # [rows, k] ∂ log-likelihood / ∂π
        gradient = ratio[:, :-1] - ratio[:, -1:]  # free parameters π_1 … π_{k-1}
        gap = (prior - 1 / k)[:-1]
        p_value = float(chi2.sf(float(gap @ (gradient.T @ gradient) @ gap), k - 1))
        return prior, p_value

    def _fit_conditional(self, L: LabelArray, L_dev: LabelArray, y_dev: GoldArray, strength: float) -> None:
        """Fit :attr:`conditional`, the class-conditional vote distributions, starting from the one-coin fit.

        ``θ_j[v, y] = P(LF j votes v | y)`` (abstain is ``1 - Σ_v θ_j[v, y]``) by semi-supervised EM:
        the train rows weighted by their posterior, the dev rows by their gold class, and ``strength``
        pseudo-rows per class drawn from the one-coin model's own posterior (a Dirichlet prior centred
        on it). The class prior stays the one-coin fit's (from the dev gold).
        """
        k, m = self.cardinality, L.shape[1]
        dev_counts, dev_rows = _conditional_counts(L_dev, np.eye(k)[y_dev], k)
        centre, centre_rows = np.zeros((m, k, k)), np.zeros(k)
        for block in _chunks(L):
            counts, rows = _conditional_counts(block, self._predict_proba(block), k)
            centre, centre_rows = centre + counts, centre_rows + rows
        centre = (centre + 1e-2) / (centre_rows + 2e-2 * k)
        self.conditional = centre
        for _ in range(self.n_iter):
            counts, rows = dev_counts.copy(), dev_rows.copy()
            for block in _chunks(L):
                block_counts, block_rows = _conditional_counts(block, self._conditional_probs(block), k)
                counts, rows = counts + block_counts, rows + block_rows
            new = (counts + strength * centre) / (rows + strength)
            moved = float(np.abs(new - self.conditional).max())
            self.conditional = new
            if moved < self.tol:
                break
        self.uncovered = self._conditional_probs(np.full((1, m), -1, dtype=np.int8))[0]

    def _conditional_probs(self, block: np.ndarray) -> np.ndarray:
        """``[rows, k]`` posterior of one chunk under :attr:`conditional` and the class prior."""
        k = self.cardinality
        fires = np.clip(self.conditional.sum(axis=1), 0.0, 1 - 1e-9)  # [m, y]
        silent = np.log1p(-fires) * self.share[:, None]
        weight = (np.log(self.conditional) * self.share[:, None, None]) - silent[:, None, :]  # [m, v, y]
        rows, cols, votes = _votes(block)
        scores = np.empty((block.shape[0], k))
        for y in range(k):
            scores[:, y] = np.bincount(rows, weights=weight[cols, votes, y], minlength=block.shape[0])
        scores += silent.sum(axis=0) + np.log(self.class_balance)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    def _class_masses(self, L: LabelArray) -> tuple[np.ndarray, np.ndarray, int]:
        """Posterior class mass of the covered rows (``[k]``), of each LF's votes (``[m, k]``),
        and the number of uncovered rows, under the fitted accuracies and a uniform prior."""
        k, m = self.cardinality, L.shape[1]
        covered_mass, fired_mass, n_uncovered = np.zeros(k), np.zeros((m, k)), 0
        for block in _chunks(L):
            rows, cols, _ = _votes(block)
            probs = self._scores_to_probs(block, None)
            covered = np.bincount(rows, minlength=block.shape[0]) > 0
            covered_mass += probs[covered].sum(0)
            n_uncovered += int((~covered).sum())
            for y in range(k):
                fired_mass[:, y] += np.bincount(cols, weights=probs[rows, y], minlength=m)
        return covered_mass, fired_mass, n_uncovered

    # --- prediction ---------------------------------------------------------------------------------

    def _predict_proba(self, L: LabelArray) -> ProbArray:
        out = np.empty((L.shape[0], self.cardinality))
        start = 0
        for block in _chunks(L):
            probs = self._conditional_probs(block) if self.conditional is not None else self._covered_and_uncovered(block)
            out[start:start + len(block)] = probs
            start += len(block)
        return out

    def _covered_and_uncovered(self, block: np.ndarray) -> np.ndarray:
        """``[rows, k]`` one-coin posterior of one chunk: weighted votes and the class prior on covered
        rows, :attr:`uncovered` on the others."""
        probs = self._scores_to_probs(block, self.class_balance)
        probs[(block < 0).all(axis=1)] = self.uncovered
        return probs

    def _scores_to_probs(self, block: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
        """``[rows, k]`` softmax of the weighted votes of one chunk (plus ``log prior`` when given)."""
        xp, to = _backend(self.device)
        k = self.cardinality
        weight_of_lf = to(self.weight)
        rows, cols, votes = (to(a) for a in _votes(block))
        scores = xp.bincount(rows * k + votes, weights=weight_of_lf[cols],
                             minlength=block.shape[0] * k).reshape(block.shape[0], k)
        if prior is not None:
            scores = scores + to(np.log(prior))
        scores = scores - xp.amax(scores, 1)[:, None]
        probs = xp.exp(scores)
        return _numpy(probs / probs.sum(1)[:, None]).astype(np.float64)

    # --- persistence --------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"n_iter": self.n_iter, "tol": self.tol, "prior_accuracy": self.prior_accuracy,
                  "prior_strength": self.prior_strength, "dev_weight": self.dev_weight, "device": self.device,
                  "conditional_strengths": list(self.conditional_strengths)}
        arrays = {"accuracy": self.accuracy, "share": self.share, "uncovered": self.uncovered, "weight": self.weight}
        if self.class_balance is not None:
            arrays["class_balance"] = self.class_balance
            arrays["prior_source"] = np.array(self.prior_source)
        if self.conditional is not None:
            arrays["conditional"] = self.conditional
        return config, arrays

    @classmethod
    def _from_state(cls, cardinality: int, seed: int, config: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> "LabelflowModel":
        model = cls(cardinality, seed=seed, **config)
        model.accuracy, model.share, model.uncovered = arrays["accuracy"], arrays["share"], arrays["uncovered"]
        # files written before unipolar LFs had weights of their own predicted with the one-coin weights
        model.weight = arrays.get("weight", _log_odds(model.accuracy, cardinality, np) * model.share)
        model.class_balance, model.conditional = arrays.get("class_balance"), arrays.get("conditional")
        source = arrays.get("prior_source")
        model.prior_source = None if source is None else str(source)
        return model


def _chunks(L: np.ndarray):
    for start in range(0, L.shape[0], CHUNK_ROWS):
        yield L[start:start + CHUNK_ROWS]


def _votes(L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, LF and class of every vote (``[nnz]`` int64 each)."""
    rows, cols = np.nonzero(L >= 0)
    return rows.astype(np.int64), cols.astype(np.int64), L[rows, cols].astype(np.int64)


def _classes_voted(L: np.ndarray, k: int) -> np.ndarray:
    """``[m]`` number of distinct classes each LF votes (0 for an LF that never votes)."""
    counts = np.zeros(L.shape[1] * k, dtype=np.int64)
    for block in _chunks(L):
        _, cols, votes = _votes(block)
        counts += np.bincount(cols * k + votes, minlength=L.shape[1] * k)
    return (counts.reshape(-1, k) > 0).sum(axis=1)


def _log_odds(acc: Any, k: int, xp: Any) -> Any:
    return xp.log(acc * (k - 1) / (1 - acc))


def _pooled_accuracy(num: Any, den: Any, strength: float, default: float, floor: float, xp: Any) -> float:
    """The suite's accuracy: mean of the LFs' logit accuracies, each weighted by ``den / (den + strength)``."""
    evidence = den / (den + strength)
    total = float(evidence.sum())
    if total <= 0:
        return default
    raw = xp.clip((num + 0.5) / (den + 1.0), floor, 1 - 1e-3)
    mean_logit = float((evidence * xp.log(raw / (1 - raw))).sum()) / total
    return 1 / (1 + np.exp(-mean_logit))


def _posterior_agreement(rows: Any, votes: Any, weight: Any, n: int, k: int, xp: Any) -> Any:
    """``[nnz]``: for each vote, the posterior probability of its class on its row (the E-step)."""
    scores = xp.bincount(rows * k + votes, weights=weight, minlength=n * k).reshape(n, k)
    top = xp.amax(scores, 1)
    total = xp.exp(scores - top[:, None]).sum(1)  # Σ_c exp(s_c - top)
    return xp.exp(scores[rows, votes] - top[rows]) / total[rows]


def _conditional_counts(L: np.ndarray, probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Vote counts ``[m, v, y]`` weighted by each row's class probabilities ``probs`` (``[n, k]``),
    and the class mass ``[k]`` of the rows."""
    m = L.shape[1]
    rows, cols, votes = _votes(L)
    counts = np.empty((m * k, k))
    for y in range(k):
        counts[:, y] = np.bincount(cols * k + votes, weights=probs[rows, y], minlength=m * k)
    return counts.reshape(m, k, k), probs.sum(axis=0)


def _log_likelihood(probs: np.ndarray, gold: np.ndarray) -> float:
    """Sum of ``log P(gold)`` over rows, each probability floored at ``1e-6``."""
    return float(np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-6, 1.0)).sum())


def _chi2_p_value(distribution: np.ndarray, rows: int) -> float:
    """p-value of Pearson's test that ``rows`` rows drawn from ``distribution`` ``[k]`` came from the uniform one."""
    k = len(distribution)
    return float(chi2.sf(rows * k * float(((distribution - 1 / k) ** 2).sum()), k - 1))


def _no_vote_probability(class_rows: np.ndarray, fired_mass: np.ndarray) -> np.ndarray:
    """``[k]`` P(no LF votes | y) = Π_j (1 - r_jy), ``r_jy = fired_mass[j, y] / class_rows[y]``."""
    rate = np.clip(fired_mass / np.maximum(class_rows, 1e-12)[None, :], 0.0, 1 - 1e-9)
    return np.exp(np.log1p(-rate).sum(axis=0))


def _uncovered_given_prior(class_rows: np.ndarray, fired_mass: np.ndarray) -> np.ndarray:
    """``[k]`` P(y | no vote) ∝ n_y · P(no vote | y) for known class sizes ``class_rows``."""
    mass = class_rows * _no_vote_probability(class_rows, fired_mass)
    return mass / mass.sum() if mass.sum() > 0 else np.full(len(class_rows), 1 / len(class_rows))


def _uncovered_fixed_point(covered_mass: np.ndarray, fired_mass: np.ndarray, n_uncovered: int,
                           n_iter: int = 500) -> np.ndarray:
    """``[k]`` P(y | no vote) when the class sizes are unknown too.

    Solves ``n_y = C_y + U · u_y`` with ``u = P(y | no vote)`` from :func:`_uncovered_given_prior`,
    where ``C_y`` is the covered posterior mass and ``U`` the number of uncovered rows.
    """
    k = len(covered_mass)
    if n_uncovered == 0:
        return (covered_mass + 1) / (covered_mass.sum() + k)
    u = (covered_mass + 1) / (covered_mass.sum() + k)
    for _ in range(n_iter):
        new = _uncovered_given_prior(covered_mass + n_uncovered * u, fired_mass)
        if np.abs(new - u).max() < 1e-9:
            u = new
            break
        u = new
    smoothed = n_uncovered * u + 1.0  # add-one, so no class is ruled out
    return smoothed / smoothed.sum()


def _duplicate_share(L: np.ndarray) -> np.ndarray:
    """``[m]``: 1 / (number of LFs whose column is identical to this one); LFs that never vote keep 1."""
    m = L.shape[1]
    votes = (L >= 0).sum(axis=0)
    keys = [hashlib.blake2b(np.ascontiguousarray(L[:, j]).tobytes(), digest_size=16).digest() for j in range(m)]
    counts: dict[bytes, int] = {}
    for j, key in enumerate(keys):
        if votes[j]:
            counts[key] = counts.get(key, 0) + 1
    return np.array([1.0 / counts[key] if votes[j] else 1.0 for j, key in enumerate(keys)])


def _firing_share(L: np.ndarray, multi: np.ndarray, *, seed: int) -> np.ndarray:
    """``[number of multipolar LFs]``: ``1 / (1 + Σ_i φ_ij²)`` over the other multipolar LFs ``i``
    whose firing is significantly positively correlated with ``j``'s.

    The one-coin model assumes a multipolar LF fires at one rate whatever the class, so two of them
    fire independently; ``φ_ij``, the correlation of their fire/abstain indicators, is then about 0.
    A copy of an LF, or two LFs reading one latent feature, fire together (``φ`` near 1), and their
    agreement would otherwise pass for accuracy and outvote the independent LFs. Each dependent
    neighbour counts ``φ²`` of a duplicate (an identical column counts 1, as in
    :func:`_duplicate_share`); a pair counts only where ``n φ² > FIRING_CHI2`` (a χ² test of
    independence at 0.001), so chance correlations among many LFs do not add up. Estimated on at most
    ``MAX_PRIOR_ROWS`` rows (a seeded sample), fewer where there are many multipolar LFs
    (``MAX_FIRING_CELLS``), in chunks.
    """
    idx = np.flatnonzero(multi)
    n, m_multi = L.shape[0], len(idx)
    if m_multi < 2:
        return np.ones(m_multi)
    sample = min(n, MAX_PRIOR_ROWS, max(2000, MAX_FIRING_CELLS // (m_multi * m_multi)))
    rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False)) if sample < n else np.arange(n)
    total, cross = np.zeros(m_multi), np.zeros((m_multi, m_multi))
    for start in range(0, len(rows), 1 << 14):
        fires = (L[rows[start:start + (1 << 14)]][:, idx] >= 0).astype(np.float64)
        total += fires.sum(axis=0)
        cross += fires.T @ fires
    mean = total / len(rows)
    spread = np.sqrt(mean * (1 - mean))  # an LF that always or never fires has no firing to correlate
    varies = spread > 0
    phi = np.zeros((m_multi, m_multi))
    phi[np.ix_(varies, varies)] = ((cross / len(rows) - np.outer(mean, mean))[np.ix_(varies, varies)]
                                   / np.outer(spread[varies], spread[varies]))
    np.fill_diagonal(phi, 0.0)
    dependent = (phi > 0) & (len(rows) * phi ** 2 > FIRING_CHI2)
    return 1.0 / (1.0 + np.where(dependent, np.minimum(phi, 1.0) ** 2, 0.0).sum(axis=1))


def _backend(device: str) -> tuple[Any, Any]:
    """(array module, converter from NumPy) for ``device``."""
    if device == "cpu":
        return np, np.asarray
    torch = require("torch", "snorkel")
    if device == "auto" and not torch.cuda.is_available():
        return np, np.asarray
    if not torch.cuda.is_available():
        raise LabelModelError("device='cuda' was asked for but torch sees no CUDA GPU")
    return torch, lambda a: torch.as_tensor(a, device="cuda")


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
