"""Blocks and a tiny language model built from the factory's mixers: ShortConv, TransformerBlock, TinyLM."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from attnkit import validate
from attnkit.factory.config import AttentionConfig, _positive_int
from attnkit.factory.mixers import AttentionFactory, _seeded


def _check_x(module: nn.Module, x, d_model: int) -> None:
    validate.tensor("x", x, 3, f"(batch, seq, d_model={d_model})")
    if x.shape[-1] != d_model:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (batch, seq, d_model={d_model})")
    validate.module_accepts(module, "x", x)


class ShortConv(nn.Module):
    """A causal depthwise Conv1d over the sequence: y_t = sum_{s < kernel} w_s * x_{t - s} (per channel).

    (B, N, d) -> (B, N, d). Left-padded by kernel - 1, so y_t never sees x after t. Zoology's
    models (Arora et al. 2023) put such a short convolution before the sequence mixer.
    """

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        _positive_int("d_model", d_model, allow_none=False)
        _positive_int("kernel", kernel, allow_none=False)
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, padding=kernel - 1)

    def forward(self, x):  # (B, N, d)
        _check_x(self, x, self.conv.in_channels)
        if x.shape[1] == 0:  # an empty sequence: an empty output (Conv1d refuses length 0)
            return x.clone()
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
        _check_x(self, x, self.config.d_model)
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
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
            raise TypeError(f"tokens must be a LongTensor (batch, seq), got "
                            f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, seq), got shape {tuple(tokens.shape)}")
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < self.vocab_size:
            raise ValueError(f"tokens must lie in [0, vocab_size={self.vocab_size}), got values in "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        N = tokens.shape[1]
        if self.max_len is not None and N > self.max_len:
            raise ValueError(f"tokens have length {N}, expected at most max_len={self.max_len}")
        h = self.embed(tokens)  # (B, N, d)
        if self.pos is not None:
            h = h + self.pos(torch.arange(N, device=tokens.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))  # (B, N, vocab)
