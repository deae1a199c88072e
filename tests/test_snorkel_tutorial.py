"""Snorkel's spam tutorial (snorkel-tutorials ``spam/01_spam_tutorial.py``) runs on labelflow as written, with two
lines changed: ``PandasLFApplier(lfs=lfs).apply(df=...)`` is ``apply_lfs(df, lfs, cardinality=2)`` and
``LabelModel(...)`` is ``get_label_model("snorkel", ...)``. Everything else is the tutorial's code: Snorkel's own
decorators, preprocessor, ``LFAnalysis``, ``MajorityLabelVoter``, ``filter_unlabeled_dataframe`` and
``probs_to_preds`` take labelflow's label matrix as they take Snorkel's. The data are the YouTube comments the
repository ships (``data/youtube``), split as the tutorial's ``load_spam_dataset`` splits them (spaCy's
``has_person`` LF is left out: its model is a download).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("snorkel")
pytest.importorskip("textblob")
sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

from snorkel.labeling import (LabelingFunction, LFAnalysis, PandasLFApplier, filter_unlabeled_dataframe,  # noqa: E402
                              labeling_function)
from snorkel.labeling.model import LabelModel, MajorityLabelVoter  # noqa: E402  (snorkel.labeling before 0.10)
from snorkel.preprocess import preprocessor  # noqa: E402
from snorkel.utils import probs_to_preds  # noqa: E402
from textblob import TextBlob  # noqa: E402

import labelflow  # noqa: E402
from labelflow import apply_lfs, get_label_model  # noqa: E402

pytestmark = pytest.mark.slow  # Snorkel's label model: 500 epochs; the tutorial's classifier
DATA = Path(__file__).resolve().parents[1] / "data" / "youtube"


def load_spam_dataset():
    """The tutorial's ``utils.load_spam_dataset``: videos 1-4 are train (labels hidden) with a dev sample of 100
    of them (labels kept); video 5 is split into valid and test (250 rows), stratified by label."""
    from sklearn.model_selection import train_test_split

    dfs = []
    for i, filename in enumerate(sorted(DATA.glob("Youtube*.csv")), start=1):
        df = pd.read_csv(filename)
        df.columns = map(str.lower, df.columns)
        df = df.drop("comment_id", axis=1)
        df["video"] = [i] * len(df)
        df = df.rename(columns={"class": "label", "content": "text"})
        df = df.sample(frac=1, random_state=123).reset_index(drop=True)
        dfs.append(df)
    df_train = pd.concat(dfs[:4])
    df_dev = df_train.sample(100, random_state=123)
    df_train["label"] = np.ones(len(df_train["label"]), dtype=int) * -1
    df_valid, df_test = train_test_split(dfs[4], test_size=250, random_state=123, stratify=dfs[4].label)
    return df_train, df_dev, df_valid, df_test


@pytest.fixture(scope="module")
def tutorial():
    """The tutorial's code from loading the data to the classifier; what it computes, by name."""
    df_train, df_dev, df_valid, df_test = load_spam_dataset()
    Y_dev = df_dev.label.values
    Y_valid = df_valid.label.values
    Y_test = df_test.label.values

    ABSTAIN = -1
    HAM = 0
    SPAM = 1

    @labeling_function()
    def check(x):
        return SPAM if "check" in x.text.lower() else ABSTAIN

    @labeling_function()
    def check_out(x):
        return SPAM if "check out" in x.text.lower() else ABSTAIN

    @labeling_function()
    def regex_check_out(x):
        return SPAM if re.search(r"check.*out", x.text, flags=re.I) else ABSTAIN

    @preprocessor(memoize=True)
    def textblob_sentiment(x):
        scores = TextBlob(x.text)
        x.polarity = scores.sentiment.polarity
        x.subjectivity = scores.sentiment.subjectivity
        return x

    @labeling_function(pre=[textblob_sentiment])
    def textblob_polarity(x):
        return HAM if x.polarity > 0.9 else ABSTAIN

    @labeling_function(pre=[textblob_sentiment])
    def textblob_subjectivity(x):
        return HAM if x.subjectivity >= 0.5 else ABSTAIN

    def keyword_lookup(x, keywords, label):
        if any(word in x.text.lower() for word in keywords):
            return label
        return ABSTAIN

    def make_keyword_lf(keywords, label=SPAM):
        return LabelingFunction(
            name=f"keyword_{keywords[0]}",
            f=keyword_lookup,
            resources=dict(keywords=keywords, label=label),
        )

    keyword_my = make_keyword_lf(keywords=["my"])
    keyword_subscribe = make_keyword_lf(keywords=["subscribe"])
    keyword_link = make_keyword_lf(keywords=["http"])
    keyword_please = make_keyword_lf(keywords=["please", "plz"])
    keyword_song = make_keyword_lf(keywords=["song"], label=HAM)

    @labeling_function()
    def short_comment(x):
        """Ham comments are often short, such as 'cool video!'"""
        return HAM if len(x.text.split()) < 5 else ABSTAIN

    lfs = [
        keyword_my,
        keyword_subscribe,
        keyword_link,
        keyword_please,
        keyword_song,
        regex_check_out,
        short_comment,
        textblob_polarity,
        textblob_subjectivity,
    ]

    L_train = apply_lfs(df_train, lfs, cardinality=2)  # was: applier = PandasLFApplier(lfs=lfs); applier.apply(...)
    L_dev = apply_lfs(df_dev, lfs, cardinality=2)
    L_valid = apply_lfs(df_valid, lfs, cardinality=2)

    lf_summary_dev = LFAnalysis(L=L_dev, lfs=lfs).lf_summary(Y=Y_dev)

    majority_model = MajorityLabelVoter()
    preds_train = majority_model.predict(L=L_train)

    label_model = get_label_model("snorkel", cardinality=2, verbose=True)  # was: LabelModel(cardinality=2, ...)
    label_model.fit(L_train=L_train, n_epochs=500, log_freq=100, seed=123)

    majority_acc = majority_model.score(L=L_valid, Y=Y_valid)["accuracy"]
    label_model_acc = label_model.score(L=L_valid, Y=Y_valid)["accuracy"]

    probs_train = label_model.predict_proba(L=L_train)
    df_train_filtered, probs_train_filtered = filter_unlabeled_dataframe(X=df_train, y=probs_train, L=L_train)
    preds_train_filtered = probs_to_preds(probs=probs_train_filtered)

    vectorizer = sklearn_text.CountVectorizer(ngram_range=(1, 2))
    X_train = vectorizer.fit_transform(df_train_filtered.text.tolist())
    X_test = vectorizer.transform(df_test.text.tolist())
    sklearn_model = sklearn_linear.LogisticRegression(C=1e3, solver="liblinear")
    sklearn_model.fit(X=X_train, y=preds_train_filtered)
    test_acc = sklearn_model.score(X=X_test, y=Y_test)
    return dict(locals())


def test_label_matrices_are_snorkels(tutorial):
    t = tutorial
    for L, df in ((t["L_train"], t["df_train"]), (t["L_dev"], t["df_dev"]), (t["L_valid"], t["df_valid"])):
        assert L.shape == (len(df), 9) and L.lf_names == tuple(lf.name for lf in t["lfs"])
        np.testing.assert_array_equal(L, PandasLFApplier(lfs=t["lfs"]).apply(df=df, progress_bar=False))
    assert L.ids.to_list() == [str(i) for i in range(len(t["df_valid"]))]  # row positions: the frame has no id


def test_lf_analysis_of_the_matrix_is_labelflows_summary(tutorial):
    ours = tutorial["L_dev"].summary(tutorial["Y_dev"])
    ref = tutorial["lf_summary_dev"]
    assert ours["lf"].to_list() == ref.index.tolist()
    for column, theirs in (("coverage", "Coverage"), ("overlaps", "Overlaps"), ("conflicts", "Conflicts"),
                           ("correct", "Correct"), ("incorrect", "Incorrect"), ("emp_acc", "Emp. Acc.")):
        np.testing.assert_allclose(ours[column].to_numpy().astype(float), ref[theirs].to_numpy().astype(float))
    assert ours["emp_acc"].min() > 0.5


def test_label_model_and_majority_vote_are_snorkels(tutorial):
    t = tutorial
    ref = t["label_model"]._model  # the Snorkel LabelModel the adapter fit (tests/test_labelmodels.py: as Snorkel fits)
    assert isinstance(ref, LabelModel)
    assert (ref.cardinality, ref.train_config.n_epochs, ref.train_config.seed) == (2, 500, 123)
    np.testing.assert_allclose(t["probs_train"], ref.predict_proba(np.asarray(t["L_train"])))
    assert t["label_model_acc"] == pytest.approx(ref.score(L=np.asarray(t["L_valid"]), Y=t["Y_valid"])["accuracy"])
    assert t["majority_acc"] > 0.88 and t["label_model_acc"] > 0.83  # measured: 0.915 and 0.867 on valid
    preds = t["label_model"].predict(L=t["L_train"], tie_break_policy="abstain")
    assert preds.shape == (len(t["df_train"]),) and set(np.unique(preds)) <= {-1, 0, 1}
    majority = get_label_model("majority_vote", cardinality=2).fit(t["L_train"])
    np.testing.assert_array_equal(majority.predict(t["L_train"]), t["preds_train"])  # ties abstain, as Snorkel's


def test_filtered_training_set_has_a_label_on_every_row_and_trains_a_classifier(tutorial):
    t = tutorial
    covered = (np.asarray(t["L_train"]) != -1).any(axis=1)
    assert len(t["df_train_filtered"]) == covered.sum() > 0.8 * len(t["df_train"])
    assert t["probs_train_filtered"].shape == (covered.sum(), 2)
    assert np.all(t["preds_train_filtered"] != -1)  # probs_to_preds breaks ties: no abstains left
    assert t["test_acc"] > 0.88  # measured: 0.912


def test_labelflow_exports_its_own_labeling_function_beside_snorkels():
    assert labelflow.labeling_function is not labeling_function  # both work: Snorkel's above, labelflow's here

    @labelflow.labeling_function()
    def has_link(x):
        return 1 if "http" in x["text"] else -1

    frame = pd.DataFrame({"text": ["see http://x", "nice song"]})
    assert apply_lfs(frame, [has_link], cardinality=2)[:, 0].tolist() == [1, -1]

