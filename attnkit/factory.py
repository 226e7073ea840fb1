"""Choosing an attention (chapter 11): one config, one factory, a selector, a profiler, a tiny LM.

Every mechanism of chapters 04-10 behind one interface:

    cfg  = AttentionConfig(attention_type="local", d_model=512, n_heads=8, window_size=128)
    attn = AttentionFactory.create_attention(cfg)     # nn.Module
    out  = attn(x, attn_mask=None, key_padding_mask=None)   # x (B, N, d_model) -> (B, N, d_model)

The factory builds the chapter's own module and adapts its signature; it computes nothing itself
(except ``flash``, which puts chapter 07's ``flash_attention`` between chapter 04's projections,
and ``lora``, which puts chapter 10's ``LoRALinear`` on the query and value projections of
chapter 04's attention). Names (``AttentionFactory.available()``), with aliases in brackets:

    full (mha)          attnkit.mha.MultiHeadAttention; positional="rope": attnkit.rope.StandardAttentionWithRoPE
    flash               MultiHeadAttention's projections + attnkit.flash.flash_attention (no masks)
    gqa, mqa            attnkit.gqa.GroupedQueryAttention (num_kv_heads groups; mqa: 1)
    mla                 attnkit.gqa.MultiHeadLatentAttention (its RoPE key is built in)
    local (sliding)     attnkit.sparse.SparseAttention, pattern "sliding_window", window = window_size
    block_sparse (sparse)  SparseAttention, pattern "block_sparse" with the block-diagonal layout
    strided             SparseAttention, pattern "strided" (stride)
    longformer          SparseAttention, pattern "longformer" (window_size, the first num_global_tokens global)
    bigbird             SparseAttention, pattern "bigbird" (block_size, num_random_blocks, seed)
    linear, performer, linformer, nystrom, cosformer    attnkit.linear.METHODS[name]
    lora                MultiHeadAttention with LoRALinear(r=lora_r, lora_alpha) on lora_targets

Masks, for every mechanism: ``attn_mask`` bool (True = may attend) or float (added), (N, N) or
broadcastable to (B, H, N, N); ``key_padding_mask`` (B, N) bool, **True = a real token** (attnkit's
convention; the factory inverts it for ``SparseAttention``, which takes nn.MultiheadAttention's).
A mechanism that cannot take a mask says so (flash takes none; the linear family no attn_mask;
the sparse family only bool attn_masks).

``window_size`` means what chapter 08's ``sliding_window_mask`` means: not causal, the keys
{j : |i - j| <= window // 2} (window must be even); causal, the ``window`` most recent keys
{j : i - window < j <= i}.

``causal=True`` makes every mechanism causal through its chapter module (``is_causal`` of the
softmax and sparse modules, ``causal=`` of the linear ones). Linformer (its E, F projections mix
every position into each projected key) and Nystromformer (segment-mean landmarks average future
tokens) have no causal form: ``causal=True`` is a ValueError for them.

``dropout`` is applied to the output of every mechanism (``nn.Dropout``, as nanoGPT's
``resid_dropout``); the chapter modules' own attention-weight dropout is left at 0, so that every
mechanism equals its chapter module in eval mode and all of them are regularised alike.

Memory is counted in MB = 2**20 bytes throughout (what ``torch.cuda.max_memory_allocated() / 2**20``
reports).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field

import torch
from torch import nn

from attnkit import flash as _flash
from attnkit import gqa as _gqa
from attnkit import linear as _linear
from attnkit import mha as _mha
from attnkit import sparse as _sparse
from attnkit.i18n import register, t
from attnkit.lora import PROJECTIONS, LoRALinear

__all__ = [
    "AttentionConfig", "AttentionFactory", "AttentionSelector", "AttentionProfiler",
    "TransformerBlock", "TinyLM", "NAMES", "ALIASES", "SCENARIOS", "canonical_name", "param_count",
    "memory_breakdown", "sparse_pairs", "ShortConv", "Mixer", "LoRAMHA",
]

# The sixteen mechanisms, in the order of the chapters, and the names that mean the same.
NAMES = ("full", "flash", "gqa", "mqa", "mla", "local", "block_sparse", "strided", "longformer",
         "bigbird", "linear", "performer", "linformer", "nystrom", "cosformer", "lora")
ALIASES = {"mha": "full", "sliding": "local", "sparse": "block_sparse"}
NO_CAUSAL = ("linformer", "nystrom")  # no causal form (see the module docstring)
SOFTMAX_DENSE = ("full", "gqa", "mqa", "mla", "lora")  # materialise an N x N score matrix per head
SPARSE = ("local", "block_sparse", "strided", "longformer", "bigbird")
LINEAR = ("linear", "performer", "linformer", "nystrom", "cosformer")
POSITIONAL = (None, "rope")
MB = 2 ** 20

register({
    "factory.reason": {
        "en": "{scenario} at N = {seq_len}: {choice} needs {memory:.1f} MB by the formula (full attention "
              "{full:.1f} MB), within the budget of {constraint:.1f} MB. Rule: {rule}",
        "zh": "{scenario}，N = {seq_len}：按公式 {choice} 需要 {memory:.1f} MB（全注意力 {full:.1f} MB），"
              "在 {constraint:.1f} MB 的预算之内。规则：{rule}",
    },
    "factory.rule.training": {
        "en": "the first that fits, exact attention first (full, flash), then sparse, then linear.",
        "zh": "按顺序取第一个放得下的：先精确注意力（full、flash），再稀疏，最后线性。",
    },
    "factory.rule.inference": {
        "en": "the least compressed KV cache that fits: full, gqa, mla, mqa, then a window, then a "
              "linear state.",
        "zh": "取放得下的、KV 缓存压缩最少的：full、gqa、mla、mqa，然后是窗口，最后是线性注意力的状态。",
    },
    "factory.rule.long_context": {
        "en": "exact if it fits (flash, O(N) memory), then sparse patterns with global tokens, then "
              "windows, then linear.",
        "zh": "放得下就用精确注意力（flash，内存 O(N)），其次是带全局词元的稀疏模式，再次是窗口，最后是线性。",
    },
    "factory.rule.memory_limited": {
        "en": "the least memory of all mechanisms.",
        "zh": "所有机制中内存最少的。",
    },
})


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
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        want = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {want}, got {value!r}")


def _default_kv_heads(n_heads: int) -> int:
    """The largest divisor of n_heads that is at most n_heads // 4 (8 heads -> 2 groups), or 1."""
    return max([g for g in range(1, n_heads // 4 + 1) if n_heads % g == 0] or [1])


@dataclass
class AttentionConfig:
    """One attention layer, validated on construction (errors name the field, value, allowed values).

    Defaults: d_model 512, n_heads 8 (the seed's examples), dropout 0 (on the mechanism's output),
    causal False. Per mechanism (None = the default in brackets):
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
    Block options used by ``TransformerBlock``: ``mlp_ratio`` [4.0; 0 = no MLP], ``conv_kernel``
    [0 = no short convolution]. ``seed``: the weights are drawn from it, so one config gives one
    set of weights. An option another mechanism uses is ignored (window_size for full, ...).
    ``reason`` and ``memory_mb`` are filled in by ``AttentionSelector``; they are not compared.
    """

    attention_type: str = "full"
    d_model: int = 512
    n_heads: int = 8
    dropout: float = 0.0
    causal: bool = False
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
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be a number > 0, got {self.lora_alpha!r}")
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
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be a number >= 0 (0 = no MLP), got {self.mlp_ratio!r}")
        _positive_int("conv_kernel", self.conv_kernel, allow_none=False, minimum=0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if self.causal and kind in NO_CAUSAL:
            raise ValueError(f"causal=True is not possible for attention_type={self.attention_type!r} (its "
                             f"{'E, F projections mix every position' if kind == 'linformer' else 'landmarks average future tokens'}); "
                             f"causal mechanisms: {[n for n in NAMES if n not in NO_CAUSAL]}")
        if kind in ("local", "longformer") and not self.causal and self.window % 2:
            raise ValueError(f"window_size={self.window} must be even when causal=False (sliding_window_mask "
                             "keeps window // 2 keys on each side)")
        if kind == "mla" and self.rope_dim > 0 and self.rope_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even, got {self.rope_dim}")

    # ---- resolved options (the documented defaults) -----------------------------------------

    @property
    def kind(self) -> str:
        """The canonical mechanism name (aliases resolved)."""
        return canonical_name(self.attention_type)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        if self.kind == "mqa":
            return 1
        if self.kind == "gqa":
            return self.num_kv_heads or _default_kv_heads(self.n_heads)
        return self.n_heads

    @property
    def window(self) -> int:
        return self.window_size or 128

    @property
    def block(self) -> int:
        return self.block_size or 64

    @property
    def stride_len(self) -> int:
        return self.stride or 64

    @property
    def latent_rank(self) -> int:
        return self.kv_lora_rank or 4 * self.head_dim

    @property
    def rope_dim(self) -> int:
        return self.qk_rope_head_dim or max(2, (self.head_dim // 2) // 2 * 2)

    @property
    def features(self) -> int:
        d = self.head_dim
        return self.nb_features or max(1, math.ceil(d * math.log(max(d, 2))))

    @property
    def landmarks(self) -> int:
        return self.num_landmarks or 32

    @property
    def linformer_k(self) -> int:
        return self.proj_k or 64


# -------------------------------------------------------------------------------------------------
# The wrappers: forward(x, attn_mask=None, key_padding_mask=None) -> (B, N, d_model)
# -------------------------------------------------------------------------------------------------


def _check_x(x, d_model: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (batch, seq, {d_model}), got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (batch, seq, d_model={d_model})")


def _check_kpm(key_padding_mask, x) -> None:
    if key_padding_mask is None:
        return
    if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be a bool tensor (True = real token), got "
                        f"{getattr(key_padding_mask, 'dtype', type(key_padding_mask).__name__)}")
    if tuple(key_padding_mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"key_padding_mask has shape {tuple(key_padding_mask.shape)}, expected (B, N) = "
                         f"{tuple(x.shape[:2])}")


class Mixer(nn.Module):
    """The factory's module: the chapter module ``inner`` behind one forward, then output dropout.

    ``forward(x (B, N, d_model), attn_mask=None, key_padding_mask=None) -> (B, N, d_model)``.
    """

    def __init__(self, config: AttentionConfig, inner: nn.Module):
        super().__init__()
        self.config = config
        self.inner = inner
        self.dropout = nn.Dropout(config.dropout)

    def extra_repr(self) -> str:
        return f"attention_type={self.config.kind!r}, causal={self.config.causal}"

    def run(self, x, attn_mask, key_padding_mask):  # (B, N, E) -> (B, N, E)
        raise NotImplementedError

    def forward(self, x, attn_mask=None, key_padding_mask=None):
        _check_x(x, self.config.d_model)
        _check_kpm(key_padding_mask, x)
        return self.dropout(self.run(x, attn_mask, key_padding_mask))


class _MHA(Mixer):  # full, and lora through LoRAMHA below
    def run(self, x, attn_mask, kpm):
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=self.config.causal)[0]


class _RoPEMHA(Mixer):  # full with positional="rope": chapter 06's module, tables grown on demand
    def run(self, x, attn_mask, kpm):
        from attnkit.rope import generate_rope_embeddings

        B, N, _ = x.shape
        mask = _mha.build_attention_mask(B, self.config.n_heads, N, N, attn_mask, kpm,
                                         is_causal=self.config.causal, dtype=x.dtype, device=x.device)
        rope = generate_rope_embeddings(N, self.config.head_dim, device=x.device)
        return self.inner(x, x, x, rope, attn_mask=mask)


class _Flash(Mixer):  # chapter 04's projections around chapter 07's tiled attention
    def run(self, x, attn_mask, kpm):
        if attn_mask is not None or kpm is not None:
            raise ValueError("flash takes no attn_mask or key_padding_mask (attnkit.flash.flash_attention has "
                             "only is_causal); use attention_type='full' for masks, expected None")
        m = self.inner
        q, k, v = (_mha.split_heads(p(x), m.num_heads) for p in (m.q_proj, m.k_proj, m.v_proj))  # (B, H, N, Dh)
        out = _flash.flash_attention(q, k, v, is_causal=self.config.causal)  # (B, H, N, Dh)
        return m.out_proj(_mha.merge_heads(out))


class _GQA(Mixer):  # gqa, mqa, mla: attn_mask and is_causal; the padding mask becomes an attn_mask
    def run(self, x, attn_mask, kpm):
        B, N, _ = x.shape
        mask = _mha.build_attention_mask(B, self.config.n_heads, N, N, attn_mask, kpm, dtype=x.dtype,
                                         device=x.device)
        out = self.inner(x, attn_mask=mask, is_causal=self.config.causal)
        return out[0] if isinstance(out, tuple) else out


class _Sparse(Mixer):
    def run(self, x, attn_mask, kpm):
        if self.config.kind == "block_sparse":  # the block-diagonal layout for this N
            nb = math.ceil(x.shape[1] / self.config.block)
            self.inner.pattern_args = {"layout": torch.eye(nb, dtype=torch.bool, device=x.device),
                                      "block": self.config.block}
        padding = None if kpm is None else ~kpm  # SparseAttention: True = padding
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=padding, is_causal=self.config.causal)


class _Linear(Mixer):
    def run(self, x, attn_mask, kpm):
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=kpm)


class LoRAMHA(nn.Module):
    """Chapter 04's attention with chapter 10's ``LoRALinear`` on some projections (default q, v).

    The base ``MultiHeadAttention`` is frozen; each adapted projection's weight is
    ``W + (alpha / r) B A`` (``LoRALinear.from_linear`` shares W and b). B starts at zero, so the
    layer starts equal to the base MHA. forward as ``MultiHeadAttention`` (returns ``(out, None)``).
    """

    def __init__(self, embed_dim: int, num_heads: int, r: int, lora_alpha: float, targets):
        super().__init__()
        self.base = _mha.MultiHeadAttention(embed_dim, num_heads)
        self.base.requires_grad_(False)
        names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
        self.lora = nn.ModuleDict({p: LoRALinear.from_linear(getattr(self.base, names[p]), r=r, lora_alpha=lora_alpha)
                                   for p in targets})
        for p, layer in self.lora.items():  # the very Parameters of the base, so parameters() counts them once
            lin = getattr(self.base, names[p])
            layer.weight, layer.bias = lin.weight, lin.bias

    def _w(self, p, lin):  # (weight, bias) of projection p: the adapted one where LoRA is on
        if p not in self.lora:
            return lin.weight, lin.bias
        layer = self.lora[p]
        w = layer.weight if layer.merged else layer.weight + layer.delta_weight()  # W + (alpha/r) B A
        return w, layer.bias

    def forward(self, x, attn_mask=None, key_padding_mask=None, is_causal=False):
        b = self.base
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (self._w(p, lin) for p, lin in
                                                  zip("qkvo", (b.q_proj, b.k_proj, b.v_proj, b.out_proj), strict=True))
        return _mha.multi_head_attention(x, x, x, b.num_heads, wq, wk, wv, wo, bq, bk, bv, bo,
                                         attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                         is_causal=is_causal)


def _build(cfg: AttentionConfig) -> Mixer:
    k, E, H = cfg.kind, cfg.d_model, cfg.n_heads
    if k == "full":
        if cfg.positional == "rope":
            from attnkit.rope import StandardAttentionWithRoPE

            return _RoPEMHA(cfg, StandardAttentionWithRoPE(E, H))
        return _MHA(cfg, _mha.MultiHeadAttention(E, H))
    if k == "flash":
        return _Flash(cfg, _mha.MultiHeadAttention(E, H))
    if k == "lora":
        return _MHA(cfg, LoRAMHA(E, H, cfg.lora_r, cfg.lora_alpha, cfg.lora_targets))
    if k in ("gqa", "mqa"):
        return _GQA(cfg, _gqa.GroupedQueryAttention(E, H, cfg.kv_heads))
    if k == "mla":
        d = cfg.head_dim
        return _GQA(cfg, _gqa.MultiHeadLatentAttention(E, H, cfg.latent_rank, d, cfg.rope_dim, d))
    if k in SPARSE:
        return _Sparse(cfg, _sparse.SparseAttention(E, H, **_pattern(cfg)))
    if k == "linear":
        inner = _linear.LinearAttention(E, H, feature_map=cfg.feature_map, causal=cfg.causal)
    elif k == "performer":
        inner = _linear.PerformerAttention(E, H, nb_features=cfg.features, causal=cfg.causal, seed=cfg.seed)
    elif k == "linformer":
        if cfg.max_seq_len is None:
            raise ValueError("linformer needs max_seq_len (the length of its E, F projections), got None")
        inner = _linear.LinformerAttention(E, H, seq_len=cfg.max_seq_len, k=cfg.linformer_k)
    elif k == "nystrom":
        inner = _linear.NystromAttention(E, H, num_landmarks=cfg.landmarks)
    else:  # cosformer
        if cfg.causal and cfg.max_seq_len is None:
            raise ValueError("cosformer with causal=True needs max_seq_len (the fixed M of "
                             "cos(pi/2 (i - j) / M)), got None")
        inner = _linear.CosFormerAttention(E, H, causal=cfg.causal, max_len=cfg.max_seq_len)
    return _Linear(cfg, inner)


def _pattern(cfg: AttentionConfig) -> dict:
    """SparseAttention's pattern and arguments for a sparse config."""
    k = cfg.kind
    if k == "local":
        return {"pattern": "sliding_window", "window": cfg.window}
    if k == "block_sparse":  # the layout is set per length in the forward (block-diagonal)
        return {"pattern": "block_sparse", "layout": torch.eye(1, dtype=torch.bool), "block": cfg.block}
    if k == "strided":
        return {"pattern": "strided", "stride": cfg.stride_len}
    if k == "longformer":
        return {"pattern": "longformer", "window": cfg.window, "global_idx": tuple(range(cfg.num_global_tokens))}
    return {"pattern": "bigbird", "block": cfg.block, "num_random_blocks": cfg.num_random_blocks, "seed": cfg.seed}


def _seeded(seed: int, build):
    """``build()`` with torch's global generator seeded by ``seed``, and restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class AttentionFactory:
    """``create_attention(config)``: the mechanism named by ``config.attention_type`` as a module."""

    @staticmethod
    def available(aliases: bool = False) -> list[str]:
        """The mechanisms' names (chapter order); with ``aliases=True`` the aliases too."""
        return list(NAMES) + (list(ALIASES) if aliases else [])

    @staticmethod
    def create_attention(config: AttentionConfig) -> Mixer:
        """A ``Mixer``: forward(x, attn_mask=None, key_padding_mask=None) -> (B, N, d_model).

        The weights are drawn with torch's generator seeded by ``config.seed`` (the global
        generator is left as it was), so the same config gives the same weights.
        """
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be an AttentionConfig, got {type(config).__name__}")
        return _seeded(config.seed, lambda: _build(config))


# -------------------------------------------------------------------------------------------------
# Blocks and a tiny language model
# -------------------------------------------------------------------------------------------------


class ShortConv(nn.Module):
    """A causal depthwise Conv1d over the sequence: y_t = sum_{s < kernel} w_s * x_{t - s} (per channel).

    (B, N, d) -> (B, N, d). Left-padded by kernel - 1, so y_t never sees x after t. Zoology's
    models (Arora et al. 2023) put such a short convolution before the sequence mixer.
    """

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, padding=kernel - 1)

    def forward(self, x):  # (B, N, d)
        return self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h = norm1(x); h = h + conv(h) (if conv_kernel > 0); x = x + mixer(h);
    x = x + mlp(norm2(x))`` (the MLP only when ``mlp_ratio > 0``: Linear, GELU, Linear, hidden
    ``mlp_ratio * d_model``).

    The short causal convolution sits inside the mixer's residual branch, with its own skip
    (``h + conv(h)``), so at any init the mixer still sees the normalised token itself.
    forward(x, attn_mask=None, key_padding_mask=None) -> (B, N, d_model). Built under
    ``config.seed`` (the mixer with the same seed as ``create_attention(config)`` gives it).
    """

    def __init__(self, config: AttentionConfig):
        super().__init__()
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be an AttentionConfig, got {type(config).__name__}")
        self.config = config
        d = config.d_model
        self.mixer = AttentionFactory.create_attention(config)

        def rest():
            self.norm1 = nn.LayerNorm(d)
            self.conv = ShortConv(d, config.conv_kernel) if config.conv_kernel > 0 else None
            hidden = int(round(config.mlp_ratio * d))
            if hidden > 0:
                self.norm2 = nn.LayerNorm(d)
                self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d),
                                         nn.Dropout(config.dropout))
            else:
                self.norm2 = self.mlp = None

        _seeded(config.seed + 1, rest)

    def forward(self, x, attn_mask=None, key_padding_mask=None):  # (B, N, d) -> (B, N, d)
        h = self.norm1(x)
        if self.conv is not None:
            h = h + self.conv(h)
        x = x + self.mixer(h, attn_mask=attn_mask, key_padding_mask=key_padding_mask)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class TinyLM(nn.Module):
    """Embedding -> one ``TransformerBlock`` per config (mixed attention) -> LayerNorm -> logits.

    ``TinyLM(vocab_size, configs, max_len=None)``; forward(tokens (B, N) long) -> logits
    (B, N, vocab_size). A language model: every config must be causal. ``max_len``: a learned
    position embedding of that many positions is added to the token embedding (as Zoology's
    models do; ``learned_positions=False`` leaves it out), and configs without ``max_seq_len``
    get it (cosFormer's M, Linformer's length). Layer i is built with seed ``configs[i].seed + i``,
    so equal configs give different layers; the embedding and head with ``configs[0].seed``.
    """

    def __init__(self, vocab_size: int, configs, max_len: int | None = None, learned_positions: bool = True):
        super().__init__()
        _positive_int("vocab_size", vocab_size, allow_none=False)
        _positive_int("max_len", max_len)
        if isinstance(configs, AttentionConfig) or not isinstance(configs, (list, tuple)) or not configs:
            raise TypeError(f"configs must be a non-empty list of AttentionConfig (one per layer), got {configs!r}")
        for i, c in enumerate(configs):
            if not isinstance(c, AttentionConfig):
                raise TypeError(f"configs[{i}] must be an AttentionConfig, got {type(c).__name__}")
            if c.d_model != configs[0].d_model:
                raise ValueError(f"configs[{i}].d_model={c.d_model}, expected configs[0].d_model={configs[0].d_model} "
                                 "(one width for the whole model)")
            if not c.causal:
                raise ValueError(f"configs[{i}] ({c.attention_type!r}) has causal=False; TinyLM is a causal language "
                                 "model, expected causal=True")
        d = configs[0].d_model
        self.vocab_size, self.max_len = vocab_size, max_len
        fill = {} if max_len is None else {"max_seq_len": max_len}
        self.configs = [dataclasses.replace(c, seed=c.seed + i, **({} if c.max_seq_len else fill))
                        for i, c in enumerate(configs)]

        def outer():
            self.embed = nn.Embedding(vocab_size, d)
            self.pos = nn.Embedding(max_len, d) if (max_len and learned_positions) else None
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab_size, bias=False)

        _seeded(configs[0].seed, outer)
        self.blocks = nn.ModuleList(TransformerBlock(c) for c in self.configs)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, N, vocab)
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a LongTensor (batch, seq), got "
                             f"{tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__} "
                             f"{getattr(tokens, 'dtype', '')}")
        N = tokens.shape[1]
        if self.max_len is not None and N > self.max_len:
            raise ValueError(f"tokens have length {N}, expected at most max_len={self.max_len}")
        h = self.embed(tokens)  # (B, N, d)
        if self.pos is not None:
            h = h + self.pos(torch.arange(N, device=tokens.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))  # (B, N, vocab)


# -------------------------------------------------------------------------------------------------
# Cost formulas: parameters and memory of one layer (chapters 04, 05, 07, 08, 09, 10)
# -------------------------------------------------------------------------------------------------


def param_count(cfg: AttentionConfig) -> int:
    """Parameters of ``create_attention(cfg)``, from the chapters' formulas (a test counts them)."""
    k, E, H, Dh = cfg.kind, cfg.d_model, cfg.n_heads, cfg.head_dim
    if k in ("full", "flash", "lora") or k in SPARSE or k in LINEAR:
        n = _mha.mha_param_count(E, H)  # 4 E^2 + 4 E (q, k, v, out with biases)
        if k == "lora":
            n += sum(cfg.lora_r * (E + E) for _ in cfg.lora_targets)  # A (r, in) + B (out, r) each
        if k == "linformer":
            if cfg.max_seq_len is None:
                raise ValueError("linformer needs max_seq_len, got None")
            n += 2 * cfg.max_seq_len * cfg.linformer_k  # E and F (shared by the heads)
        return n
    if k in ("gqa", "mqa"):  # no bias: q (E, E), k and v (E, g Dh), o (E, E)
        return 2 * E * E + 2 * E * cfg.kv_heads * Dh
    # mla: W^UQ, W^QR, W^DKV, RMSNorm(d_c), W^KR, W^UK, W^UV, W^O (no bias)
    dc, dr = cfg.latent_rank, cfg.rope_dim
    return E * H * Dh + E * H * dr + E * dc + dc + E * dr + dc * H * Dh + dc * H * Dh + H * Dh * E


MODES = ("forward", "training", "decode")


def _score_elements(cfg: AttentionConfig, N: int) -> int:
    """Elements of the mechanism's own term per (batch, head), from the chapters' cost formulas.

    Materialised softmax (full, gqa, mqa, mla, lora): N^2 scores. flash: one 64 x 64 tile plus
    the running max and sum (2N). Sparse: the attended pairs (``attnkit.sparse.pattern_pairs``,
    N * w for a window). Linear family: ``attnkit.linear.attention_cost(...)["extra_bytes"]``
    (features of q and k plus the d x d state, or N x k, or N x m landmarks), in elements.
    """
    k = cfg.kind
    if k in SOFTMAX_DENSE:
        return N * N
    if k == "flash":
        return 64 * 64 + 2 * N
    if k in ("local", "strided") and not (k == "strided" and not cfg.causal):
        args = {key: v for key, v in _pattern(cfg).items() if key != "pattern"}
        return _sparse.pattern_pairs(_pattern(cfg)["pattern"], N, cfg.causal, **args)
    if k in SPARSE:
        return sparse_pairs(cfg, N)
    m = {"performer": cfg.features, "linformer": cfg.linformer_k, "nystrom": cfg.landmarks}.get(k)
    return _linear.attention_cost(k, N, cfg.head_dim, m=m, bytes_per=1)["extra_bytes"]


def sparse_pairs(cfg: AttentionConfig, N: int) -> int:
    """Attended pairs of the patterns that ``attnkit.sparse.pattern_pairs`` counts from the
    predicate (O(N^2)), counted here per row or per block (a test checks that both agree).

    Block patterns (block_sparse: the block-diagonal layout; bigbird: ``bigbird_layout``), block
    sizes s_r (the last may be short): not causal s^T layout s; causal, the kept blocks below the
    diagonal whole and the diagonal ones s_r (s_r + 1) / 2.
    Longformer with G = the first g tokens: a global query sees all N keys (causal: i + 1);
    another sees its window W(i) plus the globals outside it, max(0, min(g, i - w/2)) not causal,
    max(0, min(g, i - w + 1)) causal.
    Strided, not causal: |A1| + |A2| - |A1 ∩ A2| with A1 = {|i - j| <= l} and
    A2 = {j ≡ i mod l}: A1 ∩ A2 = {i - l, i, i + l} within [0, N).
    """
    i = torch.arange(N)
    if cfg.kind in ("block_sparse", "bigbird"):
        b = cfg.block
        nb = math.ceil(N / b)
        layout = (torch.eye(nb, dtype=torch.bool) if cfg.kind == "block_sparse" else
                  _sparse.bigbird_layout(nb, num_random_blocks=cfg.num_random_blocks, seed=cfg.seed))
        sizes = torch.clamp(N - torch.arange(nb) * b, max=b)  # (nb,)
        if not cfg.causal:
            return int(sizes @ layout.long() @ sizes)
        below = int(sizes @ torch.tril(layout, -1).long() @ sizes)
        return below + int((layout.diagonal().long() * sizes * (sizes + 1) // 2).sum())
    if cfg.kind == "strided":
        s = cfg.stride_len
        a1 = torch.clamp(i + s, max=N - 1) - torch.clamp(i - s, min=0) + 1
        a2 = (N - 1 - i % s) // s + 1
        both = 1 + (i - s >= 0).long() + (i + s < N).long()
        return int((a1 + a2 - both).sum())
    w, g = cfg.window, min(cfg.num_global_tokens, N)
    if cfg.causal:
        win, outside, glob = torch.clamp(i + 1, max=w), torch.clamp(torch.clamp(i - w + 1, min=0), max=g), i + 1
    else:
        h = w // 2
        win = torch.clamp(i + h, max=N - 1) - torch.clamp(i - h, min=0) + 1
        outside, glob = torch.clamp(torch.clamp(i - h, min=0), max=g), torch.full_like(i, N)
    return int(torch.where(i < g, glob, win + outside).sum())


def _io_elements(cfg: AttentionConfig, N: int) -> int:
    """Per batch element: q, k, v, the merged heads and the output, (N, width) each."""
    E, k = cfg.d_model, cfg.kind
    if k == "mla":
        H, Dh, dr, dc = cfg.n_heads, cfg.head_dim, cfg.rope_dim, cfg.latent_rank
        return N * (2 * H * (Dh + dr) + 2 * H * Dh + (dc + dr) + E)
    kv = cfg.kv_heads * cfg.head_dim
    return N * (E + 2 * kv + E + E)


def _cache_tokens(cfg: AttentionConfig, N: int) -> int:
    """Tokens a decoder must keep to produce token N (its KV cache length)."""
    k = cfg.kind
    if k == "local":
        return min(N, cfg.window)
    if k == "longformer":
        return min(N, cfg.window + cfg.num_global_tokens)
    if k == "block_sparse":
        return min(N, cfg.block)
    if k == "strided":
        return min(N, cfg.stride_len + math.ceil(N / cfg.stride_len))
    return N


def memory_breakdown(cfg: AttentionConfig, seq_len: int, batch_size: int = 1, dtype_bytes: int = 4,
                     mode: str = "forward") -> dict:
    """Bytes of one layer at ``seq_len``, by the cost formulas of the earlier chapters.

    mode "forward": parameters + activations (q, k, v, context, output) + the mechanism's own
    term (``_score_elements``: N^2 per head for materialised softmax, a tile for flash, the
    attended pairs for sparse patterns, features and state for linear attention).
    "training": the same, with parameters counted four times (weights, gradients, AdamW's two
    moments; the forward's tensors are what the backward keeps).
    "decode": parameters + the KV cache (``attnkit.gqa.kv_cache_bytes_per_token``) of the tokens
    a decoder keeps (all N; a window's w; a block's b) or, for causal linear attention, its
    recurrent state (d x d per head); plus one query's scores over the cache.
    Returns a dict of bytes: params, activations, scores, kv_cache, total.
    """
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"cfg must be an AttentionConfig, got {type(cfg).__name__}")
    _positive_int("seq_len", seq_len, allow_none=False)
    _positive_int("batch_size", batch_size, allow_none=False)
    _positive_int("dtype_bytes", dtype_bytes, allow_none=False)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    k, N, B, b, H = cfg.kind, seq_len, batch_size, dtype_bytes, cfg.n_heads
    if k == "linformer" and cfg.max_seq_len is None:
        cfg = dataclasses.replace(cfg, max_seq_len=N)
    params = param_count(cfg) * b * (4 if mode == "training" else 1)
    out = {"params": params, "activations": 0, "scores": 0, "kv_cache": 0}
    if mode == "decode":
        if k in NO_CAUSAL:
            raise ValueError(f"{k} cannot decode token by token (no causal form), expected one of "
                             f"{[n for n in NAMES if n not in NO_CAUSAL]}")
        if k in LINEAR:  # the recurrent state, constant in N
            m = {"performer": cfg.features}.get(k)
            state = _linear.attention_cost(k, N, cfg.head_dim, m=m, bytes_per=b)["state_bytes"]
            out["kv_cache"] = B * H * state
        else:
            kind = {"gqa": "gqa", "mqa": "mqa", "mla": "mla"}.get(k, "mha")
            per_token = _gqa.kv_cache_bytes_per_token(kind, num_heads=H, head_dim=cfg.head_dim,
                                                      num_kv_heads=cfg.kv_heads, kv_lora_rank=cfg.latent_rank,
                                                      qk_rope_head_dim=cfg.rope_dim, dtype=b)
            tokens = _cache_tokens(cfg, N)
            out["kv_cache"] = per_token * tokens * B
            out["scores"] = B * H * tokens * b
        out["activations"] = _io_elements(cfg, 1) * B * b
    else:
        out["activations"] = _io_elements(cfg, N) * B * b
        out["scores"] = _score_elements(cfg, N) * B * H * b
    out["total"] = sum(out.values())
    return out


# -------------------------------------------------------------------------------------------------
# The selector
# -------------------------------------------------------------------------------------------------

SCENARIOS = {  # scenario -> (memory mode, candidates in order of preference, rule)
    "training": ("training", ("full", "flash", "local", "longformer", "bigbird", "performer", "cosformer",
                              "linear"), "first"),
    "inference": ("decode", ("full", "gqa", "mla", "mqa", "local", "linear"), "first"),
    "long_context": ("forward", ("flash", "longformer", "bigbird", "local", "performer", "cosformer", "linear"),
                     "first"),
    "memory_limited": ("forward", tuple(n for n in NAMES if n != "lora"), "least"),
}


class AttentionSelector:
    """Pick a mechanism for a scenario from the memory formulas (``memory_mb``), never from a table.

    Every candidate's memory at ``seq_len`` is computed; those above ``memory_constraint`` (MB)
    are dropped; then the scenario's rule picks (``SCENARIOS``): training, inference and
    long_context take the first that fits in their order of preference (exact before
    approximate; for inference the least compressed KV cache), memory_limited the least memory.
    Memory per scenario: training counts parameters x4 (weights, gradients, AdamW moments) plus
    the forward's tensors; inference counts the KV cache (or linear state) of decoding;
    long_context and memory_limited the forward's tensors. One layer, ``batch_size`` 1 by default.
    ``candidates(scenario, seq_len)`` lists every candidate with its MB (what fits, what each costs).
    """

    @staticmethod
    def memory_mb(cfg: AttentionConfig, seq_len: int, batch_size: int = 1, dtype_bytes: int = 4,
                  mode: str = "forward") -> float:
        """``memory_breakdown(...)["total"] / 2**20``: MB of one layer at seq_len (see there)."""
        return memory_breakdown(cfg, seq_len, batch_size, dtype_bytes, mode)["total"] / MB

    @staticmethod
    def candidates(scenario: str, seq_len: int, batch_size: int = 1, dtype_bytes: int = 4,
                   **overrides) -> list[tuple[AttentionConfig, float]]:
        """Every candidate config of the scenario with its memory (MB), in the scenario's order."""
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {list(SCENARIOS)}, got {scenario!r}")
        overrides.pop("attention_type", None)
        mode, names, _ = SCENARIOS[scenario]
        causal = overrides.get("causal", False) or mode == "decode"
        out = []
        for name in names:
            if causal and name in NO_CAUSAL:
                continue
            opts = dict(overrides)
            if name in ("linformer", "cosformer") and opts.get("max_seq_len") is None:
                opts["max_seq_len"] = seq_len
            if mode == "decode":
                opts["causal"] = True
            cfg = AttentionConfig(attention_type=name, **opts)
            out.append((cfg, AttentionSelector.memory_mb(cfg, seq_len, batch_size, dtype_bytes, mode)))
        return out

    @staticmethod
    def select_for_scenario(scenario: str, seq_len: int, memory_constraint: float, batch_size: int = 1,
                            dtype_bytes: int = 4, **overrides) -> AttentionConfig:
        """The chosen ``AttentionConfig``, with ``.reason`` (the numbers) and ``.memory_mb`` set.

        ``overrides`` are config fields (d_model, n_heads, causal, window_size, ...) for every
        candidate. ValueError when nothing fits, naming the smallest need.
        """
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {list(SCENARIOS)}, got {scenario!r}")
        _positive_int("seq_len", seq_len, allow_none=False)
        if isinstance(memory_constraint, bool) or not isinstance(memory_constraint, (int, float)) \
                or not memory_constraint > 0:
            raise ValueError(f"memory_constraint must be a number of MB > 0, got {memory_constraint!r}")
        mode, _, rule = SCENARIOS[scenario]
        cands = AttentionSelector.candidates(scenario, seq_len, batch_size, dtype_bytes, **overrides)
        fits = [(c, m) for c, m in cands if m <= memory_constraint]
        if not fits:
            c, m = min(cands, key=lambda cm: cm[1])
            raise ValueError(f"memory_constraint={memory_constraint} MB: no {scenario} candidate fits at "
                             f"seq_len={seq_len}; the smallest need is {m:.1f} MB ({c.kind})")
        choice, mem = fits[0] if rule == "first" else min(fits, key=lambda cm: cm[1])
        full_cfg = dataclasses.replace(choice, attention_type="full", reason=None, memory_mb=None,
                                       causal=choice.causal or mode == "decode")
        full = AttentionSelector.memory_mb(full_cfg, seq_len, batch_size, dtype_bytes, mode)
        choice.memory_mb = mem
        choice.reason = t("factory.reason", scenario=scenario, seq_len=seq_len, choice=choice.kind, memory=mem,
                          full=full, constraint=float(memory_constraint), rule=t(f"factory.rule.{scenario}"))
        return choice


# -------------------------------------------------------------------------------------------------
# The profiler
# -------------------------------------------------------------------------------------------------


def _cpu_peak_bytes(step) -> int:
    """Peak bytes held by torch's CPU allocator during ``step()``, beyond what existed before.

    Measured with ``torch.profiler.profile(profile_memory=True)``: the allocator reports every
    allocation and free (op-internal scratch included) as a "[memory]" event with its size;
    the running sum of those events in time order, at its largest, is the peak.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def _cuda_peak_bytes(step, device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _profile_config(item, seq_len: int, d_model: int, n_heads: int) -> AttentionConfig:
    if isinstance(item, AttentionConfig):
        return item
    name = canonical_name(item)
    opts = {"max_seq_len": seq_len} if name in ("linformer", "cosformer") else {}
    return AttentionConfig(attention_type=item, d_model=d_model, n_heads=n_heads, **opts)


class AttentionProfiler:
    """Latency (mean, std over iterations), peak memory and tokens/s of mechanisms, measured.

    Timing: ``attnkit.timing.round_robin_times`` (warm-up calls excluded; several mechanisms
    timed in turn), on one thread on CPU unless ``single_thread=False``; on CUDA each call ends
    with ``torch.cuda.synchronize``. Memory: one more call, measured apart from the timing: on
    CPU the peak of torch's allocator through ``torch.profiler`` (``_cpu_peak_bytes``), on CUDA
    ``torch.cuda.max_memory_allocated`` minus what was allocated before; in both, the extra
    memory of a call beyond the parameters and the input, in MB (2**20 bytes).
    """

    @staticmethod
    def profile_attention(attention_type, batch_size: int, seq_len: int, num_iterations: int,
                          d_model: int = 512, n_heads: int = 8, warmup: int = 3, config: AttentionConfig | None = None,
                          backward: bool = False, device="cpu", single_thread: bool = True) -> dict:
        """One mechanism (by name, or ``config``): a dict with avg_latency_ms, std_latency_ms,
        median_latency_ms, memory_mb, tokens_per_s = batch_size * seq_len / latency, formula_mb
        (the formula's activations and scores, ``memory_breakdown`` without the parameters), and
        the settings."""
        item = config if config is not None else attention_type
        res = AttentionProfiler.profile_many([item], batch_size, seq_len, num_iterations, d_model, n_heads,
                                             warmup, backward, device, single_thread)
        return next(iter(res.values()))

    @staticmethod
    def profile_many(items, batch_size: int, seq_len: int, num_iterations: int, d_model: int = 512,
                     n_heads: int = 8, warmup: int = 3, backward: bool = False, device="cpu",
                     single_thread: bool = True) -> dict:
        """``{name: profile}`` for a list of names or configs (or a dict name -> config), timed
        round-robin: one call of each in turn, ``num_iterations`` rounds after ``warmup`` rounds."""
        from attnkit.timing import one_thread, round_robin_times

        for name, value, minimum in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1),
                                     ("num_iterations", num_iterations, 1), ("warmup", warmup, 0)):
            _positive_int(name, value, allow_none=False, minimum=minimum)
        named = items if isinstance(items, dict) else None
        if named is None:
            if isinstance(items, (str, AttentionConfig)) or not items:
                raise TypeError(f"items must be a non-empty list of names or AttentionConfigs, got {items!r}")
            named = {}
            for it in items:
                cfg = _profile_config(it, seq_len, d_model, n_heads)
                key = it if isinstance(it, str) else cfg.kind
                while key in named:
                    key += "'"
                named[key] = cfg
        device = torch.device(device)
        cfgs = {k: _profile_config(c, seq_len, d_model, n_heads) for k, c in named.items()}
        gen = torch.Generator().manual_seed(0)
        steps, setups = {}, {}
        for key, cfg in cfgs.items():
            module = AttentionFactory.create_attention(cfg).to(device)
            module.train(backward)
            x = torch.randn(batch_size, seq_len, cfg.d_model, generator=gen).to(device)
            steps[key] = _make_step(module, x, backward, device)
            setups[key] = (module, x)
        use_one = single_thread and device.type == "cpu"
        if use_one:
            with one_thread():
                times = round_robin_times(steps, repeats=num_iterations, warmup=warmup)
        else:
            times = round_robin_times(steps, repeats=num_iterations, warmup=warmup)
        out = {}
        for key, cfg in cfgs.items():
            step = steps[key]
            if device.type == "cuda":
                peak = _cuda_peak_bytes(step, device)
                method = "torch.cuda.max_memory_allocated"
            else:
                if use_one:
                    with one_thread():
                        peak = _cpu_peak_bytes(step)
                else:
                    peak = _cpu_peak_bytes(step)
                method = "torch.profiler(profile_memory=True)"
            ms = [s * 1e3 for s in times[key]]
            avg = statistics.fmean(ms)
            formula = memory_breakdown(cfg, seq_len, batch_size, 4, "training" if backward else "forward")
            out[key] = {
                "attention_type": cfg.kind, "avg_latency_ms": avg,
                "std_latency_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
                "median_latency_ms": statistics.median(ms), "memory_mb": peak / MB,
                "tokens_per_s": batch_size * seq_len / (avg / 1e3),
                "formula_mb": (formula["total"] - formula["params"]) / MB,
                "batch_size": batch_size, "seq_len": seq_len, "num_iterations": num_iterations,
                "warmup": warmup, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "causal": cfg.causal,
                "backward": backward, "device": str(device), "threads": 1 if use_one else torch.get_num_threads(),
                "memory_method": method,
            }
        return out


def _make_step(module: nn.Module, x: torch.Tensor, backward: bool, device):
    sync = device.type == "cuda"

    def step():
        if backward:
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()
        else:
            with torch.no_grad():
                module(x)
        if sync:
            torch.cuda.synchronize(device)

    return step

