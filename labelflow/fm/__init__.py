"""Foundation-model outputs (embeddings, prompt scores, zero-shot scores) and LFs built on them."""

from labelflow.fm import local as _local  # noqa: F401  (registers the local providers)
from labelflow.fm import openai_provider as _openai  # noqa: F401  (registers "openai")
from labelflow.fm.base import FMError, Provider, RunStats, get_provider, provider_kinds, register_provider
from labelflow.fm.cache import FMCache
from labelflow.fm.lfs import knn_lf, prompt_lf, zero_shot_lf

__all__ = [
    "FMCache",
    "FMError",
    "LFEstimate",
    "Provider",
    "RunStats",
    "estimate_lf",
    "estimate_suite",
    "get_provider",
    "knn_lf",
    "prompt_lf",
    "provider_kinds",
    "register_provider",
    "zero_shot_lf",
]


def __getattr__(name: str):
    """``estimate_lf``, ``estimate_suite`` and ``LFEstimate`` load :mod:`labelflow.fm.estimate` on first use: it
    applies LF suites over a project's rows, a layer above the providers and LFs this package holds."""
    if name in ("LFEstimate", "estimate_lf", "estimate_suite"):
        from labelflow.fm import estimate

        return getattr(estimate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
