"""FM models in a pool of Ray actors: each actor loads the model once, batches go to the actors in turn.

:meth:`labelflow.distributed.RayEngine.provider` hands an FM LF an :class:`ActorPoolProvider`,
so its model runs on the cluster while its outputs go through the same FM cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from labelflow.errors import EngineError, LabelflowError
from labelflow.fm.base import Provider, get_provider


class _FMActor:
    """Holds one provider (model loaded once) on a Ray worker."""

    def __init__(self, kind: str, config: dict[str, Any]) -> None:
        self.provider = get_provider(kind, **config)

    def run(self, method: str, inputs: list[str], arg: Any) -> Any:
        if method == "embed":
            return self.provider.embed(inputs)
        if method == "score":
            return self.provider.score(inputs, arg)
        return self.provider.generate(inputs, max_tokens=arg)


class ActorPoolProvider(Provider):
    """A provider whose model runs in a pool of Ray actors; same identity (so cache keys) as the model's own.

    Parameters
    ----------
    kind, config
        The provider the actors hold (:func:`~labelflow.fm.base.get_provider`).
    connect
        Returns the ``ray`` module connected to the cluster (:meth:`labelflow.distributed.RayEngine.connect`).
    actors
        Actors in the pool; ``None``: one per GPU of the cluster (unless ``config`` asks for the CPU), else one per CPU.
    max_retries
        Times an actor is restarted, and a batch retried, after its worker dies.
    """

    kind = "ray"

    def __init__(self, kind: str, config: dict[str, Any], *, connect: Callable[[], Any], actors: int | None,
                 max_retries: int) -> None:
        self.local = get_provider(kind, **config)  # identity and batch size only: the model loads on the actors
        self.spec = (kind, config)
        self.connect, self.max_retries = connect, max_retries
        self._actors: list[Any] = []
        ray = connect()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0)) if config.get("device", "auto") != "cpu" else 0
        self.actors = actors or gpus or max(1, int(resources.get("CPU", 1)))
        self.options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        self.batch_size = self.local.batch_size * self.actors * 4

    @property
    def identity(self) -> str:
        return self.local.identity

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.concatenate(self._map("embed", texts, None))

    def score(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> np.ndarray:
        return np.concatenate(self._map("score", prompts, [list(a) for a in answers]))

    def generate(self, prompts: Sequence[str], *, max_tokens: int) -> list[str]:
        return [text for part in self._map("generate", prompts, max_tokens) for text in part]

    def _map(self, method: str, inputs: Sequence[str], arg: Any) -> list[Any]:
        """``method`` on consecutive batches of ``inputs`` across the actors; results in input order."""
        ray = self.connect()
        from ray.util import ActorPool

        if not self._actors:
            actor = ray.remote(_FMActor).options(max_restarts=self.max_retries,
                                                 max_task_retries=self.max_retries, **self.options)
            self._actors = [actor.remote(*self.spec) for _ in range(self.actors)]
        size = self.local.batch_size
        parts = [list(inputs[i:i + size]) for i in range(0, len(inputs), size)]
        try:
            return list(ActorPool(self._actors).map(lambda a, part: a.run.remote(method, part, arg), parts))
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, LabelflowError):
                raise cause from None
            raise EngineError(f"FM {method} on Ray failed after up to {self.max_retries} retries: "
                              f"{type(exc).__name__}: {exc}") from exc
