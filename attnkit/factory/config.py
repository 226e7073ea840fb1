"""AttentionConfig: one attention layer's options, validated, with the mechanisms' names and their defaults resolved."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from attnkit import linear as _linear
from attnkit import sparse as _sparse
from attnkit import validate
from attnkit.lora import PROJECTIONS

# The mechanisms, in the order of the chapters (the seventeen of chapters 01-10: "full" is the fused
# kernel, "math" the same attention through the path that materialises the N x N weights; then the
# linear attentions that forget, attnkit.forgetting), and the names that mean the same.
NAMES = ("full", "math", "flash", "gqa", "mqa", "mla", "local", "block_sparse", "strided", "longformer",
         "bigbird", "linear", "performer", "linformer", "nystrom", "cosformer", "lora",
         "retnet", "gated_linear", "gla", "deltanet", "gated_deltanet")
ALIASES = {"mha": "full", "sliding": "local", "sparse": "block_sparse", "retention": "retnet",
           "decay_linear": "retnet", "simple_gla": "gated_linear", "gdn": "gated_deltanet"}
NO_CAUSAL = ("linformer", "nystrom")  # no causal form (see the module docstring)
FORGETTING = ("retnet", "gated_linear", "gla", "deltanet", "gated_deltanet")  # attnkit.forgetting
CAUSAL_ONLY = FORGETTING  # recurrences: no non-causal form, causal defaults to True
SOFTMAX_DENSE = ("full", "math", "gqa", "mqa", "mla", "lora")  # dense softmax (costs.py: which of them hold N x N)
SPARSE = ("local", "block_sparse", "strided", "longformer", "bigbird")
LINEAR = ("linear", "performer", "linformer", "nystrom", "cosformer")
POSITIONAL = (None, "rope")


def canonical_name(name) -> str:
    """The canonical name of a mechanism (an alias resolved); ValueError listing the names."""
    if isinstance(name, str) and name in NAMES:
        return name
    if isinstance(name, str) and name in ALIASES:
        return ALIASES[name]
    raise ValueError(f"attention_type must be one of {list(NAMES)} (aliases {ALIASES}), got {name!r}")


def _positive_int(name: str, value, allow_none: bool = True, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    validate.int_at_least(name, value, minimum)  # the one size rule: TypeError for 2.5 or True, else ValueError


def _default_kv_heads(n_heads: int) -> int:
    """The largest divisor of n_heads that is at most n_heads // 4 (8 heads -> 2 groups), or 1."""
    return max([g for g in range(1, n_heads // 4 + 1) if n_heads % g == 0] or [1])


@dataclass(frozen=True)
class ResolvedOptions:
    """``AttentionConfig.resolved``: the size options with every default filled in (read only).

    Each field has the name of the option it resolves (``window_size``: ``cfg.window_size`` or
    128, ...); ``head_dim`` is d_model // n_heads.
    """

    head_dim: int
    num_kv_heads: int  # gqa: the option or the largest divisor of n_heads <= n_heads // 4; mqa 1; else n_heads
    window_size: int  # 128
    block_size: int  # 64
    stride: int  # 64
    kv_lora_rank: int  # 4 d_h
    qk_rope_head_dim: int  # d_h / 2, even, at least 2
    nb_features: int  # ceil(d_h ln d_h)
    num_landmarks: int  # 32
    proj_k: int  # 64


@dataclass
class AttentionConfig:
    """One attention layer, validated on construction (errors name the field, value, allowed values).

    Defaults: d_model 512, n_heads 8 (as the library examples of tests/library/data/seed_examples.md), dropout 0 (on the mechanism's output),
    causal False (True for CAUSAL_ONLY). Per mechanism (None = the default in brackets):
    gqa ``num_kv_heads`` [largest divisor of n_heads <= n_heads // 4]; mqa uses 1;
    local/longformer ``window_size`` [128]; block_sparse/bigbird ``block_size`` [64];
    strided ``stride`` [64]; longformer ``num_global_tokens`` [1, the first token];
    bigbird ``num_random_blocks`` [3], its random blocks drawn from ``seed``;
    performer ``nb_features`` [ceil(d_h ln d_h)]; nystrom ``num_landmarks`` [32];
    linformer ``proj_k`` [64] and ``max_seq_len`` (required); cosformer ``max_seq_len``
    (required when causal: the fixed M of cos(pi/2 (i - j) / M)); mla ``kv_lora_rank``
    [4 d_h] and ``qk_rope_head_dim`` [d_h / 2, even]; lora ``lora_r`` [8], ``lora_alpha`` [16],
    ``lora_targets`` [("q", "v"), as Hu et al. 2021, section 7.1]; linear ``feature_map`` ["elu+1"];
    ``positional`` None or "rope" (full only; mla has RoPE built in).
    The recurrences of ``attnkit.forgetting`` (``CAUSAL_ONLY``: retnet [fixed decay per head],
    gated_linear [a data-dependent scalar decay per head], gla [a decay per key channel], deltanet,
    gated_deltanet) have only a causal form: ``causal`` defaults to True for them (False for the
    others) and causal=False is refused; ``chunk_size`` [64] is the length of their chunks.
    Block options used by ``TransformerBlock``: ``mlp_ratio`` [4.0; 0 = no MLP], ``conv_kernel``
    [0 = no short convolution]. ``seed``: the weights are drawn from it, so one config gives one
    set of weights. An option another mechanism uses is ignored (window_size for full, ...).
    ``reason`` and ``memory_mb`` are filled in by ``AttentionSelector``; they are not compared.
    After construction ``attention_type`` holds the canonical name (an alias resolved), and
    ``resolved`` the size options with their defaults filled in (``resolved.window_size``, ...).
    """

    attention_type: str = "full"
    d_model: int = 512
    n_heads: int = 8
    dropout: float = 0.0
    causal: bool | None = None
    num_kv_heads: int | None = None
    window_size: int | None = None
    block_size: int | None = None
    stride: int | None = None
    num_global_tokens: int = 1
    num_random_blocks: int = 3
    nb_features: int | None = None
    num_landmarks: int | None = None
    proj_k: int | None = None
    max_seq_len: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple = ("q", "v")
    feature_map: str = "elu+1"
    chunk_size: int = 64
    positional: str | None = None
    mlp_ratio: float = 4.0
    conv_kernel: int = 0
    seed: int = 0
    reason: str | None = field(default=None, compare=False, repr=False)
    memory_mb: float | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        kind = canonical_name(self.attention_type)
        _positive_int("d_model", self.d_model, allow_none=False)
        _positive_int("n_heads", self.n_heads, allow_none=False)
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}; allowed n_heads: "
                             f"{divisors[:12]}{' ...' if len(divisors) > 12 else ''}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.causal is None:  # the default: False, True for the recurrences (CAUSAL_ONLY)
            self.causal = kind in CAUSAL_ONLY
        if not isinstance(self.causal, bool):
            raise TypeError(f"causal must be True or False, got {self.causal!r}")
        _positive_int("num_kv_heads", self.num_kv_heads)
        if self.num_kv_heads is not None and self.n_heads % self.num_kv_heads:
            allowed = [g for g in range(1, self.n_heads + 1) if self.n_heads % g == 0]
            raise ValueError(f"num_kv_heads={self.num_kv_heads} must divide n_heads={self.n_heads}; "
                             f"allowed: {allowed}")
        if kind == "mqa" and self.num_kv_heads not in (None, 1):
            raise ValueError(f"num_kv_heads must be None or 1 for mqa (one kv head), got {self.num_kv_heads}; "
                             "use attention_type='gqa' for more")
        for name in ("window_size", "block_size", "stride", "nb_features", "num_landmarks", "proj_k",
                     "max_seq_len", "kv_lora_rank"):
            _positive_int(name, getattr(self, name))
        _positive_int("qk_rope_head_dim", self.qk_rope_head_dim, minimum=2)
        if self.qk_rope_head_dim is not None and self.qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even (RoPE rotates pairs), got {self.qk_rope_head_dim}")
        _positive_int("num_global_tokens", self.num_global_tokens, allow_none=False, minimum=0)
        _positive_int("num_random_blocks", self.num_random_blocks, allow_none=False, minimum=0)
        _positive_int("lora_r", self.lora_r, allow_none=False)
        validate.real_number("lora_alpha", self.lora_alpha, 0.0, low_open=True)
        targets = tuple(self.lora_targets)  # ("q", "v") or "qv"
        if not targets or any(p not in PROJECTIONS for p in targets):
            raise ValueError(f"lora_targets must be a non-empty selection of {PROJECTIONS}, got {self.lora_targets!r}")
        self.lora_targets = tuple(dict.fromkeys(targets))
        if self.feature_map not in _linear.FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {sorted(_linear.FEATURE_MAPS)}, got {self.feature_map!r}")
        if self.positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL}, got {self.positional!r}")
        if self.positional == "rope" and kind not in ("full", "mla"):
            raise ValueError(f"positional='rope' is supported for attention_type 'full' (chapter 06's "
                             f"StandardAttentionWithRoPE) and 'mla' (built in), got attention_type={self.attention_type!r}")
        if self.positional == "rope" and kind == "full" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"positional='rope' needs an even head dim, got d_model // n_heads = "
                             f"{self.d_model // self.n_heads}")
        validate.real_number("mlp_ratio", self.mlp_ratio, 0.0)  # 0 = no MLP
        _positive_int("conv_kernel", self.conv_kernel, allow_none=False, minimum=0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if self.causal and kind in NO_CAUSAL:
            raise ValueError(f"causal=True is not possible for attention_type={self.attention_type!r} (its "
                             f"{'E, F projections mix every position' if kind == 'linformer' else 'landmarks average future tokens'}); "
                             f"causal mechanisms: {[n for n in NAMES if n not in NO_CAUSAL]}")
        if not self.causal and kind in CAUSAL_ONLY:
            raise ValueError(f"causal=False is not possible for attention_type={self.attention_type!r} (a "
                             "recurrence: each token reads a state written by the tokens before it); leave causal "
                             f"unset or True; mechanisms with a non-causal form: {[n for n in NAMES if n not in CAUSAL_ONLY]}")
        _positive_int("chunk_size", self.chunk_size, allow_none=False)
        window = self.resolved.window_size
        if kind in ("local", "longformer"):
            _sparse.check_window(window, self.causal, name="window_size")  # the one window rule
        self.attention_type = kind  # the canonical name: an alias ("mha", "sliding", "sparse") resolved

    @property
    def resolved(self) -> ResolvedOptions:
        """The size options with their documented defaults filled in, under the options' own
        names (read only): ``cfg.window_size`` may be None, ``cfg.resolved.window_size`` is the
        window the layer uses."""
        d = self.d_model // self.n_heads
        kind = self.attention_type
        kv = 1 if kind == "mqa" else (self.num_kv_heads or _default_kv_heads(self.n_heads)) if kind == "gqa" \
            else self.n_heads
        return ResolvedOptions(
            head_dim=d, num_kv_heads=kv, window_size=self.window_size or 128, block_size=self.block_size or 64,
            stride=self.stride or 64, kv_lora_rank=self.kv_lora_rank or 4 * d,
            qk_rope_head_dim=self.qk_rope_head_dim or max(2, (d // 2) // 2 * 2),
            nb_features=self.nb_features or max(1, math.ceil(d * math.log(max(d, 2)))),
            num_landmarks=self.num_landmarks or 32, proj_k=self.proj_k or 64)


def _pattern(cfg: AttentionConfig) -> dict:
    """SparseAttention's pattern and arguments for a sparse config."""
    k = cfg.attention_type
    if k == "local":
        return {"pattern": "sliding_window", "window": cfg.resolved.window_size}
    if k == "block_sparse":  # the layout is set per length in the forward (block-diagonal)
        return {"pattern": "block_sparse", "layout": torch.eye(1, dtype=torch.bool), "block": cfg.resolved.block_size}
    if k == "strided":
        return {"pattern": "strided", "stride": cfg.resolved.stride}
    if k == "longformer":
        return {"pattern": "longformer", "window": cfg.resolved.window_size, "global_idx": tuple(range(cfg.num_global_tokens))}
    return {"pattern": "bigbird", "block": cfg.resolved.block_size, "num_random_blocks": cfg.num_random_blocks, "seed": cfg.seed}
