"""AttentionFactory: every mechanism's chapter module behind one forward(x, attn_mask, key_padding_mask).

The masks, the window, ``causal`` and ``dropout`` mean the same for every mechanism: see
``attnkit.factory``'s docstring.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit import flash as _flash
from attnkit import forgetting as _forgetting
from attnkit import gqa as _gqa
from attnkit import linear as _linear
from attnkit import mha as _mha
from attnkit import sparse as _sparse
from attnkit import validate
from attnkit.factory.config import ALIASES, FORGETTING, NAMES, SPARSE, AttentionConfig, _pattern
from attnkit.lora import LoRALinear


def _check_x(x, d_model: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (batch, seq, {d_model}), got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (batch, seq, d_model={d_model})")


def _check_kpm(key_padding_mask, x) -> None:
    validate.key_padding_mask("key_padding_mask", key_padding_mask, x.shape[:2], x.device)


class Mixer(nn.Module):
    """The factory's module: the chapter module ``inner`` behind one forward, then output dropout.

    ``forward(x (B, N, d_model), attn_mask=None, key_padding_mask=None) -> (B, N, d_model)``.
    """

    def __init__(self, config: AttentionConfig, inner: nn.Module):
        super().__init__()
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be an AttentionConfig, got {type(config).__name__}")
        if not isinstance(inner, nn.Module):
            raise TypeError(f"inner must be a torch.nn.Module, got {type(inner).__name__}")
        self.config = config
        self.inner = inner
        self.dropout = nn.Dropout(config.dropout)

    def extra_repr(self) -> str:
        return f"attention_type={self.config.attention_type!r}, causal={self.config.causal}"

    def run(self, x, attn_mask, key_padding_mask):  # (B, N, E) -> (B, N, E)
        raise NotImplementedError

    def forward(self, x, attn_mask=None, key_padding_mask=None):
        _check_x(x, self.config.d_model)
        validate.module_accepts(self, "x", x)  # weights vs input: one TypeError for every mechanism
        _check_kpm(key_padding_mask, x)
        return self.dropout(self.run(x, attn_mask, key_padding_mask))


class _MHA(Mixer):  # full, and lora through LoRAMHA below
    def run(self, x, attn_mask, kpm):
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=self.config.causal)[0]


class _Math(Mixer):  # full attention through the path that keeps the (B, H, N, N) weights (attnkit.core)
    def run(self, x, attn_mask, kpm):
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=self.config.causal,
                          need_weights=True)[0]


class _RoPEMHA(Mixer):  # full with positional="rope": chapter 06's module, tables grown on demand
    def run(self, x, attn_mask, kpm):
        from attnkit.rope import generate_rope_embeddings

        B, N, _ = x.shape
        mask = _mha.build_attention_mask(B, self.config.n_heads, N, N, attn_mask, kpm,
                                         is_causal=self.config.causal, dtype=x.dtype, device=x.device)
        tables = torch.float64 if x.dtype == torch.float64 else torch.float32  # as MLA's: float64 for float64
        rope = generate_rope_embeddings(N, self.config.resolved.head_dim, device=x.device, dtype=tables)
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
        if self.config.attention_type == "block_sparse":  # the block-diagonal layout for this N
            nb = math.ceil(x.shape[1] / self.config.resolved.block_size)
            self.inner.pattern_args = {"layout": torch.eye(nb, dtype=torch.bool, device=x.device),
                                      "block": self.config.resolved.block_size}
        return self.inner(x, attn_mask=attn_mask, key_padding_mask=kpm, is_causal=self.config.causal)


class _Linear(Mixer):  # the linear family, and the recurrences of attnkit.forgetting (causal by construction)
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
        if isinstance(targets, str) or not targets or any(p not in ("q", "k", "v", "o") for p in targets):
            raise ValueError(f"targets must be a non-empty selection of ('q', 'k', 'v', 'o'), got {targets!r}")
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
        _check_x(x, self.base.embed_dim)
        validate.module_accepts(self, "x", x)
        b = self.base
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (self._w(p, lin) for p, lin in
                                                  zip("qkvo", (b.q_proj, b.k_proj, b.v_proj, b.out_proj), strict=True))
        return _mha.multi_head_attention(x, x, x, b.num_heads, wq, wk, wv, wo, bq, bk, bv, bo,
                                         attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                         is_causal=is_causal)


def _build(cfg: AttentionConfig) -> Mixer:
    k, E, H = cfg.attention_type, cfg.d_model, cfg.n_heads
    if k == "full":
        if cfg.positional == "rope":
            from attnkit.rope import StandardAttentionWithRoPE

            return _RoPEMHA(cfg, StandardAttentionWithRoPE(E, H))
        return _MHA(cfg, _mha.MultiHeadAttention(E, H))
    if k == "math":
        return _Math(cfg, _mha.MultiHeadAttention(E, H))
    if k == "flash":
        return _Flash(cfg, _mha.MultiHeadAttention(E, H))
    if k == "lora":
        return _MHA(cfg, LoRAMHA(E, H, cfg.lora_r, cfg.lora_alpha, cfg.lora_targets))
    if k in ("gqa", "mqa"):
        return _GQA(cfg, _gqa.GroupedQueryAttention(E, H, cfg.resolved.num_kv_heads))
    if k == "mla":
        r = cfg.resolved
        return _GQA(cfg, _gqa.MultiHeadLatentAttention(E, H, r.kv_lora_rank, r.head_dim, r.qk_rope_head_dim, r.head_dim))
    if k in SPARSE:
        return _Sparse(cfg, _sparse.SparseAttention(E, H, **_pattern(cfg)))
    if k in FORGETTING:
        gate = {"retnet": "fixed", "gated_linear": "scalar", "gla": "channel"}.get(k)
        inner = (_forgetting.GatedLinearAttention(E, H, gate=gate, chunk_size=cfg.chunk_size) if gate else
                 _forgetting.DeltaNet(E, H, gated=k == "gated_deltanet", chunk_size=cfg.chunk_size))
        return _Linear(cfg, inner)
    if k == "linear":
        inner = _linear.LinearAttention(E, H, feature_map=cfg.feature_map, causal=cfg.causal)
    elif k == "performer":
        inner = _linear.PerformerAttention(E, H, nb_features=cfg.resolved.nb_features, causal=cfg.causal, seed=cfg.seed)
    elif k == "linformer":
        if cfg.max_seq_len is None:
            raise ValueError("linformer needs max_seq_len (the length of its E, F projections), got None")
        inner = _linear.LinformerAttention(E, H, seq_len=cfg.max_seq_len, k=cfg.resolved.proj_k)
    elif k == "nystrom":
        inner = _linear.NystromAttention(E, H, num_landmarks=cfg.resolved.num_landmarks)
    else:  # cosformer
        if cfg.causal and cfg.max_seq_len is None:
            raise ValueError("cosformer with causal=True needs max_seq_len (the fixed M of "
                             "cos(pi/2 (i - j) / M)), got None")
        inner = _linear.CosFormerAttention(E, H, causal=cfg.causal, max_len=cfg.max_seq_len)
    return _Linear(cfg, inner)


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
