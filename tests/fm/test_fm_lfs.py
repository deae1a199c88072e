"""FM LFs (kNN, zero-shot, prompt) through apply_lfs on small real frames, checked against hand
computations with numpy over the very embeddings the LFs used (read back from the FM cache)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labelflow import ABSTAIN, LFError, VoteCache, apply_lfs, keyword_lf
from labelflow.fm import FMCache, knn_lf, prompt_lf, zero_shot_lf
from labelflow.fm.lfs import _fit_threshold
from labelflow.fm.ops import embed_texts

DESCRIPTIONS = [
    "a fan's comment about the song, the singer or the music video",
    "an advertisement asking you to visit a website, check out a channel or subscribe",
]


def cached_embeddings(texts, provider, cache):
    """The embeddings the LFs computed, read back from the FM cache (so no model call is made)."""
    emb, stats = embed_texts(texts, provider=provider, cache=cache)
    assert stats.calls == 0 and stats.cached == len(texts)
    return emb.astype(np.float64)


# --- kNN -----------------------------------------------------------------------------------------------


def test_knn_votes_the_nearest_other_dev_row(yt40, minilm, tmp_path):
    # dev row 0 is a ham comment given a (wrong) SPAM gold label: were it its own neighbour
    # (similarity 1), it would vote SPAM; its nearest *other* dev row says HAM
    frame = yt40.with_columns(label=pl.when(pl.col("id") == yt40["id"][0]).then(1).otherwise(pl.col("label")))
    assert yt40["label"][0] == 0 and frame["label"][0] == 1
    cache = FMCache(tmp_path / "fm.sqlite")
    lf = knn_lf("knn", neighbors=1, min_similarity=0.0)
    votes = VoteCache(tmp_path / "votes")
    L = apply_lfs(frame, [lf], cardinality=2, cache=votes, fm_cache=cache).values[:, 0]
    assert votes.runs["knn"]["computed"] == 40 and votes.fitted == {"knn": {"threshold": 0.0}}

    emb = cached_embeddings(frame["text"].to_list(), minilm, cache)
    dev = np.flatnonzero(frame["split"].to_numpy() == "dev")
    gold = frame["label"].to_numpy()
    sims = emb @ emb[dev].T  # [40, 20]
    sims[dev, np.arange(len(dev))] = -np.inf  # a dev row is not its own neighbour
    nearest = dev[sims.argmax(axis=1)]
    expected = np.where(sims.max(axis=1) >= 0.0, gold[nearest], ABSTAIN)
    np.testing.assert_array_equal(L, expected)
    assert (expected[dev] != ABSTAIN).all()
    assert L[0] == 0  # not its own gold label


def test_knn_with_min_similarity_threshold_abstains_below_it(yt40, minilm, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    lf = knn_lf("knn", neighbors=3, min_similarity=0.5)
    L = apply_lfs(yt40, [lf], cardinality=2, fm_cache=cache).values[:, 0]
    emb = cached_embeddings(yt40["text"].to_list(), minilm, cache)
    dev = np.flatnonzero(yt40["split"].to_numpy() == "dev")
    gold = yt40["label"].to_numpy()
    sims = emb @ emb[dev].T
    sims[dev, np.arange(len(dev))] = -np.inf
    expected = []
    for row in sims:
        top = np.argsort(-row)[:3]
        weights = [row[top][gold[dev][top] == c].sum() for c in (0, 1)]
        winner = int(np.argmax(weights))
        mean = row[top][gold[dev][top] == winner].mean()
        expected.append(winner if mean >= 0.5 else ABSTAIN)
    np.testing.assert_array_equal(L, expected)
    assert ABSTAIN in expected and set(expected) - {ABSTAIN}  # the cut-off bites, and some rows vote


def dev_frame(rows):
    return pl.DataFrame({"id": [f"r{i}" for i in range(len(rows))], "text": [t for t, _, _ in rows],
                         "label": [g for _, g, _ in rows], "split": [s for _, _, s in rows]})


def test_knn_leave_one_out_when_neighbors_cover_every_dev_row(minilm, tmp_path):
    frame = dev_frame([("subscribe to my channel", 1, "dev"), ("Check out my channel", 1, "dev"),
                       ("I love this song", 0, "dev")])
    cache = FMCache(tmp_path / "fm.sqlite")
    L = apply_lfs(frame, [knn_lf("knn", neighbors=3, min_similarity=0.0)], cardinality=2, fm_cache=cache).values[:, 0]
    emb = cached_embeddings(frame["text"].to_list(), minilm, cache)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] > 0  # row 0's two other dev rows: a SPAM one, nearer, and a HAM one
    # similarity-weighted vote over the two *other* rows: SPAM weighs sims[0, 1], HAM sims[0, 2] → SPAM
    assert L[0] == 1


def test_knn_never_votes_a_class_no_neighbour_has(minilm, tmp_path):
    frame = dev_frame([("I love this song", 0, "dev"), ("free money http://x.com", 1, "dev")])
    cache = FMCache(tmp_path / "fm.sqlite")
    L = apply_lfs(frame, [knn_lf("knn", neighbors=1, min_similarity=0.0)], cardinality=2, fm_cache=cache).values[:, 0]
    emb = cached_embeddings(frame["text"].to_list(), minilm, cache)
    assert emb[0] @ emb[1] < 0  # each row's only other dev row is dissimilar (negative cosine)
    # the only neighbour's similarity is below min_similarity=0.0: abstain (never vote the row's own label)
    np.testing.assert_array_equal(L, [ABSTAIN, ABSTAIN])


def test_knn_reference_limits_the_neighbours_to_those_ids(minilm, tmp_path):
    """With reference=[r1], row 0's only possible neighbour is r1 (HAM), though r2 (SPAM) is nearer."""
    frame = dev_frame([("subscribe to my channel", 1, "dev"), ("I love this song", 0, "dev"),
                       ("Check out my channel", 1, "dev"), ("great tune", 0, "train")])
    cache = FMCache(tmp_path / "fm.sqlite")
    free = apply_lfs(frame, [knn_lf("knn", neighbors=1, min_similarity=-1.0)], cardinality=2, fm_cache=cache).values[:, 0]
    only = apply_lfs(frame, [knn_lf("knn", neighbors=1, min_similarity=-1.0, reference=["r1"])], cardinality=2,
                     fm_cache=cache).values[:, 0]
    assert free[0] == 1 and only[0] == 0 and only[3] == 0
    assert only[1] == ABSTAIN  # r1's only reference row is itself (leave-one-out)
    with pytest.raises(LFError, match="among its reference ids"):
        apply_lfs(frame, [knn_lf("knn", neighbors=1, min_similarity=0.0, reference=["r3"])], cardinality=2, fm_cache=cache)
    with pytest.raises(LFError, match="reference must be a non-empty list"):
        knn_lf("knn", reference="r1")


# --- zero-shot -----------------------------------------------------------------------------------------


def test_zero_shot_margin_matches_hand_computation(yt40, minilm, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    lf = zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin=0.05)
    votes = VoteCache(tmp_path / "votes")
    L = apply_lfs(yt40, [lf], cardinality=2, cache=votes, fm_cache=cache).values[:, 0]
    assert votes.runs["zs"]["computed"] == 42  # 40 texts + 2 descriptions
    sims = cached_embeddings(yt40["text"].to_list(), minilm, cache) @ cached_embeddings(DESCRIPTIONS, minilm, cache).T
    top2 = np.sort(sims, axis=1)
    margin = top2[:, -1] - top2[:, -2]
    expected = np.where(margin >= 0.05, sims.argmax(axis=1), ABSTAIN)
    np.testing.assert_array_equal(L, expected)
    assert ABSTAIN in expected and {0, 1} <= set(expected)  # the margin bites; both classes get votes


def test_zero_shot_auto_margin_is_fit_on_dev_gold(yt40, minilm, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    lf = zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto")
    votes = VoteCache(tmp_path / "votes")
    L = apply_lfs(yt40, [lf], cardinality=2, cache=votes, fm_cache=cache).values[:, 0]
    sims = cached_embeddings(yt40["text"].to_list(), minilm, cache) @ cached_embeddings(DESCRIPTIONS, minilm, cache).T
    top2 = np.sort(sims, axis=1)
    margin, pred = top2[:, -1] - top2[:, -2], sims.argmax(axis=1)
    dev = yt40["split"].to_numpy() == "dev"
    gold = yt40["label"].fill_null(ABSTAIN).to_numpy()
    cut = _fit_threshold(margin[dev], pred[dev], gold[dev])
    assert votes.fitted["zs"]["threshold"] == pytest.approx(cut)
    assert lf.votes(yt40, cardinality=2, cache=cache).threshold == votes.fitted["zs"]["threshold"]  # nothing kept on lf
    np.testing.assert_array_equal(L, np.where(margin >= cut, pred, ABSTAIN))
    # on dev, voting at the fitted cut-off beats (or ties) every other cut-off
    gain = lambda t: int(np.sum(np.where(pred[dev] == gold[dev], 1, -1)[margin[dev] >= t]))  # noqa: E731
    assert all(gain(cut) >= gain(t) for t in np.append(margin[dev], np.inf))


def test_fit_threshold_with_ties():
    # ties share one cut-off: at 0.9 the two tied votes (+1, -1) count together (net 0), never just the first
    assert _fit_threshold(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 1]), np.array([1, 1, 1])) == 0.5
    # sorted: 0.9 (+1 -1), 0.7 (+1 +1 -1), 0.4 (+1), 0.2 (-1) → running totals 0, 1, 2, 1: best cut 0.4
    conf = np.array([0.7, 0.2, 0.9, 0.4, 0.7, 0.9, 0.7])
    pred = np.array([1, 1, 0, 0, 1, 1, 0])
    gold = np.array([1, 0, 0, 0, 1, 0, 1])
    assert _fit_threshold(conf, pred, gold) == 0.4
    # abstentions are ignored; equal totals keep the higher cut-off
    assert _fit_threshold(np.array([0.9, 0.8, 0.7, 0.95]), np.array([1, 1, 1, ABSTAIN]),
                          np.array([1, 0, 1, 0])) == 0.9
    # no cut-off gains: abstain everywhere
    assert _fit_threshold(np.array([0.8, 0.8]), np.array([1, 0]), np.array([0, 0])) == np.inf
    assert _fit_threshold(np.array([0.8]), np.array([ABSTAIN]), np.array([0])) == np.inf


def test_auto_threshold_without_dev_gold_is_an_lf_error(yt40, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    no_dev = yt40.with_columns(split=pl.lit("train"))
    with pytest.raises(LFError, match=r"LF 'zs': threshold='auto' needs gold-labeled rows in split 'dev'"):
        apply_lfs(no_dev, [zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto")], cardinality=2,
                  fm_cache=cache)
    no_gold = yt40.with_columns(label=pl.lit(None, dtype=pl.Int64))
    with pytest.raises(LFError, match=r"LF 'knn': needs gold-labeled rows in split 'dev'"):
        apply_lfs(no_gold, [knn_lf("knn", min_similarity="auto")], cardinality=2, fm_cache=cache)
    with pytest.raises(LFError, match=r"threshold='auto' needs gold-labeled rows"):
        apply_lfs(yt40.drop("split"), [zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto")],
                  cardinality=2, fm_cache=cache)


def test_fm_lf_votes_come_from_the_vote_cache(yt40, tmp_path):
    def suite():
        return [keyword_lf("kw", ["subscribe"], label=1), knn_lf("knn", neighbors=3, min_similarity="auto"),
                zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin=0.02)]

    votes = VoteCache(tmp_path / "votes")
    first_lfs = suite()
    first = apply_lfs(yt40, first_lfs, cardinality=2, cache=votes, fm_cache=FMCache(tmp_path / "fm.sqlite"))
    assert votes.misses == ["kw", "knn", "zs"] and votes.runs["knn"]["calls"] > 0
    assert set(votes.fitted) == {"knn", "zs"} and votes.fitted["zs"] == {"threshold": 0.02}
    again = VoteCache(tmp_path / "votes")
    second = apply_lfs(yt40, suite(), cardinality=2, cache=again, fm_cache=None)  # no FM cache to fall back on
    assert again.hits == ["kw", "knn", "zs"] and again.misses == []
    assert again.runs == {} and again.fitted == votes.fitted  # no model ran; the fitted threshold came with the votes
    np.testing.assert_array_equal(second.values, first.values)


# --- prompt LF with a budget (Gemma) ----------------------------------------------------------------------

BUDGET_ROWS = [  # text, gold, split; "subscribe" / "song" rows are covered by the keyword LFs
    ("subscribe to me", 1, "dev"), ("nice song", 0, "dev"), ("free gift card www.x.com", 1, "dev"),
    ("so beautiful", 0, "dev"), ("subscribe pls", None, "train"), ("great song", None, "train"),
    ("win cash now", None, "train"), ("amazing voice", None, "train"),
]


@pytest.mark.slow
def test_prompt_lf_budget_asks_only_about_uncovered_rows(gemma, tmp_path):
    frame = dev_frame(BUDGET_ROWS)
    template = "Comment: {text}\nSpam:"
    uncovered = np.array(["subscribe" not in t and "song" not in t for t, _, _ in BUDGET_ROWS])
    dev = frame["split"].to_numpy() == "dev"

    def suite(**kw):
        return [keyword_lf("kw_sub", ["subscribe"], label=1), keyword_lf("kw_song", ["song"], label=0),
                prompt_lf("ask", template=template, answers={1: ["yes"], 0: ["no"]}, budget="uncovered", **kw)]

    lfs = suite(min_confidence=0.5, calibrate=False)
    plain = VoteCache(tmp_path / "plain")
    L = apply_lfs(frame, lfs, cardinality=2, cache=plain, fm_cache=FMCache(tmp_path / "a.sqlite")).values
    assert plain.runs["ask"]["computed"] == uncovered.sum() == 4  # only the rows no other LF covers
    assert (L[~uncovered, 2] == ABSTAIN).all()

    votes = VoteCache(tmp_path / "votes")
    lfs = suite(min_confidence="auto", calibrate=True)
    L = apply_lfs(frame, lfs, cardinality=2, cache=votes, fm_cache=FMCache(tmp_path / "b.sqlite")).values
    # uncovered rows, plus the covered dev rows the cut-off is fit on, plus the "N/A" calibration prompt
    assert votes.runs["ask"]["computed"] == (uncovered | dev).sum() + 1 == 7
    assert (L[~uncovered, 2] == ABSTAIN).all()
    assert set(votes.fitted["ask"]) == {"threshold"}

    again = VoteCache(tmp_path / "votes")
    L2 = apply_lfs(frame, suite(min_confidence="auto", calibrate=True), cardinality=2, cache=again, fm_cache=None).values
    assert again.hits == ["kw_sub", "kw_song", "ask"] and again.runs == {} and again.fitted == votes.fitted
    np.testing.assert_array_equal(L2, L)


@pytest.mark.slow
def test_prompt_lf_reads_only_its_template_fields(gemma, tmp_path):
    frame = pl.DataFrame({"id": ["a", "b"], "CONTENT": ["free money http://x.com", "love it"]})
    lf = prompt_lf("ask", template="Comment: {CONTENT}\nSpam:", answers={1: ["yes"], 0: ["no"]},
                   min_confidence=0.0, calibrate=False)
    assert lf.columns() == ("id", "split", "label", "CONTENT")
    votes = VoteCache(tmp_path / "votes")
    L = apply_lfs(frame, [lf], cardinality=2, cache=votes, fm_cache=FMCache(tmp_path / "fm.sqlite")).values
    assert L.shape == (2, 1) and set(L[:, 0]) <= {0, 1} and votes.runs["ask"]["computed"] == 2


def test_fm_lf_on_a_frame_lacking_its_column_names_it(yt40):
    with pytest.raises(LFError, match=r"LF 'zs' reads column 'body', which the data lacks"):
        apply_lfs(yt40, [zero_shot_lf("zs", descriptions=DESCRIPTIONS, field="body")], cardinality=2)
    with pytest.raises(LFError, match=r"LF 'zs': 2 descriptions for 3 classes"):
        apply_lfs(yt40, [zero_shot_lf("zs", descriptions=DESCRIPTIONS)], cardinality=3)
