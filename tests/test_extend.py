"""Embedding-extended LFs (labelflow.extend): radii fit on dev gold, votes within them, project wiring."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from labelflow import LFError, ProjectError
from labelflow.cli import main
from labelflow.extend import (ExtendConfig, base_columns, extend_votes, extension_candidates, extension_name,
                              wilson_lower_bound)
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE

HAM, SPAM = 0, 1


def at(*degrees: float) -> np.ndarray:
    """Unit vectors at these angles (degrees) in the plane: the cosine similarity of two is cos(their angle)."""
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def loose(**overrides) -> ExtendConfig:
    """Settings where a precision is its own lower bound (confidence 0.5) and one dev vote is enough."""
    return ExtendConfig(**{"confidence": 0.5, "min_dev_votes": 1, "max_drop": 0.0, **overrides})


# One LF `a` (HAM) firing on row 0 at 0°; dev rows 1-5 at 10°..50° (gold HAM, HAM, HAM, SPAM, SPAM);
# rows 6-9 (no gold) at 25°, 35°, 5°, 60°.
RAY_ANGLES = (0, 10, 20, 30, 40, 50, 25, 35, 5, 60)
RAY_L = np.array([[HAM]] + [[-1]] * 9)
RAY_DEV = np.array([1, 2, 3, 4, 5])
RAY_GOLD = np.array([HAM, HAM, HAM, SPAM, SPAM])


def ray(config: ExtendConfig, **kw):
    return extend_votes(RAY_L, at(*RAY_ANGLES), dev_rows=RAY_DEV, y_dev=RAY_GOLD, cardinality=2, lf_names=["a"],
                        config=config, **kw)


def test_votes_appear_exactly_within_the_fitted_radius():
    ext = ray(loose(min_precision=1.0))  # precision 1 holds up to the 30° dev row, not the 40° one
    assert ext.names == ("a", "a~ext")
    (info,) = ext.lfs
    assert info.radius == pytest.approx(np.cos(np.radians(30)), abs=1e-6)
    assert (info.dev_votes, info.dev_precision, info.votes, info.reason) == (3, 1.0, 5, "extended")
    # rows at 10°, 20°, 30°, 25°, 5° get the LF's vote; 40°, 50°, 35°, 60° abstain; row 0 keeps its own vote
    assert ext.values[:, 1].tolist() == [-1, HAM, HAM, HAM, -1, -1, HAM, -1, HAM, -1]
    np.testing.assert_array_equal(ext.values[:, 0], RAY_L[:, 0])


def test_the_precision_bar_sets_how_far_an_lf_reaches():
    ext = ray(loose(min_precision=0.75))  # 3 right of 4 within 40° is precision 0.75: the bar holds there
    assert ext.lfs[0].radius == pytest.approx(np.cos(np.radians(40)), abs=1e-6)
    assert ext.values[:, 1].tolist() == [-1, HAM, HAM, HAM, HAM, -1, HAM, HAM, HAM, -1]
    assert ext.lfs[0].dev_precision == 0.75


def test_the_bar_is_a_lower_bound_not_the_raw_precision():
    # at 95 % confidence, 3 of 3 right has a Wilson lower bound 0.53 ≥ 0.5, 3 of 4 only 0.30 (raw 0.75)
    z = 1.6448536269514722
    assert wilson_lower_bound(3, 3, z) >= 0.5 > wilson_lower_bound(3, 4, z)
    ext = ray(ExtendConfig(min_precision=0.5, min_dev_votes=1, max_drop=0.0))
    assert ext.lfs[0].radius == pytest.approx(np.cos(np.radians(30)), abs=1e-6)


def test_too_little_dev_evidence_gives_no_column_and_says_why():
    ext = ray(loose(min_precision=1.0, min_dev_votes=4))  # only 3 dev votes reach precision 1
    assert ext.names == ("a",) and ext.values.shape == (10, 1)
    (info,) = ext.lfs
    assert info.column is None and info.radius is None and ext.radii == {"a": None}
    assert info.reason.startswith("too little dev evidence: no radius with ≥ 4 extended dev votes")
    assert "precision reaches 1.000" in info.reason


def test_the_bar_is_not_below_the_lfs_own_dev_precision():
    # `a` also votes HAM on two dev rows with gold HAM: smoothed own precision (2+1)/(2+2) = 0.75
    L = np.array([[HAM], [-1], [-1], [HAM], [HAM]])
    X = at(0, 10, 50, 1, 2)
    ext = extend_votes(L, X, dev_rows=[1, 2, 3, 4], y_dev=np.array([HAM, SPAM, HAM, HAM]), cardinality=2,
                       lf_names=["a"], config=loose(min_precision=0.1))
    info = ext.lfs[0]
    assert (info.bar, info.own_dev_votes, info.own_precision) == (0.75, 2, 1.0)
    assert info.radius == pytest.approx(np.cos(np.radians(8)), abs=1e-6)  # the 10° row (nearest vote at 2°)


def test_other_reasons_an_lf_is_not_extended():
    L = np.array([[HAM, -1, SPAM], [-1, -1, SPAM], [-1, -1, -1]])
    ext = extend_votes(L, at(0, 1, 2), dev_rows=[0, 1], y_dev=np.array([HAM, SPAM]), cardinality=2,
                       lf_names=["a", "never", "b"], config=loose(lfs=["a", "never"]))
    reasons = {e.lf: e.reason for e in ext.lfs}
    assert reasons["never"] == "no votes to extend from"
    assert reasons["b"] == "not listed in extend.lfs"
    assert reasons["a"].startswith("no uncontested votes")  # b votes SPAM where a votes HAM
    ext = extend_votes(L, at(0, 1, 2), dev_rows=[2], y_dev=np.array([-1]), cardinality=2, lf_names=["a", "n", "b"])
    assert ext.lfs[2].reason == "no dev gold rows where it abstains to fit a radius on"


# Scope and sources: a (HAM) at 0° and 40° (b votes SPAM there too), b (SPAM) at 40°, 90° and 0.5°.
SCOPE_ANGLES = (0, 40, 90, 40.5, 1, 89, 0.5)
SCOPE_L = np.array([[HAM, -1], [HAM, SPAM], [-1, SPAM], [-1, -1], [-1, -1], [-1, -1], [-1, SPAM]])
SCOPE_DEV, SCOPE_GOLD = np.array([4, 5]), np.array([HAM, SPAM])


def scope_case(**settings):
    return extend_votes(SCOPE_L, at(*SCOPE_ANGLES), dev_rows=SCOPE_DEV, y_dev=SCOPE_GOLD, cardinality=2,
                        lf_names=["a", "b"], config=loose(min_precision=1.0, **settings))


def test_uncovered_scope_leaves_rows_other_lfs_vote_on_alone():
    ext = scope_case(scope="uncovered")
    a = ext.values[:, ext.names.index("a~ext")]
    assert a[6] == -1  # within a's radius of row 0, but b votes there
    assert a[4] == HAM and a[3] == -1  # the dev row at 1°; 40.5° is near a's contested vote only
    ext = scope_case(scope="abstain")
    assert ext.values[6, ext.names.index("a~ext")] == HAM


def test_uncontested_sources_skip_votes_another_lf_contradicts():
    assert scope_case(sources="uncontested").values[3, 2] == -1
    ext = scope_case(sources="all")  # row 1 (a HAM, b SPAM) is a source: 40.5° is 0.5° from it
    assert ext.values[3, ext.names.index("a~ext")] == HAM
    # b's nearest vote to the HAM dev row at 1° is its SPAM vote at 0.5°: wrong first, so no radius
    assert "b~ext" not in ext.names and ext.lfs[1].reason.startswith("too little dev evidence")


def test_a_multipolar_lf_extends_the_class_of_its_nearest_vote():
    L = np.array([[HAM], [SPAM], [-1], [-1], [-1], [-1], [-1]])
    X = at(0, 90, 3, 87, 2, 88, 45)
    ext = extend_votes(L, X, dev_rows=[2, 3], y_dev=np.array([HAM, SPAM]), cardinality=2, lf_names=["c"],
                       config=loose(min_precision=1.0))
    assert ext.values[:, 1].tolist() == [-1, -1, HAM, SPAM, HAM, SPAM, -1]


def test_rows_without_an_embedding_neither_get_nor_give_votes():
    X = at(0, 10, 20, 5, 15)
    X[3] = np.nan  # a vote of `a` whose row has no embedding
    X[4] = 0.0
    L = np.array([[HAM], [-1], [-1], [HAM], [-1]])
    ext = extend_votes(L, X, dev_rows=[1], y_dev=np.array([HAM]), cardinality=2, lf_names=["a"],
                       config=loose(min_precision=0.5))
    assert ext.values[:, 1].tolist() == [-1, HAM, -1, -1, -1]
    assert ext.lfs[0].radius == pytest.approx(np.cos(np.radians(10)), abs=1e-6)  # from row 0, not the NaN row


def test_blocks_do_not_change_the_result():
    rng = np.random.default_rng(0)
    n, m, k = 400, 6, 3
    X = rng.normal(size=(n, 8)) + np.repeat(np.eye(3, 8) * 3, [134, 133, 133], axis=0)
    y = np.repeat([0, 1, 2], [134, 133, 133])
    L = np.where(rng.random((n, m)) < 0.15, np.where(rng.random((n, m)) < 0.8, y[:, None], rng.integers(0, k, (n, m))), -1)
    dev = rng.choice(n, 80, replace=False)
    for scope in ("uncovered", "abstain"):
        config = ExtendConfig(scope=scope, min_dev_votes=3, confidence=0.8)
        whole = extend_votes(L, X, dev_rows=dev, y_dev=y[dev], cardinality=k, config=config,
                             block_rows=10_000, block_sources=10_000)
        blocked = extend_votes(L, X, dev_rows=dev, y_dev=y[dev], cardinality=k, config=config,
                               block_rows=7, block_sources=5)
        assert len(whole.names) > m  # some LFs extended, so the comparison means something
        assert whole.names == blocked.names
        np.testing.assert_array_equal(whole.values, blocked.values)
        assert [(e.lf, e.dev_votes, e.votes, e.reason) for e in whole.lfs] == \
            [(e.lf, e.dev_votes, e.votes, e.reason) for e in blocked.lfs]
        np.testing.assert_allclose([e.radius or 0 for e in whole.lfs], [e.radius or 0 for e in blocked.lfs],
                                   atol=1e-6)


def test_bad_input_is_refused_naming_what_is_wrong():
    X, y = at(*RAY_ANGLES), RAY_GOLD
    with pytest.raises(LFError, match="embeddings has 9 rows; the label matrix has 10"):
        extend_votes(RAY_L, X[:9], dev_rows=RAY_DEV, y_dev=y, cardinality=2)
    with pytest.raises(LFError, match="'a~ext' is already an extension column"):
        extend_votes(np.c_[RAY_L, RAY_L], X, dev_rows=RAY_DEV, y_dev=y, cardinality=2, lf_names=["a", "a~ext"])
    with pytest.raises(LFError, match=r"lfs names LF\(s\) \['zzz'\] the suite lacks"):
        extend_votes(RAY_L, X, dev_rows=RAY_DEV, y_dev=y, cardinality=2, lf_names=["a"], config=ExtendConfig(lfs=["zzz"]))
    with pytest.raises(LFError, match=r"y_dev must hold one gold class per dev row \(5\); got shape \(4,\)"):
        extend_votes(RAY_L, X, dev_rows=RAY_DEV, y_dev=y[:4], cardinality=2)
    with pytest.raises(LFError, match="y_dev holds 7 for dev row 1, outside -1..1"):
        extend_votes(RAY_L, X, dev_rows=RAY_DEV, y_dev=np.array([7, 0, 0, 0, 0]), cardinality=2)
    with pytest.raises(LFError, match="dev_rows holds row index 10, outside 0..9"):
        extend_votes(RAY_L, X, dev_rows=[10], y_dev=np.array([0]), cardinality=2)
    bad = X.copy()
    bad[2, 0] = np.inf
    with pytest.raises(LFError, match="embeddings holds an infinite value in row 2"):
        extend_votes(RAY_L, bad, dev_rows=RAY_DEV, y_dev=y, cardinality=2)
    with pytest.raises(LFError, match=r"extend: unknown setting\(s\) \['radius'\]"):
        ExtendConfig.from_dict({"radius": 0.5})
    with pytest.raises(LFError, match="extend: confidence must be a number in \\[0.5, 1\\); got 1.5"):
        ExtendConfig(confidence=1.5)
    with pytest.raises(LFError, match="block_rows must be an integer ≥ 1; got 0"):
        extend_votes(RAY_L, X, dev_rows=RAY_DEV, y_dev=y, cardinality=2, block_rows=0)


def test_extension_candidates_skip_lfs_already_extended_and_count_rows():
    ext = scope_case(scope="abstain")
    cands = extension_candidates(ext.values, at(*SCOPE_ANGLES), dev_rows=SCOPE_DEV, y_dev=SCOPE_GOLD,
                                 cardinality=2, lf_names=ext.names, config=loose(min_precision=1.0, scope="abstain"))
    assert cands == []  # a is extended already, b gets no radius
    base = ext.values[:, base_columns(ext.names)]
    (cand,) = extension_candidates(base, at(*SCOPE_ANGLES), dev_rows=SCOPE_DEV, y_dev=SCOPE_GOLD, cardinality=2,
                                   lf_names=["a", "b"], config=loose(min_precision=1.0, scope="abstain"), rows=[6])
    assert (cand.lf, cand.column, cand.in_rows) == ("a", extension_name("a"), 1)
    np.testing.assert_array_equal(cand.votes, ext.values[:, 2])
    assert (cand.new_votes, cand.new_covered, cand.dev_votes, cand.dev_precision) == (2, 1, 1, 1.0)


# --- a project: two keyword LFs, embeddings given by hand (angles), rows no LF votes on -------------------

ROWS = [  # id, text, label, split, angle
    ("t0", "buy now", SPAM, "train", 80), ("t1", "buy cheap", SPAM, "train", 85),
    ("t2", "nice song", HAM, "train", 5), ("t3", "good song", HAM, "train", 10),
    ("t4", "cheap pills", SPAM, "train", 82), ("t5", "lovely voice", HAM, "train", 13),
    ("t6", "random words", HAM, "train", 45),
    ("d0", "cheap deal", SPAM, "dev", 83), ("d1", "great voice", HAM, "dev", 8),
    ("d2", "pills cheap", SPAM, "dev", 78), ("d3", "sweet melody", HAM, "dev", 15),
    ("s0", "deal cheap", SPAM, "test", 84), ("s1", "melody", HAM, "test", 6),
    ("s2", "buy", SPAM, "test", 81), ("s3", "song", HAM, "test", 9),
]
SUITE = '''\
from labelflow import keyword_lf

kw_buy = keyword_lf("kw_buy", ["buy"], label=1)
kw_song = keyword_lf("kw_song", ["song"], label=0)
'''
SETTINGS = {"confidence": 0.5, "min_dev_votes": 1, "min_precision": 0.9}


@pytest.fixture
def extended(tmp_path):
    """A project whose matrix leaves 9 rows uncovered, with an ``embedding`` FM output and extension on."""
    src = tmp_path / "src"
    src.mkdir()
    for split in ("train", "dev", "test"):
        pl.DataFrame([r[:3] for r in ROWS if r[3] == split], schema=["id", "text", "label"],
                     orient="row").write_csv(src / f"{split}.csv")
    (src / "suite.py").write_text(SUITE)
    project = Project.init(tmp_path / "proj", sources={s: [src / f"{s}.csv"] for s in ("train", "dev", "test")},
                           classes=["HAM", "SPAM"], id="id", label="label", hide_labels=["train"],
                           lfs=src / "suite.py", label_model="majority_vote")
    save_angles(project, {r[0]: r[4] for r in ROWS})
    project.update_config(extend=SETTINGS)
    return project


def save_angles(project: Project, angles: dict[str, float]) -> None:
    ids = project.columns("id")["id"]
    project.save_fm_output("embedding", ids, at(*[angles[i] for i in ids]).astype(np.float32))


def column(matrix, name: str) -> dict[str, int]:
    return dict(zip(matrix.ids.to_list(), matrix.values[:, matrix.lf_names.index(name)].tolist()))


def test_apply_adds_extension_columns_to_the_matrix(extended):
    matrix, _ = extended.apply(n_jobs=1)
    assert matrix.lf_names == ("kw_buy", "kw_song", "kw_buy~ext", "kw_song~ext")
    buy, song = column(matrix, "kw_buy~ext"), column(matrix, "kw_song~ext")
    # SPAM rows near "buy" rows get its vote, HAM rows near "song" rows get its; rows LFs vote on stay as they are
    assert {i for i, v in buy.items() if v == SPAM} == {"t4", "d0", "d2", "s0"}
    assert {i for i, v in song.items() if v == HAM} == {"t5", "d1", "d3", "s1"}
    assert buy["t6"] == song["t6"] == -1  # 35° from either: outside both radii
    assert Project.open(extended.root).matrix().lf_names == matrix.lf_names  # saved so
    report = {e["lf"]: e for e in extended.extension()}
    assert report["kw_song"]["column"] == "kw_song~ext" and report["kw_song"]["dev_votes"] == 2
    model = extended.fit("majority_vote")
    metrics = extended.evaluate(model)
    assert metrics["test"]["coverage"] == 1.0 and metrics["test"]["accuracy"] == 1.0


def test_extension_follows_the_embeddings(extended):
    extended.apply(n_jobs=1)
    extended.fit("majority_vote")
    save_angles(extended, {**{r[0]: r[4] for r in ROWS}, "s1": 45})  # `fm embed` again, s1 moved away
    assert column(extended.matrix(), "kw_song~ext")["s1"] == -1
    with pytest.raises(ProjectError, match="fit on other data"):
        extended.label_model("majority_vote")


def test_extension_follows_dev_gold(extended):
    matrix, _ = extended.apply(n_jobs=1)
    assert column(matrix, "kw_song~ext")["t5"] == HAM  # within 5°: the dev row d3 at 15° is in the radius
    extended.annotate("d3", "SPAM", annotator="ann")  # now d3 is a wrong extended vote: the radius shrinks to 3°
    after = extended.matrix()
    assert column(after, "kw_song~ext")["t5"] == -1 and column(after, "kw_song~ext")["s1"] == HAM
    assert {e["lf"]: e for e in extended.extension()}["kw_song"]["dev_votes"] == 1


def test_extension_follows_the_lf_votes_and_the_setting(extended):
    extended.apply(n_jobs=1)
    (extended.root / "suite2.py").write_text(SUITE.replace('["song"]', '["song", "melody"]'))
    matrix, _ = extended.apply(lfs=extended.root / "suite2.py", n_jobs=1)
    assert column(matrix, "kw_song")["s1"] == HAM and column(matrix, "kw_song~ext")["s1"] == -1
    extended.update_config(extend=None)
    assert Project.open(extended.root).matrix().lf_names == ("kw_buy", "kw_song")
    assert not extended.store.extension.exists()


def test_rows_whose_embedding_is_null_get_no_extended_vote(extended):
    ids = extended.columns("id")["id"]
    X = at(*[dict((r[0], r[4]) for r in ROWS)[i] for i in ids]).astype(np.float32)
    X[ids.to_list().index("s1")] = np.nan  # stored as null, as `fm embed` stores rows it did not compute
    extended.save_fm_output("embedding", ids, X)
    assert np.isnan(extended.embeddings()[ids.to_list().index("s1")]).all()
    matrix, _ = extended.apply(n_jobs=1)
    assert column(matrix, "kw_song~ext")["s1"] == -1 and column(matrix, "kw_song~ext")["t5"] == HAM


def test_project_extension_candidates_offer_the_lfs_not_extended_yet(extended):
    extended.update_config(extend={**SETTINGS, "lfs": ["kw_buy"]})
    matrix, _ = extended.apply(n_jobs=1)
    assert matrix.lf_names == ("kw_buy", "kw_song", "kw_buy~ext")
    s1 = extended.columns("id")["id"].to_numpy() == "s1"
    (cand,) = extended.extension_candidates(rows=s1)
    assert (cand.lf, cand.column, cand.in_rows, cand.new_votes) == ("kw_song", "kw_song~ext", 1, 4)
    extended.update_config(extend={**SETTINGS, "lfs": ["kw_buy", cand.lf]})  # accepting it
    after = extended.matrix()
    assert after.lf_names[-1] == "kw_song~ext"
    np.testing.assert_array_equal(after.values[:, -1], cand.votes)
    assert extended.extension_candidates() == []


def test_a_missing_embedding_column_says_what_to_run(extended):
    extended.update_config(extend={**SETTINGS, "embedding": "vectors"})
    with pytest.raises(ProjectError, match=r"no embedding column 'vectors' .*run `labelflow fm embed -p "):
        extended.apply(n_jobs=1)
    with pytest.raises(ProjectError, match="column 'text' is String, not an embedding"):
        extended.embeddings("text")


def test_a_bad_setting_in_labelflow_json_is_named(extended):
    config = json.loads((extended.root / CONFIG_FILE).read_text())
    config["extend"] = {"scope": "everywhere"}
    (extended.root / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ProjectError, match="extend: scope must be 'uncovered' or 'abstain'"):
        Project.open(extended.root)


def test_cli_extend_and_no_extend(extended, capsys):
    p = ["-p", str(extended.root)]
    assert main(["apply", *p, "--jobs", "1", "--extend", "--json"]) == 0  # the settings in labelflow.json
    out = json.loads(capsys.readouterr().out)
    assert out["lfs"] == ["kw_buy", "kw_song", "kw_buy~ext", "kw_song~ext"]
    assert [e["column"] for e in out["extension"]] == ["kw_buy~ext", "kw_song~ext"]
    assert main(["fit", *p, "--model", "majority_vote", "--no-extend", "--json"]) == 0
    capsys.readouterr()
    assert Project.open(extended.root).config.extend is None
    assert Project.open(extended.root).matrix().lf_names == ("kw_buy", "kw_song")
    assert main(["apply", *p, "--jobs", "1", "--extend", "vectors"]) == 2
    assert "no embedding column 'vectors'" in capsys.readouterr().err
    assert Project.open(extended.root).config.extend is None  # nothing saved on failure
    assert main(["apply", *p, "--jobs", "1", "--extend"]) == 0  # default settings: 2 dev votes are too few
    out = capsys.readouterr().out
    assert "extended LFs over 'embedding': 0 of 2 LFs" in out and "not extended (2, reasons in --json)" in out
    assert Project.open(extended.root).config.extend == ExtendConfig().to_dict()


# --- the shipped YouTube data with the real offline MiniLM ------------------------------------------------


@pytest.mark.slow
def test_youtube_demo_suite_extended_reaches_97_percent_test_coverage(tmp_path):
    """The demo's plain 18-LF suite with extension: ≥ 97 % test coverage, accuracy not below the plain suite's."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("textblob")
    from labelflow.demo import CLASSES, DATA, DEV_SIZE, SEED, SUITE, TEST_FILES, TRAIN_FILES
    from labelflow.fm.run import fm_embed

    project = Project.init(tmp_path / "yt", sources={"train": [DATA / f for f in TRAIN_FILES],
                                                      "test": [DATA / f for f in TEST_FILES]},
                           classes=CLASSES, text="CONTENT", id="COMMENT_ID", label="label", dev_sample=DEV_SIZE,
                           seed=SEED, hide_labels=["train"], duplicates="drop_identical", lfs=SUITE)
    project.apply(n_jobs=1)
    fm_embed(project, device="cpu")
    scores = {}
    for extend in (None, {}):
        project.update_config(extend=extend)
        for use_dev in (False, True):
            metrics = project.evaluate(project.fit("labelflow", use_dev=use_dev))
            scores[extend is not None, use_dev] = metrics["test"]
    assert scores[False, False]["coverage"] < 0.95
    assert scores[True, False]["coverage"] >= 0.97
    for use_dev in (False, True):
        assert scores[True, use_dev]["accuracy"] >= scores[False, use_dev]["accuracy"]
