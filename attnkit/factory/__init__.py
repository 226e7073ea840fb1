"""Every mechanism behind one config and one forward (chapter 11): config, factory, blocks, costs, selector, profiler.

Every mechanism of chapters 04-10 behind one interface:

    cfg  = AttentionConfig(attention_type="local", d_model=512, n_heads=8, window_size=128)
    attn = AttentionFactory.create_attention(cfg)     # nn.Module
    out  = attn(x, attn_mask=None, key_padding_mask=None)   # x (B, N, d_model) -> (B, N, d_model)

The factory builds the chapter's own module and adapts its signature; it computes nothing itself
(except ``flash``, which puts chapter 07's ``flash_attention`` between chapter 04's projections,
and ``lora``, which puts chapter 10's ``LoRALinear`` on the query and value projections of
chapter 04's attention). Names (``AttentionFactory.available()``), with aliases in brackets:

    full (mha)          attnkit.mha.MultiHeadAttention (torch's fused SDPA kernel: no N x N matrix is held);
                        positional="rope": attnkit.rope.StandardAttentionWithRoPE
    math                MultiHeadAttention through attnkit.core's plain path, which keeps the (B, H, N, N) weights
    flash               MultiHeadAttention's projections + attnkit.flash.flash_attention (no masks): chapter
                        07's tiling in Python, for teaching; slower than full's fused kernel
    gqa, mqa            attnkit.gqa.GroupedQueryAttention (num_kv_heads groups; mqa: 1)
    mla                 attnkit.gqa.MultiHeadLatentAttention (its RoPE key is built in)
    local (sliding)     attnkit.sparse.SparseAttention, pattern "sliding_window", window = window_size
    block_sparse (sparse)  SparseAttention, pattern "block_sparse" with the block-diagonal layout: a token
                        sees only its own block, at any depth (no information crosses blocks)
    strided             SparseAttention, pattern "strided" (stride)
    longformer          SparseAttention, pattern "longformer" (window_size, the first num_global_tokens global)
    bigbird             SparseAttention, pattern "bigbird" (block_size, num_random_blocks, seed)
    linear, performer, linformer, nystrom, cosformer    attnkit.linear.METHODS[name]
    retnet (retention, decay_linear)   attnkit.forgetting.GatedLinearAttention, gate "fixed" (RetNet's decay per head)
    gated_linear (simple_gla)   GatedLinearAttention, gate "scalar" (a data-dependent decay per head and token)
    gla                 GatedLinearAttention, gate "channel" (GLA's decay per key channel)
    deltanet, gated_deltanet (gdn)   attnkit.forgetting.DeltaNet (gated=False / True)
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
softmax and sparse modules, ``causal=`` of the linear ones). The recurrences of
``attnkit.forgetting`` (``CAUSAL_ONLY``) are causal by construction: ``causal`` defaults to True
for them and ``causal=False`` is a ValueError. Linformer (its E, F projections mix
every position into each projected key) and Nystromformer (segment-mean landmarks average future
tokens) have no causal form: ``causal=True`` is a ValueError for them.

``dropout`` is applied to the output of every mechanism (``nn.Dropout``, as nanoGPT's
``resid_dropout``); the chapter modules' own attention-weight dropout is left at 0, so that every
mechanism equals its chapter module in eval mode and all of them are regularised alike.

Modules: ``config`` (AttentionConfig, the names), ``mixers`` (AttentionFactory and one adapter per
mechanism), ``model`` (ShortConv, TransformerBlock, TinyLM), ``costs`` (parameter and memory
formulas, in MB = 2**20 bytes), ``selector`` (AttentionSelector), ``profiler``
(AttentionProfiler). This package re-exports their public names.
"""

from __future__ import annotations

from attnkit.factory.config import (
    ALIASES,
    CAUSAL_ONLY,
    FORGETTING,
    LINEAR,
    NAMES,
    NO_CAUSAL,
    POSITIONAL,
    SOFTMAX_DENSE,
    SPARSE,
    AttentionConfig,
    ResolvedOptions,
    canonical_name,
)
from attnkit.factory.costs import MB, MODES, memory_breakdown, param_count, sparse_pairs
from attnkit.factory.mixers import AttentionFactory, LoRAMHA, Mixer
from attnkit.factory.model import ShortConv, TinyLM, TransformerBlock
from attnkit.factory.profiler import AttentionProfiler
from attnkit.factory.selector import SCENARIOS, AttentionSelector

__all__ = [
    "AttentionConfig", "ResolvedOptions", "AttentionFactory", "AttentionSelector", "AttentionProfiler",
    "TransformerBlock", "TinyLM", "NAMES", "ALIASES", "SCENARIOS", "canonical_name", "param_count",
    "memory_breakdown", "sparse_pairs", "ShortConv", "Mixer", "LoRAMHA", "NO_CAUSAL", "SOFTMAX_DENSE",
    "SPARSE", "LINEAR", "FORGETTING", "CAUSAL_ONLY", "POSITIONAL", "MB", "MODES",
]
