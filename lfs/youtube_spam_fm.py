"""The YouTube spam suite plus LFs over foundation-model outputs.

Adds to ``youtube_spam.py``:

* ``knn_dev`` — the gold label of the most similar dev comments (all-MiniLM-L6-v2
  embeddings), when they are similar enough; the cut-off is fit on dev gold.
* ``zero_shot_spam`` — which class description a comment's embedding is closest
  to, by a margin fit on dev gold.

``gemma_spam`` — Gemma 3 270M asked whether a comment is spam, read from the
next-token probabilities of "yes" / "no" (calibrated against a content-free input),
only on comments no other LF labels (its first 96 tokens), above a confidence fit on
dev gold — is defined here but is not in ``LFS``: it pays nothing. Measured with
``labelflow apply --estimate`` on the demo's project, no dev row and none of the
1,953 rows is left uncovered by the other LFs (``knn_dev`` votes on 98.7 % of them),
so it would vote on nothing; with the plain suite alone as its budget (250 rows), its
fitted cut-off (0.659) leaves it voting on 0 of the 21 dev rows there, at about 0.4–1
s per row on 2 CPU cores. Its "yes"/"no" scores barely rank the dev rows (AUC 0.58;
0.60–0.65 with other wordings and a 4-shot prompt): it answers "yes" to nearly all.
"""

from pathlib import Path

from labelflow import load_lf_suite
from labelflow.fm import knn_lf, prompt_lf, zero_shot_lf

HAM, SPAM = 0, 1
BASE = load_lf_suite(Path(__file__).with_name("youtube_spam.py"))

knn_dev = knn_lf("knn_dev", neighbors=3, min_similarity="auto")

zero_shot_spam = zero_shot_lf(
    "zero_shot_spam",
    descriptions=[
        "a fan's comment about the song, the singer or the music video",
        "an advertisement asking you to visit a website, check out a channel or subscribe",
    ],
    margin="auto",
)

gemma_spam = prompt_lf(
    "gemma_spam",
    template='YouTube comment: "{text}"\nQuestion: Is this comment spam?\nAnswer:',
    answers={SPAM: ["yes"], HAM: ["no"]},
    provider_config={"max_length": 96},
    min_confidence="auto",
    budget="uncovered",
)

LFS = [*BASE, knn_dev, zero_shot_spam]
