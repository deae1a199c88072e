"""FM LF estimates (``estimate_lf``, ``labelflow apply --estimate``) with the real packaged models: the
sample's coverage and accuracy are what a full run gives on those rows, the projected work is what the
full run then computes, and bad input is one clear line."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from labelflow import ABSTAIN, LFError, VoteCache, apply_lfs, keyword_lf
from labelflow.cli import main
from labelflow.fm import FMCache, estimate_lf, estimate_suite, knn_lf, prompt_lf, zero_shot_lf
from labelflow.fm.estimate import format_estimates, wilson_interval
from labelflow.project import Project
from labelflow.store import ProjectStore

DESCRIPTIONS = [
    "a fan's comment about the song, the singer or the music video",
    "an advertisement asking you to visit a website, check out a channel or subscribe",
]


def full_run_on_sample(frame, lfs, target, sample_ids, cache, record=None):
    """The full run's votes of LF ``target`` (a fresh copy in ``lfs``) on the sampled rows, and their gold;
    ``record`` (a vote cache) gets what the run fit and what its model runs did."""
    L = apply_lfs(frame, lfs, cardinality=2, cache=record, fm_cache=cache)
    rows = frame["id"].is_in(list(sample_ids)).to_numpy()
    return L.values[rows, list(L.lf_names).index(target)], frame["label"].to_numpy()[rows]


def assert_matches(est, votes, gold):
    voted = votes != ABSTAIN
    assert (est.voted, est.correct) == (int(voted.sum()), int((voted & (votes == gold)).sum()))
    assert est.coverage == pytest.approx(voted.mean())
    if est.voted:
        assert est.accuracy == pytest.approx(est.correct / est.voted)
        assert est.accuracy_low <= est.accuracy <= est.accuracy_high
    else:
        assert est.accuracy is est.accuracy_low is None


def test_zero_shot_estimate_is_the_full_run_on_its_sample(yt40, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    est = estimate_lf(yt40, zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto"), rows=8, seed=3,
                      cardinality=2, fm_cache=cache)
    assert (est.kind, est.sample_rows, est.scope_dev_rows, len(set(est.sample_ids))) == ("zero-shot", 8, 20, 8)
    assert set(est.sample_ids) <= set(yt40.filter(pl.col("split") == "dev")["id"])
    # the real model ran: the auto margin is fit on all 20 dev rows (and the 2 descriptions), as a full run fits it
    assert est.computed_rows == 22 and est.seconds_per_row > 0 and est.timed_rows == 22
    assert (est.rows, est.scope_rows, est.scope_exact) == (40, 40, True)

    full = zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto")
    record = VoteCache(tmp_path / "votes")
    votes, gold = full_run_on_sample(yt40, [full], "zs", est.sample_ids, cache, record)
    assert_matches(est, votes, gold)
    assert est.voted >= 4  # the sample shows something
    assert est.fitted_threshold == record.fitted["zs"]["threshold"]
    # what the estimate projected the full run to compute is what it computed: the 20 train texts
    assert est.pending_rows == record.runs["zs"]["computed"] == 20
    assert est.projected_seconds == pytest.approx(20 * est.seconds_per_row)

    again = estimate_lf(yt40, zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto"), rows=8, seed=3,
                        cardinality=2, fm_cache=cache)
    assert again.sample_ids == est.sample_ids and (again.voted, again.correct) == (est.voted, est.correct)
    assert again.computed_rows == 0 and again.timed_rows == 8 and again.pending_rows == 0  # the sample, timed uncached
    other = estimate_lf(yt40, zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin="auto"), rows=8, seed=4,
                        cardinality=2, fm_cache=cache)
    assert other.sample_ids != est.sample_ids


def test_knn_estimate_with_a_fixed_threshold_and_more_rows_than_dev(yt40, tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    est = estimate_lf(yt40, knn_lf("knn", neighbors=3, min_similarity=0.3), rows=100, cardinality=2, fm_cache=cache)
    assert (est.kind, est.sample_rows, est.fitted_threshold) == ("knn", 20, 0.3)  # every dev row, no more
    votes, gold = full_run_on_sample(yt40, [knn_lf("knn", neighbors=3, min_similarity=0.3)], "knn", est.sample_ids,
                                     cache)
    assert_matches(est, votes, gold)
    assert 0 < est.voted < 20
    assert est.pending_rows == 20  # the train rows: the dev rows are the neighbours and were embedded here
    assert est.to_dict()["sample_ids"] == list(est.sample_ids)
    json.dumps(est.to_dict())


@pytest.mark.slow
def test_prompt_estimate_with_a_budget_is_the_full_run_on_its_sample(yt40, tmp_path):
    """Gemma with budget='uncovered' and an auto threshold: sampled among the dev rows no keyword LF covers."""
    frame = yt40
    uncovered = ~frame["text"].str.to_lowercase().str.contains("subscribe|song").to_numpy()
    dev = frame["split"].to_numpy() == "dev"

    def suite():
        return [keyword_lf("kw_sub", ["subscribe"], label=1), keyword_lf("kw_song", ["song"], label=0),
                prompt_lf("ask", template='Comment: "{text}"\nSpam?\nAnswer:', answers={1: ["yes"], 0: ["no"]},
                          min_confidence="auto", budget="uncovered")]

    cache = FMCache(tmp_path / "fm.sqlite")
    est = estimate_lf(frame, "ask", suite=suite(), rows=6, seed=1, cardinality=2, fm_cache=cache)
    assert (est.kind, est.budget, est.sample_rows, est.scope_dev_rows) == ("prompt", "uncovered", 6,
                                                                           int((dev & uncovered).sum()))
    sampled = frame["id"].is_in(list(est.sample_ids)).to_numpy()
    assert (uncovered[sampled] & dev[sampled]).all()
    assert (est.scope_rows, est.scope_exact) == (int(uncovered.sum()), True)
    # Gemma ran on every dev row (the auto threshold is fit there), plus the calibration prompt
    assert est.computed_rows == dev.sum() + 1 and est.seconds_per_row > 0 and est.load_seconds > 0

    lfs = suite()
    record = VoteCache(tmp_path / "votes")
    votes, gold = full_run_on_sample(frame, lfs, "ask", est.sample_ids, cache, record)
    assert_matches(est, votes, gold)
    assert est.fitted_threshold == record.fitted["ask"]["threshold"]
    assert est.pending_rows == record.runs["ask"]["computed"] == int((uncovered & ~dev).sum())

    # with an FM LF among the others that no vote cache holds, the scope over all rows is projected from dev
    projected = estimate_lf(frame, "ask", suite=[*suite()[:2], zero_shot_lf("zs", descriptions=DESCRIPTIONS,
                                                                             margin=0.05), suite()[2]],
                            rows=6, seed=1, cardinality=2, fm_cache=cache)
    assert projected.scope_exact is False
    lfs = [*suite()[:2], zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin=0.05), suite()[2]]
    votes, gold = full_run_on_sample(frame, lfs, "ask", projected.sample_ids, cache)
    assert_matches(projected, votes, gold)


# --- the command line, on a project ------------------------------------------------------------------------

FM_SUITE = '''
from labelflow.fm import zero_shot_lf

zs = zero_shot_lf("zs", descriptions=["a comment about the song", "an ad for a website or a channel"], margin=0.02)
'''


def fm_project(tmp_path, project_files, capsys):
    suite = project_files["suite"].with_name("fm_suite.py")
    suite.write_text(project_files["suite"].read_text() + FM_SUITE)
    root = tmp_path / "proj"
    assert main(["init", str(root), "--data", f"train={project_files['train']}", "--data",
                 f"dev={project_files['dev']}", "--data", f"test={project_files['test']}", "--classes", "HAM,SPAM",
                 "--id", "id", "--label", "label", "--hide-labels", "train", "--lfs", str(suite)]) == 0
    capsys.readouterr()
    return root, suite


def test_apply_estimate_measures_and_writes_no_votes(tmp_path, project_files, capsys):
    root, suite = fm_project(tmp_path, project_files, capsys)
    argv = ["apply", "-p", str(root), "--lfs", str(suite), "--estimate", "--estimate-rows", "3"]
    assert main([*argv, "--json"]) == 0
    [est] = json.loads(capsys.readouterr().out)["estimates"]
    assert (est["lf"], est["kind"], est["sample_rows"], est["scope_dev_rows"], est["rows"]) == ("zs", "zero-shot", 3,
                                                                                                 4, 16)
    assert not ProjectStore.of(root).matrix.exists()
    votes_dir = ProjectStore.of(root).votes
    cached = sorted(votes_dir.glob("*.npz")) if votes_dir.exists() else []
    assert cached == []  # zs has no budget: the plain LFs were not needed, and zs's sample votes are not stored

    assert main(["apply", "-p", str(root), "--lfs", str(suite), "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["applied"] == ["kw_sub", "kw_link", "kw_free", "kw_song", "py_short", "zs"]  # nothing was cached
    matrix = Project.open(root).matrix()
    rows = matrix.ids.is_in(est["sample_ids"]).to_numpy()
    gold = Project.open(root).gold()[rows]
    votes = matrix.values[rows, list(matrix.lf_names).index("zs")]
    assert est["voted"] == int((votes != ABSTAIN).sum())
    assert est["correct"] == int(((votes != ABSTAIN) & (votes == gold)).sum())

    assert main(argv) == 0
    out = capsys.readouterr().out
    header, rule, line = out.splitlines()[:3]
    assert header.split()[:4] == ["LF", "kind", "budget", "threshold"] and set(rule) <= {"-", " "}
    assert line.startswith("zs ") and "zero-shot" in line and "3 of 4 dev" in line and "0.02" in line


def run_error(argv, capsys):
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    assert status == 2 and captured.out == "" and captured.err.count("\n") == 1, captured
    assert captured.err.startswith("labelflow: error: ")
    return captured.err


def test_apply_estimate_bad_input_is_one_line(tmp_path, project_files, capsys):
    root, suite = fm_project(tmp_path, project_files, capsys)
    p = ["apply", "-p", str(root), "--lfs", str(suite)]
    assert "argument --estimate-rows: expected a whole number ≥ 1; got 0" in run_error(
        [*p, "--estimate", "--estimate-rows", "0"], capsys)
    assert "unknown LF 'nope'; the suite's FM LFs are ['zs']" in run_error(
        [*p, "--estimate", "--estimate-lf", "nope"], capsys)
    assert "LF 'kw_sub' is not an FM LF (prompt, zero-shot or kNN)" in run_error(
        [*p, "--estimate", "--estimate-lf", "kw_sub"], capsys)
    assert "--estimate-rows, --estimate-seed, --estimate-lf: only with --estimate" in run_error(
        [*p, "--estimate-rows", "5"], capsys)
    plain = ["apply", "-p", str(root), "--lfs", str(project_files["suite"]), "--estimate"]
    assert "the suite has no FM LF (prompt, zero-shot or kNN) to estimate" in run_error(plain, capsys)

    no_dev = tmp_path / "nodev"
    assert main(["init", str(no_dev), "--data", f"train={project_files['train']}", "--classes", "HAM,SPAM",
                 "--id", "id", "--label", "label"]) == 0
    capsys.readouterr()
    assert "estimating an FM LF needs gold-labeled rows in split 'dev'" in run_error(
        ["apply", "-p", str(no_dev), "--lfs", str(suite), "--estimate"], capsys)


def test_estimate_api_bad_input(yt40):
    zs = zero_shot_lf("zs", descriptions=DESCRIPTIONS)
    for rows in (0, -3, True, 2.5):
        with pytest.raises(LFError, match=rf"^rows must be an integer ≥ 1 \(dev gold rows to measure on\); got {rows!r}$"):
            estimate_lf(yt40, zs, rows=rows, cardinality=2)
    with pytest.raises(LFError, match=r"^unknown LF 'gemma'; the suite's FM LFs are \['zs'\]$"):
        estimate_lf(yt40, "gemma", suite=[keyword_lf("kw", ["x"], label=1), zs], cardinality=2)
    with pytest.raises(LFError, match=r"^LF 'kw' is not an FM LF"):
        estimate_lf(yt40, "kw", suite=[keyword_lf("kw", ["x"], label=1), zs], cardinality=2)
    with pytest.raises(LFError, match=r"needs gold-labeled rows in split 'dev'"):
        estimate_lf(yt40.with_columns(split=pl.lit("train")), zs, cardinality=2)
    with pytest.raises(LFError, match=r"needs gold-labeled rows in split 'dev'"):
        estimate_lf(yt40.with_columns(label=pl.lit(None, dtype=pl.Int64)), zs, cardinality=2)
    with pytest.raises(LFError, match=r"^cardinality must be an integer ≥ 2 \(pass it with a frame\); got None$"):
        estimate_lf(yt40, zs)
    with pytest.raises(LFError, match=r"^seed must be an integer ≥ 0; got -1$"):
        estimate_suite(yt40, [zs], rows=3, seed=-1, cardinality=2)


def test_wilson_interval_and_table_shapes():
    low, high = wilson_interval(7, 9)
    assert 0.45 < low < 7 / 9 < high < 0.94
    assert wilson_interval(0, 5)[0] == 0 and wilson_interval(5, 5)[1] == 1
    assert math.isclose(sum(wilson_interval(3, 6)), 1.0)  # symmetric about 1/2 at p = 1/2
    assert format_estimates([]).count("\n") == 2


def test_cached_votes_reads_only_what_apply_stored(yt40, tmp_path):
    """The other LFs' votes a budget looks at come from the vote cache when apply stored them: nothing is applied."""
    from labelflow import VoteCache
    from labelflow.apply import cached_votes

    def suite():
        return [keyword_lf("kw", ["subscribe"], label=1), zero_shot_lf("zs", descriptions=DESCRIPTIONS, margin=0.05),
                prompt_lf("ask", template="{text}", answers={1: ["yes"]}, budget="uncovered")]

    votes = VoteCache(tmp_path / "votes")
    assert cached_votes(yt40, suite(), cardinality=2, cache=votes) == {}
    L = apply_lfs(yt40, suite()[:2], cardinality=2, cache=votes, fm_cache=FMCache(tmp_path / "fm.sqlite"))
    lfs = suite()
    again = VoteCache(tmp_path / "votes")
    found = cached_votes(yt40, lfs, cardinality=2, cache=again)
    assert set(found) == {"kw", "zs"} and again.hits == ["kw", "zs"]  # the budgeted prompt LF is never looked up
    np.testing.assert_array_equal(np.stack([found["kw"], found["zs"]], axis=1), L.values)
    assert cached_votes(yt40, lfs, cardinality=3, cache=votes) == {}  # other settings, other keys
