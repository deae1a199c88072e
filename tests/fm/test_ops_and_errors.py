"""FM ops over frames (prompts, zero-shot similarity, prompt log-probabilities) and the errors a user
meets with a wrong model, provider, GGUF or answer mapping."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from labelflow import LFError, apply_lfs
from labelflow.fm import FMCache, FMError, get_provider, prompt_lf, provider_kinds
from labelflow.fm.ops import prompt_logprobs, render_prompts, template_fields, zero_shot_similarity
from labelflow.fm.run import fm_prompt

# --- ops -----------------------------------------------------------------------------------------------


def test_render_prompts_fills_fields():
    frame = pl.DataFrame({"id": ["a", "b"], "text": ["hi there", "buy now"], "author": ["ann", "bot"], "n": [1, 22]})
    assert template_fields("{text} by {author} ({n:>3}) {text}") == ["text", "author", "n", "text"]
    assert render_prompts("{author} wrote: {text}\nn={n:>3}\nSpam:", frame) == [
        "ann wrote: hi there\nn=  1\nSpam:", "bot wrote: buy now\nn= 22\nSpam:"]
    assert render_prompts("{text}{{literal}}", frame) == ["hi there{literal}", "buy now{literal}"]


def test_render_prompts_errors_name_the_field():
    frame = pl.DataFrame({"id": ["a"], "text": ["hi"]})
    with pytest.raises(FMError, match=r"names field\(s\) \['AUTHOR'\] that the data lacks.*columns are \['id', 'text'\]"):
        render_prompts("{text} by {AUTHOR}", frame)
    with pytest.raises(FMError, match="names no field"):
        render_prompts("Is it spam?", frame)
    with pytest.raises(FMError, match="malformed prompt template"):
        render_prompts("{text", frame)


def test_zero_shot_similarity_shape_and_values(minilm, tmp_path):
    texts = ["subscribe to my channel", "I love this song", "free cash http://x.com"]
    descriptions = ["a comment about the music", "spam advertising a channel or website"]
    cache = FMCache(tmp_path / "fm.sqlite")
    sims, stats = zero_shot_similarity(texts, descriptions=descriptions, provider=minilm, cache=cache)
    assert sims.shape == (3, 2) and np.isfinite(sims).all() and (np.abs(sims) <= 1 + 1e-5).all()
    assert stats.computed == 5 and stats.total == 5  # texts and descriptions
    expected = minilm.embed(texts) @ minilm.embed(descriptions).T
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    assert sims[1].argmax() == 0 and sims[0].argmax() == 1  # the song comment is music, the channel one spam
    again, stats = zero_shot_similarity(texts, descriptions=descriptions, provider=minilm, cache=cache)
    assert stats.calls == 0 and stats.cached == 5
    np.testing.assert_array_equal(again, sims)
    with pytest.raises(FMError, match="non-empty description"):
        zero_shot_similarity(texts, descriptions=["music", "  "], provider=minilm, cache=None)


@pytest.mark.slow
def test_prompt_logprobs_with_gemma(gemma, tmp_path):
    frame = pl.DataFrame({"text": ["subscribe to my channel!", "love this song", "free iPhone http://win.com"]})
    cache = FMCache(tmp_path / "fm.sqlite")
    template = "Comment: {text}\nIs it spam? Answer:"
    logp, stats = prompt_logprobs(frame, template=template, answers=[["no"], ["yes"]], provider=gemma, cache=cache)
    assert logp.shape == (3, 2) and logp.dtype == np.float64
    assert np.isfinite(logp).all() and (logp < 0).all()
    assert (stats.computed, stats.cached) == (3, 0)
    again, stats = prompt_logprobs(frame, template=template, answers=[["no"], ["yes"]], provider=gemma, cache=cache)
    assert stats.calls == 0 and stats.cached == 3
    np.testing.assert_array_equal(again, logp)
    # a class with no answer words gets -inf; an all-empty mapping is refused
    partial, _ = prompt_logprobs(frame[:1], template=template, answers=[[], ["yes"]], provider=gemma, cache=None)
    assert partial[0, 0] == -np.inf and np.isfinite(partial[0, 1])
    with pytest.raises(FMError, match="answer mapping is empty"):
        prompt_logprobs(frame, template=template, answers=[[], []], provider=gemma, cache=None)


# --- errors --------------------------------------------------------------------------------------------


def test_unknown_model_path():
    with pytest.raises(FMError, match=r"unknown model path or id '/nope/model': no such file or folder"):
        get_provider("sentence-transformers", model="/nope/model")


def test_unknown_hugging_face_id_is_not_downloaded():
    with pytest.raises(FMError) as info:
        get_provider("sentence-transformers", model="org/not-a-model")
    message = str(info.value)
    assert "'org/not-a-model'" in message
    assert "not in the local Hugging Face cache" in message and "never downloads" in message


def test_a_gguf_that_is_not_one(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"JUNK" + bytes(range(256)) * 4)
    with pytest.raises(FMError, match=r"bad\.gguf is not a GGUF file \(it starts with b'JUNK', not b'GGUF'\)"):
        get_provider("transformers", model=str(bad))
    with pytest.raises(FMError, match=r"unknown model path or id .*missing\.gguf.*no such GGUF file"):
        get_provider("transformers", model=str(tmp_path / "missing.gguf"))


def test_unknown_provider_lists_known_ones():
    assert {"sentence-transformers", "transformers", "openai"} <= set(provider_kinds())
    with pytest.raises(FMError) as info:
        get_provider("llamafile")
    message = str(info.value)
    assert "unknown FM provider 'llamafile'" in message
    assert all(repr(kind) in message for kind in ("sentence-transformers", "transformers", "openai"))


def test_prompt_lf_with_a_class_outside_the_schema_fails_at_apply(monkeypatch):
    lf = prompt_lf("ask", template="Comment: {text}\nSpam:", answers={5: ["x"]})
    frame = pl.DataFrame({"id": ["a"], "text": ["hi"]})
    monkeypatch.setattr(type(lf), "provider", lambda self: pytest.fail("the model was asked"))
    with pytest.raises(LFError, match=r"LF 'ask': the answer mapping has class\(es\) \[5\] outside the schema's "
                                      r"classes 0\.\.1"):
        apply_lfs(frame, [lf], cardinality=2)  # refused before asking the model


def test_prompt_lf_malformed_answers_fail_when_built():
    with pytest.raises(LFError, match="answers must map class indices"):
        prompt_lf("ask", template="{text}", answers={"SPAM": ["yes"]})
    with pytest.raises(LFError, match=r"answers\[1\] must be a non-empty list of words"):
        prompt_lf("ask", template="{text}", answers={1: "yes"})


def test_fm_prompt_with_an_unknown_class_names_it(project):
    with pytest.raises(FMError, match=r"class\(es\) \['BOGUS'\] outside the schema's classes \['HAM', 'SPAM'\]"):
        fm_prompt(project, template="Comment: {text}\nSpam:", answers={"SPAM": ["yes"], "BOGUS": ["maybe"]})
    assert not project.store.fm_outputs_folder.exists()
