"""FMCache (one SQLite file shared by processes) and run_cached (the one loop every FM output goes
through), including a real embedding run killed mid-way and resumed."""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from labelflow.fm.base import FMError, get_provider, run_cached
from labelflow.fm.cache import FMCache, output_key
from labelflow.fm.ops import embed_texts

REPO = Path(__file__).resolve().parents[2]

# --- FMCache -------------------------------------------------------------------------------------------


def test_put_get_round_trip_and_second_instance(tmp_path):
    path = tmp_path / "deep" / "folder" / "fm.sqlite"  # the folder is created
    cache = FMCache(path)
    assert len(cache) == 0 and cache.get_many(["nope"]) == {}
    items = {f"k{i}": bytes([i % 256]) * (i % 50) + b"\x00tail" for i in range(1200)}  # > one IN chunk of 500
    cache.put_many(items.items())
    assert len(cache) == 1200
    assert cache.get_many(list(items)) == items
    assert cache.get_many(["k3", "absent", "k7"]) == {"k3": items["k3"], "k7": items["k7"]}
    cache.put_many([("k3", b"new")])  # replace
    assert cache.get_many(["k3"]) == {"k3": b"new"} and len(cache) == 1200

    other = FMCache(path)  # a second instance on the same file sees what the first committed
    assert len(other) == 1200 and other.get_many(["k3", "k9"]) == {"k3": b"new", "k9": items["k9"]}
    other.put_many([("from-other", b"\xff")])
    assert cache.get_many(["from-other"]) == {"from-other": b"\xff"}
    cache.close()
    other.close()
    assert FMCache(path).get_many(["k1199"]) == {"k1199": items["k1199"]}  # reopened after close


N_BATCHES, BATCH = 40, 25


def _batch_keys(b: int) -> list[str]:
    return [f"batch{b}-row{r}" for r in range(BATCH)]


def _reader(path: str, queue) -> None:
    """Read the cache over and over while another process writes; report what went wrong, if anything."""
    try:
        cache = FMCache(path)
        last, seen_counts = -1, []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = len(cache)
            assert n >= last, f"the row count went down: {last} → {n}"
            for b in range(N_BATCHES):
                got = cache.get_many(_batch_keys(b))
                assert len(got) in (0, BATCH), f"batch {b} half visible: {len(got)} of {BATCH} rows"
                assert all(v == f"{k}!".encode() for k, v in got.items())
            last = n
            seen_counts.append(n)
            if n == N_BATCHES * BATCH:
                break
        queue.put(("ok", seen_counts))
    except Exception as exc:  # noqa: BLE001  (reported to the parent)
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_two_reader_processes_while_one_writes(tmp_path):
    path = tmp_path / "fm.sqlite"
    writer = FMCache(path)
    writer.put_many((k, f"{k}!".encode()) for k in _batch_keys(0))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(path), queue)) for _ in range(2)]
    for proc in readers:
        proc.start()
    for b in range(1, N_BATCHES):
        writer.put_many((k, f"{k}!".encode()) for k in _batch_keys(b))
        time.sleep(0.005)
    results = [queue.get(timeout=90) for _ in readers]
    for proc in readers:
        proc.join(timeout=30)
    assert [status for status, _ in results] == ["ok", "ok"], results
    for _, counts in results:
        assert counts[-1] == N_BATCHES * BATCH  # every committed row became visible
        assert all(c % BATCH == 0 for c in counts)  # only whole batches, never part of one
    assert all(proc.exitcode == 0 for proc in readers)


def test_output_key_changes_with_each_part():
    base = dict(identity="m@1", task="score", template="T: {text}", params={"answers": [["no"], ["yes"]]}, text="hi")
    key = output_key(**base)
    assert key == output_key(**{**base, "params": {"answers": [["no"], ["yes"]]}})  # equal content, equal key
    assert len(key) == 64 and int(key, 16) >= 0
    changed = {"identity": "m@2", "task": "generate", "template": "U: {text}",
               "params": {"answers": [["yes"], ["no"]]}, "text": "hi "}
    keys = {name: output_key(**{**base, name: value}) for name, value in changed.items()}
    assert all(k != key for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys)
    # params are ordered canonically: the same dict written in another order is the same key
    assert output_key("m", "t", "", {"a": 1, "b": 2}, "x") == output_key("m", "t", "", {"b": 2, "a": 1}, "x")
    assert output_key("m", "t", "", {"max_tokens": 8}, "x") != output_key("m", "t", "", {"max_tokens": 9}, "x")


# --- run_cached ----------------------------------------------------------------------------------------


class Recorder:
    """A compute callback that records each batch it is given and returns each input's bytes."""

    def __init__(self, wrong_count: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.wrong_count = wrong_count

    def __call__(self, batch: list[str]) -> list[bytes]:
        self.batches.append(list(batch))
        out = [t.encode() + b"#" for t in batch]
        return out[:-1] if self.wrong_count else out


def run(inputs, cache, compute, **kw):
    kw.setdefault("batch_size", 3)
    return run_cached(inputs, identity="fake@1", task="echo", compute=compute, cache=cache, desc="echo", **kw)


def test_run_cached_computes_only_missing_sorted_by_length_once_per_duplicate(tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    first = Recorder()
    out, stats = run(["ccc", "a", "bb"], cache, first)
    assert out == [b"ccc#", b"a#", b"bb#"]
    assert (stats.total, stats.cached, stats.computed, stats.calls, stats.pending) == (3, 0, 3, 1, 0)
    assert first.batches == [["a", "bb", "ccc"]]

    inputs = ["dddddd", "a", "eeeeeeeeee", "ff", "ccc", "ff", "gggg", "dddddd", "hhhhhhh", "i", "bb"]
    second = Recorder()
    out, stats = run(inputs, cache, second)
    assert out == [t.encode() + b"#" for t in inputs]
    computed = [t for b in second.batches for t in b]
    assert sorted(computed) == sorted({"dddddd", "eeeeeeeeee", "ff", "gggg", "hhhhhhh", "i"})  # missing, once each
    assert [len(t) for t in computed] == sorted(len(t) for t in computed)  # ascending length across batches
    assert all(len(b) <= 3 for b in second.batches) and len(second.batches) == 2
    assert (stats.total, stats.cached, stats.computed, stats.calls) == (11, 3, 6, 2)  # cached: a, ccc, bb

    third = Recorder()
    out, stats = run(inputs, cache, third)
    assert third.batches == [] and stats.cached == 11 and stats.computed == stats.calls == 0
    assert len(cache) == 9


def test_run_cached_without_cache_and_dry_run(tmp_path):
    rec = Recorder()
    out, stats = run(["x", "x", "yy"], None, rec)
    assert out == [b"x#", b"x#", b"yy#"] and rec.batches == [["x", "yy"]] and stats.computed == 2

    cache = FMCache(tmp_path / "fm.sqlite")
    run(["a"], cache, Recorder())
    dry = Recorder()
    out, stats = run(["a", "b", "b", "cc", "ddd", "a"], cache, dry, dry_run=True)
    assert dry.batches == []  # nothing computed ...
    assert out == [b"a#", None, None, None, None, b"a#"]
    assert (stats.total, stats.cached, stats.computed, stats.calls, stats.pending) == (6, 2, 0, 0, 3)
    assert len(cache) == 1  # ... nor stored


def test_run_cached_wrong_output_count_is_an_fm_error(tmp_path):
    cache = FMCache(tmp_path / "fm.sqlite")
    with pytest.raises(FMError, match=r"echo: the model returned 2 outputs for 3 inputs"):
        run(["a", "bb", "ccc", "dddd"], cache, Recorder(wrong_count=True))
    assert len(cache) == 0  # the malformed batch was not stored


# --- an interrupted real run resumes, losing no finished row -----------------------------------------------

CHILD = """
import json, sys
from labelflow.fm import FMCache, get_provider
from labelflow.fm.ops import embed_texts
texts = json.load(open(sys.argv[1], encoding="utf-8"))
embed_texts(texts, provider=get_provider("sentence-transformers", batch_size=8), cache=FMCache(sys.argv[2]))
print("finished")
"""


@pytest.mark.slow
def test_killed_embedding_run_resumes_without_losing_a_finished_row(tmp_path, comments, kill_when, assert_intact):
    texts = comments(200, path=None, max_chars=60)["text"].to_list()
    assert len(set(texts)) == 200
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    path = tmp_path / "fm.sqlite"
    watcher = FMCache(path)
    kill_when([sys.executable, "-c", CHILD, str(tmp_path / "texts.json"), str(path)],
              lambda: len(watcher) >= 3 * 8, cwd=REPO)  # at least three batches committed
    committed = len(watcher)
    assert 24 <= committed < 200
    assert committed % 8 == 0  # whole batches only: each batch is one transaction
    assert_intact(path)

    provider = get_provider("sentence-transformers", batch_size=8)
    emb, stats = embed_texts(texts, provider=provider, cache=FMCache(path))
    assert stats.cached == committed  # every row finished before the kill is kept ...
    assert stats.computed == 200 - committed  # ... and only the rest is computed
    assert stats.calls == math.ceil((200 - committed) / 8)
    assert len(FMCache(path)) == 200

    fresh, fresh_stats = embed_texts(texts, provider=provider, cache=None)  # an uninterrupted run
    assert fresh_stats.computed == 200
    assert emb.shape == (200, 384) and np.isfinite(emb).all()
    np.testing.assert_allclose(emb, fresh, atol=1e-5)


def test_prompts_cut_at_another_length_are_other_cache_entries():
    """The transformers provider truncates prompts to ``max_length`` tokens, so its outputs depend on it: the
    provider identity (part of every cache key) names it."""
    from labelflow.fm import get_provider

    short, default = get_provider("transformers", max_length=96), get_provider("transformers")
    assert short.identity != default.identity and short.identity.endswith(":max_length=96")
    assert default.identity == get_provider("transformers", max_length=512).identity
