"""A provider for any server that speaks the OpenAI HTTP API.

That covers OpenAI itself and local servers such as llama.cpp
(``python -m llama_cpp.server``), vLLM, Ollama and ``transformers serve``. It
scores prompts from the log-probabilities of the next token and generates greedy
text; it does not embed. Scoring needs a server that returns log-probabilities:
``transformers serve`` (transformers 5.x) ignores the request for them, so with it
only :meth:`OpenAIProvider.generate` works, and ``score`` fails saying so.

Retries
    The official ``openai`` client retries rate limits (429), server errors (5xx),
    timeouts and dropped connections itself, with exponential backoff and jitter;
    ``max_retries`` and ``timeout`` are handed to it. Only what is left after the
    last retry reaches labelflow, as an :class:`~labelflow.fm.base.FMError`.

API key
    The key is read only from the environment variable named by ``api_key_env``.
    It is never stored in ``identity`` (and so never in the cache), the repr or an
    error message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import numpy as np

from labelflow.errors import require
from labelflow.fm.base import FMError, Provider, register_provider
from labelflow.validation import check_choice, check_int, check_number

Api = Literal["completions", "chat"]
"""The OpenAI endpoint a model is asked through: ``/v1/completions`` or ``/v1/chat/completions``."""

OPENAI_URL = "https://api.openai.com/v1"
#: Sent as the key to a server given by ``base_url`` when ``api_key_env`` is unset;
#: local servers accept any key.
PLACEHOLDER_KEY = "not-needed"
_MALFORMED = (AttributeError, KeyError, TypeError, IndexError, ValueError)

T = TypeVar("T")


def class_logprobs(top: Sequence[tuple[str, float]], answers: Sequence[Sequence[str]]) -> np.ndarray:
    """Log-probability of each class from the top next tokens of one prompt.

    Class ``c`` gets the log-sum-exp of the log-probabilities of the tokens whose
    text, stripped and lower-cased, is one of ``answers[c]`` (lower-cased). A class
    none of whose words is among the top tokens gets a floor: the smallest top
    log-probability minus ``log(2)``. Its true probability is below every listed
    token's, so the floor stays under every class that was seen.

    Parameters
    ----------
    top
        ``[t]`` ``(token text, log-probability)`` pairs, ``t >= 1``.
    answers
        ``[k]`` lists of answer words.

    Returns
    -------
    numpy.ndarray
        ``[k]`` float64 log-probabilities.

    Examples
    --------
    >>> class_logprobs([(" Yes", -0.1), ("no", -2.5), (" NO", -3.0)], [["no"], ["yes"]]).round(3)
    array([-2.026, -0.1  ])
    >>> class_logprobs([(" Yes", -0.1), ("maybe", -2.5)], [["no"], ["yes"]]).round(3)
    array([-3.193, -0.1  ])
    """
    if not top:
        raise ValueError("no top log-probabilities in the response")
    floor = min(logprob for _, logprob in top) - math.log(2)
    out = np.empty(len(answers), dtype=np.float64)
    for c, words in enumerate(answers):
        wanted = {word.lower() for word in words}
        hits = [logprob for token, logprob in top if token.strip().lower() in wanted]
        out[c] = np.logaddexp.reduce(hits) if hits else floor
    return out


@register_provider("openai")
class OpenAIProvider(Provider):
    """A model served over the OpenAI API (OpenAI, llama.cpp, vLLM, Ollama, ...).

    Parameters
    ----------
    model
        The model name the server knows (for llama.cpp, the id that ``GET /v1/models``
        lists).
    base_url
        The server's API root, for example ``"http://127.0.0.1:8000/v1"``;
        ``None`` is OpenAI.
    api_key_env
        The environment variable holding the API key. When it is unset, a server
        given by ``base_url`` gets a placeholder key (local servers need none), and
        OpenAI (``base_url=None``) is an error.
    api
        ``"completions"`` sends the prompt as raw text (``/v1/completions``);
        ``"chat"`` sends it as one user message (``/v1/chat/completions``).
    timeout
        Seconds one HTTP request may take.
    max_retries
        Retries of a failed request (429, 5xx, timeout, connection error), with
        exponential backoff, done by the ``openai`` client.
    concurrency
        Requests in flight at once.
    top_logprobs
        How many top next tokens :meth:`score` asks for. OpenAI allows at most 5
        with ``api="completions"`` and 20 with ``api="chat"``.
    batch_size
        Prompts per :func:`~labelflow.fm.base.run_cached` batch.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        api: Api = "completions",
        timeout: float = 60.0,
        max_retries: int = 3,
        concurrency: int = 4,
        top_logprobs: int = 20,
        batch_size: int = 16,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise FMError(f"model must be a non-empty string; got {model!r}")
        if base_url is not None and (not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))):
            raise FMError(f"base_url must be None or an http:// or https:// URL; got {base_url!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise FMError(f"api_key_env must name an environment variable; got {api_key_env!r}")
        check_choice("api", api, Api, error=FMError)
        check_number("timeout", timeout, above=0, unit="seconds", error=FMError)
        check_int("max_retries", max_retries, minimum=0, error=FMError)
        check_int("concurrency", concurrency, minimum=1, error=FMError)
        check_int("top_logprobs", top_logprobs, minimum=1, error=FMError)
        check_int("batch_size", batch_size, minimum=1, error=FMError)

        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise FMError(f"the OpenAI API key is missing: set the environment variable {api_key_env}")
            key = PLACEHOLDER_KEY
        openai = require("openai", "fm")
        self.model = model
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.api = api
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.top_logprobs = top_logprobs
        self.batch_size = batch_size
        self._openai = openai
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                     max_retries=max_retries)

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url}:{self.model}:{self.api}"

    def __repr__(self) -> str:
        return f"OpenAIProvider(model={self.model!r}, base_url={self.base_url!r}, api={self.api!r})"

    def score(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> np.ndarray:
        """Log-probability of each class's answer words as the next token.

        One request per prompt (``max_tokens=1``, ``temperature=0``, the top
        ``top_logprobs`` next tokens); see :func:`class_logprobs` for how the top
        tokens become class log-probabilities, including the floor given to a
        class whose words are not among them. A server that answers without
        log-probabilities (``transformers serve`` ignores the request for them)
        is an :class:`~labelflow.fm.base.FMError` saying so.

        Parameters
        ----------
        prompts
            ``[n]`` rendered prompts.
        answers
            ``[k]`` non-empty lists of the words that mean each class.

        Returns
        -------
        numpy.ndarray
            ``[n, k]`` float64 log-probabilities.
        """
        if not answers or any(isinstance(words, str) or not words for words in answers):
            raise FMError(f"answers must be a non-empty list of non-empty lists of words; got {answers!r}")
        if not prompts:
            return np.empty((0, len(answers)), dtype=np.float64)

        def one(prompt: str) -> np.ndarray:
            return self._call(
                lambda: self._top_tokens(prompt),
                lambda response: class_logprobs(self._parse_top(response), answers),
            )

        return np.stack(self._map(one, prompts))

    def generate(self, prompts: Sequence[str], *, max_tokens: int) -> list[str]:
        """Greedy (``temperature=0``) continuations.

        Parameters
        ----------
        prompts
            ``[n]`` rendered prompts.
        max_tokens
            The longest continuation, in tokens.

        Returns
        -------
        list of str
            ``[n]`` generated texts.
        """
        check_int("max_tokens", max_tokens, minimum=1, error=FMError)

        def one(prompt: str) -> str:
            return self._call(lambda: self._request(prompt, max_tokens=max_tokens), self._text)

        return self._map(one, prompts)

    def _map(self, fn: Callable[[str], T], prompts: Sequence[str]) -> list[T]:
        """``fn`` over ``prompts`` on ``concurrency`` threads, in order; the first error cancels the rest."""
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts)) or 1)
        try:
            return list(pool.map(fn, prompts))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _request(self, prompt: str, *, max_tokens: int, **logprobs: Any) -> Any:
        """One greedy request to the configured API; returns the client's response object."""
        if self.api == "chat":
            return self._client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens, temperature=0, **logprobs,
            )
        return self._client.completions.create(
            model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0, **logprobs,
        )

    def _top_tokens(self, prompt: str) -> Any:
        if self.api == "chat":
            return self._request(prompt, max_tokens=1, logprobs=True, top_logprobs=self.top_logprobs)
        return self._request(prompt, max_tokens=1, logprobs=self.top_logprobs)

    def _call(self, request: Callable[[], Any], parse: Callable[[Any], T]) -> T:
        """Send ``request`` and ``parse`` its response, turning every failure into an :class:`FMError`."""
        openai = self._openai
        where = f"the server at {self.base_url} (model {self.model!r})"
        try:
            response = request()
        except openai.APITimeoutError as exc:
            raise FMError(f"{where} did not answer within {self.timeout:g} s "
                          f"(after {self.max_retries} retries)") from self._cause(exc)
        except openai.APIConnectionError as exc:
            raise FMError(f"cannot reach {where}: is the server running? "
                          f"({self._redact(exc)}, after {self.max_retries} retries)") from self._cause(exc)
        except openai.AuthenticationError as exc:  # the server's message may quote the key: left out
            raise FMError(f"{where} rejected the API key (HTTP 401): check the environment variable "
                          f"{self.api_key_env}") from self._cause(exc)
        except openai.NotFoundError as exc:
            raise FMError(f"{where} does not know model {self.model!r} or the endpoint "
                          f"(HTTP 404: {self._redact(exc)})") from self._cause(exc)
        except openai.APIStatusError as exc:
            raise FMError(f"{where} answered HTTP {exc.status_code}: {self._redact(exc)}") from self._cause(exc)
        except ValueError as exc:  # a body that is not JSON (json.JSONDecodeError, UnicodeDecodeError)
            raise FMError(f"{where} sent a malformed response ({self._redact(exc)})") from self._cause(exc)
        try:
            return parse(response)
        except FMError as exc:  # the response is well formed but lacks what the task needs
            raise FMError(f"{where} {exc}") from None
        except _MALFORMED as exc:  # JSON without the expected choices / logprobs fields
            raise FMError(f"{where} sent a malformed response ({self._redact(exc)})") from self._cause(exc)

    def _parse_top(self, response: Any) -> list[tuple[str, float]]:
        logprobs = response.choices[0].logprobs
        if logprobs is None:  # the server ignored the request for them (``transformers serve`` does)
            asked = ("logprobs=True, top_logprobs" if self.api == "chat" else "logprobs") + f"={self.top_logprobs}"
            raise FMError(f"sent no log-probabilities ({asked} was asked): score needs a server that returns the "
                          f"top next-token log-probabilities, such as OpenAI, llama.cpp or vLLM; generate works "
                          f"without them")
        if self.api == "chat":
            return [(str(entry.token), float(entry.logprob)) for entry in logprobs.content[0].top_logprobs]
        return [(str(token), float(logprob)) for token, logprob in logprobs.top_logprobs[0].items()]

    def _text(self, response: Any) -> str:
        choice = response.choices[0]
        text = choice.message.content if self.api == "chat" else choice.text
        if not isinstance(text, str):
            raise TypeError(f"the generated text is {type(text).__name__}, not str")
        return text

    def _cause(self, exc: BaseException) -> BaseException | None:
        """``exc`` to chain as the cause, or ``None`` where its message quotes the API key."""
        return None if self._client.api_key in str(exc) else exc

    def _redact(self, exc: BaseException) -> str:
        """``exc`` as ``"Type: message"``, cut to 300 characters, with the API key masked."""
        text = f"{type(exc).__name__}: {exc}".replace(self._client.api_key, "***")
        return text[:300]
