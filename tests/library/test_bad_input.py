"""Bad input across the public API of the mechanisms and composition layers (ARCHITECTURE.md).

Every name in ``__all__`` of core, softmax, mha, gqa, rope, flash, sparse, linear, lora, factory
and mqar has a row in ``ROWS`` (or is a constant in ``CONSTANTS``): a callable, arguments that
work, and bad variations. Each row gets the same battery, generated from what it declares:

- ``ints``: each size gets its minimum - 1 (ValueError), 2.5 and True (TypeError);
- ``tensors``: each gets a flattened tensor (wrong rank, ValueError), and when there are
  several, float64 among float32 (TypeError) and the meta device (ValueError);
- ``module``: the forward's first tensor in float64 against float32 weights (TypeError);
- ``reals``: NaN and inf (ValueError); ``names``: an unknown name (ValueError);
- ``bad``: the row's own cases (mismatched batch or heads, a missing argument, ...);
- ``empty``: N = 0, which must give a defined answer of the given shape, not an error.

An error must be attnkit's own: a ValueError or TypeError raised by a ``raise`` statement inside
attnkit (not torch's or Python's from deep inside a computation), whose message names the
argument. A call that returns where it should refuse fails the test ("DID NOT RAISE").
"""

from __future__ import annotations

import linecache
import math
import pathlib
import traceback

import pytest
import torch

from attnkit import core, factory, flash, gqa, linear, lora, mha, mqar, rope, softmax, sparse

ATTNKIT = str(pathlib.Path(core.__file__).parent)
MODULES = {"core": core, "softmax": softmax, "mha": mha, "gqa": gqa, "rope": rope, "flash": flash,
           "sparse": sparse, "linear": linear, "lora": lora, "factory": factory, "mqar": mqar}
# names that take no arguments (constants, tables) or whose every argument is checked by another row
CONSTANTS = {"sparse.PATTERNS", "linear.FEATURE_MAPS", "linear.METHODS", "lora.PROJECTIONS", "mqar.IGNORE_INDEX",
             "gqa.KINDS", "factory.NAMES", "factory.ALIASES", "factory.SCENARIOS", "factory.MODES",
             "factory.POSITIONAL", "factory.NO_CAUSAL", "factory.SPARSE", "factory.PROJECTIONS",
             "factory.SOFTMAX_DENSE", "factory.LINEAR", "factory.FORGETTING", "factory.CAUSAL_ONLY", "factory.MB",
             "factory.ResolvedOptions"}  # ResolvedOptions: the read-only view AttentionConfig.resolved builds


def t(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def qkv(*shape):
    return {"q": t(*shape), "k": t(*shape, seed=1), "v": t(*shape, seed=2)}


def qkv0(*shape):  # the same with N = 0 (shape's second-to-last entry)
    return qkv(*shape[:-2], 0, shape[-1])


class Row:
    def __init__(self, name, fn, good, ints=None, tensors=(), reals=(), names=(), bad=(),
                 empty=None, module=False):
        self.name, self.fn, self.good = name, fn, good
        self.ints, self.tensors, self.reals, self.names = ints or {}, tensors, reals, names
        self.bad, self.empty, self.module = list(bad), empty, module

    def cases(self):
        for k, lo in self.ints.items():
            yield f"{k}={lo - 1}", {k: lo - 1}, ValueError, k
            yield f"{k}=2.5", {k: 2.5}, TypeError, k
            yield f"{k}=True", {k: True}, TypeError, k
        for k in self.tensors:
            x = self.good[k]
            yield f"{k} flat", {k: x.reshape(-1) if x.dim() > 1 else x.reshape(1, 1, 1, -1)}, ValueError, k
            if len(self.tensors) > 1:
                yield f"{k} float64", {k: x.double()}, TypeError, k
                yield f"{k} meta", {k: x.to("meta")}, ValueError, k
        if self.module and self.tensors:
            k = self.tensors[0]
            yield f"{k} float64 vs weights", {k: self.good[k].double()}, TypeError, k
        for k in self.reals:
            yield f"{k}=nan", {k: math.nan}, ValueError, k
            yield f"{k}=inf", {k: math.inf}, ValueError, k
        for k in self.names:
            yield f"{k}=nope", {k: "nope"}, ValueError, k
        yield from self.bad


ROWS: list[Row] = []


def row(*args, **kw):
    ROWS.append(Row(*args, **kw))


def module_row(name, cls, init, forward, ints=None, reals=(), names=(), bad_init=(), bad=(),
               empty=None, tensors=("x",)):
    """Two rows: the constructor, and the forward of a module built from ``init`` (seeded)."""
    row(name, cls, init, ints=ints, reals=reals, names=names, bad=bad_init)
    torch.manual_seed(0)
    m = cls(**init)
    row(f"{name}.forward", m, forward, tensors=tensors, bad=bad, empty=empty, module=True)


B, H, N, D = 2, 2, 5, 4
E = H * D
QKV = qkv(B, H, N, D)
X = t(B, N, E)
KPM = torch.ones(B, N, dtype=torch.bool)
KPM[1, -2:] = False

# ---------------------------------------------------------------------------------------------- core
row("core.scaled_dot_product_attention", core.scaled_dot_product_attention, QKV, tensors=("q", "k", "v"),
    reals=("scale",), empty=(qkv0(B, H, N, D), (B, H, 0, D)), bad=[
        ("dropout_p=1", {"dropout_p": 1.0}, ValueError, "dropout_p"),
        ("dropout_p=nan", {"dropout_p": math.nan}, ValueError, "dropout_p"),
        ("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask"),
        ("attn_mask int", {"attn_mask": torch.ones(N, N, dtype=torch.long)}, TypeError, "attn_mask"),
        ("batch mismatch", {"k": t(3, H, N, D), "v": t(3, H, N, D)}, ValueError, "k"),
        ("heads mismatch", {"k": t(B, 3, N, D), "v": t(B, 3, N, D)}, ValueError, "k"),
        ("head dim mismatch", {"k": t(B, H, N, 3)}, ValueError, "k"),
    ])
row("core.causal_mask", core.causal_mask, {"q_len": 4, "k_len": 6}, ints={"q_len": 0, "k_len": 0},
    bad=[("offset=2.5", {"offset": 2.5}, TypeError, "offset")])
row("core.padding_mask", core.padding_mask, {"lengths": [3, 5], "max_len": 5}, ints={"max_len": 0}, bad=[
    ("lengths too long", {"lengths": [3, 6]}, ValueError, "lengths"),
    ("lengths 2-D", {"lengths": [[3, 5]]}, ValueError, "lengths"),
    ("lengths float", {"lengths": [2.5, 3]}, TypeError, "lengths"),
])

# ---------------------------------------------------------------------------------------------- softmax
S = t(3, 6)
STATE = softmax.softmax_state(S)
for fname in ("softmax", "naive_softmax", "logsumexp", "softmax_state"):
    row(f"softmax.{fname}", getattr(softmax, fname), {"x": S}, bad=[
        ("x list", {"x": S.tolist()}, TypeError, "x"), ("x int", {"x": S.long()}, TypeError, "x"),
        ("dim=2", {"dim": 2}, ValueError, "dim"), ("dim=2.5", {"dim": 2.5}, TypeError, "dim"),
    ] + ([("x nan", {"x": torch.tensor([1.0, math.nan])}, ValueError, "x")] if fname != "naive_softmax" else []),
        empty=({"x": t(3, 0)}, (3,) if fname == "logsumexp" else (3, 1) if fname == "softmax_state" else (3, 0))
        if fname != "softmax_state" else None)
row("softmax.softmax:temperature", softmax.softmax, {"x": S}, reals=("temperature",),
    bad=[("temperature=-1", {"temperature": -1.0}, ValueError, "temperature")])
row("softmax.OnlineSoftmaxState", softmax.OnlineSoftmaxState.identity, {"shape": (3, 1)}, bad=[
    ("shape negative", {"shape": (3, -1)}, ValueError, "shape"),
    ("shape str", {"shape": "31"}, TypeError, "shape")])
row("softmax.merge", softmax.merge, {"a": STATE, "b": STATE}, bad=[
    ("b shape", {"b": softmax.softmax_state(t(2, 6))}, ValueError, "b"),
    ("b tensor", {"b": S}, TypeError, "b")])
row("softmax.update", softmax.update, {"state": STATE, "chunk": t(3, 2)}, bad=[
    ("chunk rows", {"chunk": t(4, 2)}, ValueError, "chunk"), ("state list", {"state": [1, 2]}, TypeError, "state")])
row("softmax.normalize", softmax.normalize, {"x": S, "state": STATE}, bad=[
    ("x rows", {"x": t(4, 6)}, ValueError, "x"), ("x list", {"x": S.tolist()}, TypeError, "x"),
    ("state list", {"state": (1, 2)}, TypeError, "state")])
row("softmax.online_softmax", softmax.online_softmax, {"x": S}, ints={"chunk_size": 1},
    empty=({"x": t(3, 0)}, (3, 0)),
    bad=[("chunk_size list", {"chunk_size": [2, 2]}, ValueError, "chunk_size")])
row("softmax.merge_partials", softmax.merge_partials,
    {"o_a": t(3, 4), "a": STATE, "o_b": t(3, 4, seed=1), "b": STATE}, tensors=("o_a", "o_b"), bad=[
        ("b tensor", {"b": S}, TypeError, "b"), ("o_b shape", {"o_b": t(3, 5)}, ValueError, "o_b")])
for fname in ("softmax_jacobian", "softmax_jacobian_norm"):
    row(f"softmax.{fname}", getattr(softmax, fname), {"p": softmax.softmax(S)}, bad=[
        ("p list", {"p": [0.5, 0.5]}, TypeError, "p"), ("p 0-d", {"p": torch.tensor(1.0)}, ValueError, "p")])

# ---------------------------------------------------------------------------------------------- mha
row("mha.split_heads", mha.split_heads, {"x": X, "num_heads": H}, ints={"num_heads": 1}, bad=[
    ("x rank", {"x": X[0]}, ValueError, "x"), ("x list", {"x": X.tolist()}, TypeError, "x"),
    ("num_heads=3", {"num_heads": 3}, ValueError, "num_heads")])
row("mha.merge_heads", mha.merge_heads, {"x": QKV["q"]}, bad=[
    ("x rank", {"x": X}, ValueError, "x"), ("x list", {"x": X.tolist()}, TypeError, "x")])
row("mha.build_attention_mask", mha.build_attention_mask,
    {"batch": B, "num_heads": H, "q_len": N, "k_len": N, "key_padding_mask": KPM},
    ints={"batch": 1, "num_heads": 1, "q_len": 0, "k_len": 0}, bad=[
        ("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask"),
        ("key_padding_mask shape", {"key_padding_mask": KPM[:, :3]}, ValueError, "key_padding_mask"),
        ("key_padding_mask int", {"key_padding_mask": KPM.long()}, TypeError, "key_padding_mask")])
_W = {f"{p}_weight": t(E, E, seed=i) for i, p in enumerate(("q", "k", "v", "out"))}
row("mha.multi_head_attention", mha.multi_head_attention,
    {"query": X, "key": X, "value": X, "num_heads": H, **_W}, ints={"num_heads": 1},
    tensors=("query", "key", "value"),
    empty=({"query": t(B, 0, E), "key": t(B, 0, E), "value": t(B, 0, E)}, (B, 0, E)), bad=[
        ("num_heads=3", {"num_heads": 3}, ValueError, "num_heads"),
        ("key batch", {"key": t(3, N, E), "value": t(3, N, E)}, ValueError, "key"),
        ("q_weight float64", {"q_weight": _W["q_weight"].double()}, TypeError, "q_weight"),
        ("dropout_p=nan", {"dropout_p": math.nan}, ValueError, "dropout_p")])
module_row("mha.MultiHeadAttention", mha.MultiHeadAttention, {"embed_dim": E, "num_heads": H}, {"query": X},
           ints={"embed_dim": 1, "num_heads": 1},
           bad_init=[("num_heads=3", {"num_heads": 3}, ValueError, "num_heads"),
                     ("dropout=nan", {"dropout": math.nan}, ValueError, "dropout"),
                     ("kdim=0", {"kdim": 0}, ValueError, "kdim"), ("kdim=2.5", {"kdim": 2.5}, TypeError, "kdim")],
           bad=[("key_padding_mask shape", {"key_padding_mask": KPM[:1]}, ValueError, "key_padding_mask"),
                ("key float64", {"key": X.double()}, TypeError, "key")],
           empty=({"query": t(B, 0, E)}, (B, 0, E)), tensors=("query",))
_C = {"embed_dim": E, "num_heads": H, "seq_len": N}
row("mha.mha_param_count", mha.mha_param_count, {"embed_dim": E, "num_heads": H}, ints={"embed_dim": 1, "num_heads": 1},
    bad=[("kdim=0", {"kdim": 0}, ValueError, "kdim")])
row("mha.mha_flops", mha.mha_flops, _C, ints={"embed_dim": 1, "num_heads": 1, "seq_len": 0, "batch": 1},
    bad=[("kv_len=-1", {"kv_len": -1}, ValueError, "kv_len"), ("vdim=0", {"vdim": 0}, ValueError, "vdim")])
row("mha.mha_activation_bytes", mha.mha_activation_bytes, _C,
    ints={"embed_dim": 1, "num_heads": 1, "seq_len": 0, "batch": 1, "bytes_per_element": 1})
row("mha.mha_counts", mha.mha_counts, _C, ints={"embed_dim": 1, "num_heads": 1, "seq_len": 0, "batch": 1})

# ---------------------------------------------------------------------------------------------- rope
COS, SIN = rope.generate_rope_embeddings(8, D)
row("rope.rope_inv_freq", rope.rope_inv_freq, {"head_dim": D}, ints={"head_dim": 1}, reals=("base",),
    bad=[("head_dim=3", {"head_dim": 3}, ValueError, "head_dim"), ("base=0", {"base": 0.0}, ValueError, "base")])
row("rope.rope_angles", rope.rope_angles, {"positions": torch.arange(4.0), "inv_freq": rope.rope_inv_freq(D)},
    bad=[("positions 2-D", {"positions": torch.ones(2, 2)}, ValueError, "positions"),
         ("inv_freq 2-D", {"inv_freq": torch.ones(2, 2)}, ValueError, "inv_freq"),
         ("inv_freq meta", {"inv_freq": rope.rope_inv_freq(D).to("meta")}, ValueError, "inv_freq")])
row("rope.generate_rope_embeddings", rope.generate_rope_embeddings, {"seq_len": 4, "head_dim": D},
    ints={"seq_len": 0, "head_dim": 1}, reals=("base",))
row("rope.rope_embeddings_from_inv_freq", rope.rope_embeddings_from_inv_freq,
    {"seq_len": 4, "inv_freq": rope.rope_inv_freq(D)}, ints={"seq_len": 0}, reals=("attention_factor",),
    bad=[("inv_freq list", {"inv_freq": [1.0, 0.1]}, TypeError, "inv_freq"),
         ("inv_freq 2-D", {"inv_freq": torch.ones(2, 2)}, ValueError, "inv_freq")])
row("rope.rotate_pair", rope.rotate_pair, {"x": 1.0, "y": 0.0, "angle": 0.5}, reals=("x", "y", "angle"))
row("rope.apply_rope", rope.apply_rope, {"x": QKV["q"], "cos": COS, "sin": SIN}, ints={"offset": 0},
    tensors=("cos", "sin"), empty=({"x": t(B, H, 0, D)}, (B, H, 0, D)),
    bad=[("offset too far", {"offset": 4}, ValueError, "offset"), ("x flat", {"x": QKV["q"].flatten()}, ValueError, "x"),
         ("x meta", {"x": QKV["q"].to("meta")}, ValueError, "x"), ("x odd", {"x": t(3, 5)}, ValueError, "x")])
for fname in ("interleaved_to_half_split", "half_split_to_interleaved"):
    row(f"rope.{fname}", getattr(rope, fname), {"x": QKV["q"]}, bad=[
        ("x list", {"x": [1.0, 2.0]}, TypeError, "x"), ("x odd", {"x": t(3, 5)}, ValueError, "x")])
row("rope.permute_qk_weight", rope.permute_qk_weight, {"weight": t(E, E), "num_heads": H}, ints={"num_heads": 1},
    names=("to",), bad=[("weight list", {"weight": [1.0]}, TypeError, "weight"),
                        ("weight 3-D", {"weight": t(E, E, 1)}, ValueError, "weight")])
row("rope.rope_relative_scores", rope.rope_relative_scores, {"q": t(D), "k": t(D, seed=1), "distances": [0, 1, 2]},
    reals=("base",), bad=[("q list", {"q": [1.0] * D}, TypeError, "q"), ("k shape", {"k": t(6)}, ValueError, "k"),
                          ("q odd", {"q": t(3), "k": t(3)}, ValueError, "q")])
row("rope.rope_decay_bound", rope.rope_decay_bound, {"distances": [0, 1], "head_dim": D}, ints={"head_dim": 1},
    reals=("base",), bad=[("distances str", {"distances": "ab"}, TypeError, "distances")])
row("rope.rope_pair_trajectory", rope.rope_pair_trajectory, {"x": 1.0, "y": 0.0, "theta": 0.5, "positions": [0, 1]},
    reals=("x", "y", "theta"))
row("rope.rope_score_curve", rope.rope_score_curve, {"distances": [0, 1], "head_dim": D}, ints={"head_dim": 1},
    reals=("base",))
row("rope.linear_scaled_inv_freq", rope.linear_scaled_inv_freq, {"inv_freq": rope.rope_inv_freq(D), "scale": 2.0},
    reals=("scale",), bad=[("inv_freq list", {"inv_freq": [1.0]}, TypeError, "inv_freq")])
row("rope.ntk_scaled_base", rope.ntk_scaled_base, {"base": 1e4, "head_dim": D, "scale": 2.0}, ints={"head_dim": 1},
    reals=("base", "scale"))
row("rope.ntk_scaled_inv_freq", rope.ntk_scaled_inv_freq, {"base": 1e4, "head_dim": D, "scale": 2.0},
    ints={"head_dim": 1}, reals=("base", "scale"))
row("rope.yarn_ramp", rope.yarn_ramp, {"r": torch.arange(4.0)}, reals=("alpha", "beta"),
    bad=[("r list", {"r": [1.0]}, TypeError, "r"), ("beta < alpha", {"beta": 0.5}, ValueError, "beta")])
_Y = {"head_dim": D, "base": 1e4, "original_max_position": 64}
row("rope.yarn_correction_dim", rope.yarn_correction_dim, {"rotations": 1.0, **_Y},
    ints={"head_dim": 1, "original_max_position": 1}, reals=("rotations", "base"),
    bad=[("rotations=0", {"rotations": 0.0}, ValueError, "rotations")])
row("rope.yarn_correction_range", rope.yarn_correction_range, _Y, ints={"head_dim": 1, "original_max_position": 1},
    reals=("base", "alpha", "beta"))
row("rope.yarn_inv_freq", rope.yarn_inv_freq, {"scale": 2.0, **_Y}, ints={"head_dim": 1, "original_max_position": 1},
    reals=("scale", "base", "alpha", "beta"), names=("ramp",))
row("rope.yarn_attention_factor", rope.yarn_attention_factor, {"scale": 2.0}, reals=("scale",))
row("rope.scaled_rope_embeddings", rope.scaled_rope_embeddings,
    {"seq_len": 4, "head_dim": D, "method": "yarn", "scale": 2.0, "original_max_position": 64},
    ints={"seq_len": 0, "head_dim": 1, "original_max_position": 1}, reals=("base", "scale"), names=("method", "ramp"),
    bad=[("original_max_position None", {"original_max_position": None}, ValueError, "original_max_position")])
row("rope.sinusoidal_position_encoding", rope.sinusoidal_position_encoding, {"seq_len": 4, "d_model": E},
    ints={"seq_len": 0, "d_model": 1}, reals=("base",))
row("rope.alibi_slopes", rope.alibi_slopes, {"num_heads": H}, ints={"num_heads": 1})
row("rope.alibi_bias", rope.alibi_bias, {"slopes": H, "q_len": 3, "k_len": 5}, ints={"q_len": 0, "k_len": 0},
    bad=[("slopes 2-D", {"slopes": torch.ones(2, 2)}, ValueError, "slopes"),
         ("slopes=0", {"slopes": 0}, ValueError, "num_heads"), ("slopes str", {"slopes": "2"}, TypeError, "slopes")])
row("rope.xpos_scale", rope.xpos_scale, {"seq_len": 4, "head_dim": D}, ints={"seq_len": 0, "head_dim": 1, "offset": 0},
    reals=("gamma", "scale_base"), bad=[("scale_base=0", {"scale_base": 0.0}, ValueError, "scale_base")])
row("rope.apply_xpos", rope.apply_xpos, {"q": QKV["q"], "k": QKV["k"], "cos": COS, "sin": SIN},
    ints={"q_offset": 0, "k_offset": 0}, tensors=("q", "k"), reals=("gamma", "scale_base"))
module_row("rope.StandardAttentionWithRoPE", rope.StandardAttentionWithRoPE, {"embed_dim": E, "num_heads": H},
           {"query": X, "key": X, "value": X, "rope_embeddings": rope.generate_rope_embeddings(N, D)},
           ints={"embed_dim": 1, "num_heads": 1},
           bad_init=[("dropout=nan", {"dropout": math.nan}, ValueError, "dropout"),
                     ("num_heads=3", {"num_heads": 3}, ValueError, "num_heads")],
           bad=[("rope_embeddings None", {"rope_embeddings": None}, TypeError, "rope_embeddings"),
                ("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask"),
                ("q_offset=-1", {"q_offset": -1}, ValueError, "q_offset")],
           tensors=("query", "key", "value"))

# ---------------------------------------------------------------------------------------------- flash
row("flash.flash_attention", flash.flash_attention, QKV, ints={"block_q": 1, "block_k": 1},
    tensors=("q", "k", "v"), reals=("scale",), names=("loop_order",),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)), bad=[
        ("alibi_slopes shape", {"alibi_slopes": torch.ones(3)}, ValueError, "alibi_slopes"),
        ("heads mismatch", {"k": t(B, 3, N, D), "v": t(B, 3, N, D)}, ValueError, "k")])
row("flash.tile_scores", flash.tile_scores, {"q_blk": t(2, D), "k_blk": t(3, D), "scale": 0.5},
    ints={"q_start": 0, "k_start": 0}, tensors=("q_blk", "k_blk"), reals=("scale",))
row("flash.online_update", flash.online_update,
    {"m": torch.full((2,), -math.inf), "l": torch.zeros(2), "acc": torch.zeros(2, D), "s": t(2, 3), "v_blk": t(3, D)},
    tensors=("m", "l", "acc", "s", "v_blk"), bad=[("v_blk rows", {"v_blk": t(4, D)}, ValueError, "v_blk")])
row("flash.causal_tile_kind", flash.causal_tile_kind, {"q_start": 0, "q_end": 4, "k_start": 0, "k_end": 4},
    ints={"q_start": 0, "q_end": 1, "k_start": 0, "k_end": 1},
    bad=[("q_end < q_start", {"q_start": 5}, ValueError, "q_end")])
row("flash.tile_schedule", flash.tile_schedule, {"L": 8, "S": 8, "block_q": 4, "block_k": 4},
    ints={"L": 0, "S": 0, "block_q": 1, "block_k": 1}, names=("loop_order",))
row("flash.trace_row", flash.trace_row, {**qkv(N, D), "row": 1, "block_k": 2}, ints={"row": 0, "block_k": 1},
    tensors=("q", "k", "v"), reals=("scale",), bad=[("row=N", {"row": N}, ValueError, "row")])
row("flash.io_standard", flash.io_standard, {"N": 8, "d": 4}, ints={"N": 1, "d": 1})
row("flash.io_flash", flash.io_flash, {"N": 8, "d": 4, "M": 64}, ints={"N": 1, "d": 1, "M": 1}, names=("loop_order",),
    bad=[("block_q=0", {"block_q": 0, "block_k": 4}, ValueError, "block_q")])
row("flash.sram_block_sizes", flash.sram_block_sizes, {"M": 64, "d": 4}, ints={"M": 1, "d": 1})
row("flash.measure_peak_bytes", flash.measure_peak_bytes, {"fn": lambda: torch.ones(4)},
    bad=[("fn not callable", {"fn": 3}, TypeError, "fn")])

# ---------------------------------------------------------------------------------------------- sparse
SQ = qkv(B, H, 12, D)
LAY = torch.eye(3, dtype=torch.bool)
row("sparse.sliding_window_mask", sparse.sliding_window_mask, {"n": 8, "window": 4}, ints={"n": 0, "window": 1, "dilation": 1},
    bad=[("odd window", {"window": 3}, ValueError, "window")])
row("sparse.strided_mask", sparse.strided_mask, {"n": 8, "stride": 2}, ints={"n": 0, "stride": 1},
    bad=[("head=3", {"head": 3}, ValueError, "head")])
row("sparse.fixed_mask", sparse.fixed_mask, {"n": 8, "block": 4, "summary": 1}, ints={"n": 0, "block": 1, "summary": 1},
    bad=[("summary > block", {"summary": 5}, ValueError, "summary")])
row("sparse.block_sparse_mask", sparse.block_sparse_mask, {"layout": LAY, "block": 4}, ints={"block": 1},
    bad=[("layout list", {"layout": [[True]]}, TypeError, "layout"), ("layout 1-D", {"layout": LAY[0]}, ValueError, "layout"),
         ("n=-1", {"n": -1}, ValueError, "n"), ("layout shape", {"n": 20}, ValueError, "layout")])
row("sparse.longformer_mask", sparse.longformer_mask, {"n": 8, "window": 4, "global_idx": [0]},
    ints={"n": 0, "window": 1, "dilation": 1},
    bad=[("global_idx out of range", {"global_idx": [9]}, ValueError, "global_idx"),
         ("odd window", {"window": 3}, ValueError, "window")])
row("sparse.bigbird_layout", sparse.bigbird_layout, {"num_blocks": 8},
    ints={"num_blocks": 0, "num_window_blocks": 1, "num_global_blocks": 0, "num_random_blocks": 0, "seed": 0},
    bad=[("even window blocks", {"num_window_blocks": 2}, ValueError, "num_window_blocks")])
row("sparse.bigbird_mask", sparse.bigbird_mask, {"n": 16, "block": 2},
    ints={"n": 0, "block": 1, "num_window_blocks": 1, "num_random_blocks": 0})
row("sparse.bigbird_full_attention_length", sparse.bigbird_full_attention_length, {"block": 64},
    ints={"block": 1, "num_random_blocks": 0})
_PAT = {"pattern": "fixed", "n": 8, "block": 4, "summary": 1}
row("sparse.pattern_mask", sparse.pattern_mask, _PAT, ints={"n": 0}, names=("pattern",), bad=[
    ("summary > block", {"summary": 5}, ValueError, "summary"), ("missing block", {"block": None}, TypeError, "block"),
    ("unknown argument", {"stride": 2}, TypeError, "stride"),
    ("missing layout", {"pattern": "block_sparse", "block": 4}, TypeError, "layout")])
row("sparse.check_window", sparse.check_window, {"window": 4}, ints={"window": 1, "dilation": 1},
    bad=[("odd window", {"window": 3}, ValueError, "window"), ("named", {"window": 3, "name": "window_size"}, ValueError,
                                                                "window_size")])
row("sparse.check_pattern", sparse.check_pattern, _PAT, ints={"n": 0}, names=("pattern",), bad=[
    ("summary > block", {"summary": 5}, ValueError, "summary"), ("missing block", {"block": None}, TypeError, "block"),
    ("unknown argument", {"stride": 2}, TypeError, "stride"), ("head=3", {"head": 3}, ValueError, "head")])
row("sparse.pattern_predicate", sparse.pattern_predicate, _PAT, ints={"n": 0}, names=("pattern",),
    bad=[("summary > block", {"summary": 5}, ValueError, "summary")])
row("sparse.layout_from_predicate", sparse.layout_from_predicate, {"pred": lambda i, j: j <= i, "n": 8, "block": 4},
    ints={"n": 0, "block": 1}, bad=[("pred not callable", {"pred": 3}, TypeError, "pred")])
row("sparse.sliding_window_attention", sparse.sliding_window_attention, {**SQ, "window": 4},
    ints={"window": 1, "dilation": 1, "chunk": 1}, tensors=("q", "k", "v"), reals=("scale",),
    empty=({**qkv0(B, H, N, D)}, (B, H, 0, D)), bad=[
        ("odd window", {"window": 3}, ValueError, "window"),
        ("key_mask shape", {"key_mask": torch.ones(B, 5, dtype=torch.bool)}, ValueError, "key_mask"),
        ("key_mask int", {"key_mask": torch.ones(B, 1, 12, dtype=torch.long)}, TypeError, "key_mask")])
row("sparse.block_sparse_attention", sparse.block_sparse_attention, {**SQ, "layout": LAY, "block": 4},
    ints={"block": 1}, tensors=("q", "k", "v"), reals=("scale",),
    empty=({**qkv0(B, H, N, D), "layout": torch.ones(0, 0, dtype=torch.bool)}, (B, H, 0, D)),
    bad=[("layout shape", {"layout": torch.eye(2, dtype=torch.bool)}, ValueError, "layout"),
         ("mask_mod not callable", {"mask_mod": 3}, TypeError, "mask_mod")])
row("sparse.longformer_attention", sparse.longformer_attention, {**SQ, "window": 4, "global_idx": [0]},
    ints={"window": 1, "dilation": 1}, tensors=("q", "k", "v"), reals=("scale",),
    empty=({**qkv0(B, H, N, D), "global_idx": []}, (B, H, 0, D)),
    bad=[("global_idx out of range", {"global_idx": [12]}, ValueError, "global_idx")])
row("sparse.bigbird_attention", sparse.bigbird_attention, {**SQ, "block": 2, "num_random_blocks": 1},
    ints={"block": 1, "num_random_blocks": 0, "num_window_blocks": 1}, tensors=("q", "k", "v"), reals=("scale",),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)))
row("sparse.sparse_attention", sparse.sparse_attention, {**SQ, "pattern": "fixed", "block": 4, "summary": 1},
    tensors=("q", "k", "v"), reals=("scale",), names=("pattern",),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)), bad=[
        ("summary > block", {"summary": 5}, ValueError, "summary"),
        ("missing layout", {"pattern": "block_sparse", "summary": None}, TypeError, "layout"),
        ("unknown argument", {"stride": 2}, TypeError, "stride")])
module_row("sparse.SparseAttention", sparse.SparseAttention,
           {"embed_dim": E, "num_heads": H, "pattern": "sliding_window", "window": 4}, {"x": t(B, 12, E)},
           ints={"embed_dim": 1, "num_heads": 1, "window": 1}, names=("pattern",),
           bad_init=[("num_heads=3", {"num_heads": 3}, ValueError, "num_heads"),
                     ("missing layout", {"pattern": "block_sparse", "window": None}, TypeError, "layout")],
           bad=[("key_padding_mask shape", {"key_padding_mask": KPM}, ValueError, "key_padding_mask"),
                ("attn_mask int", {"attn_mask": torch.ones(12, 12, dtype=torch.long)}, TypeError, "attn_mask"),
                ("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask")],
           empty=({"x": t(B, 0, E)}, (B, 0, E)))
row("sparse.pattern_pairs", sparse.pattern_pairs, {"pattern": "sliding_window", "n": 8, "window": 4}, ints={"n": 0},
    names=("pattern",), bad=[("odd window", {"window": 3}, ValueError, "window"),
                                                ("missing layout", {"pattern": "block_sparse", "window": None, "block": 4},
                                                 TypeError, "layout")])
row("sparse.attention_cost", sparse.attention_cost, {"pairs": 64, "n": 8, "head_dim": 4},
    ints={"pairs": 0, "n": 0, "head_dim": 1, "heads": 1, "batch": 1, "dtype_bytes": 1})
MASK = sparse.sliding_window_mask(8, 2)
row("sparse.receptive_field", sparse.receptive_field, {"mask": MASK, "layers": 3}, ints={"layers": 0, "query": -8},
    bad=[("query=8", {"query": 8}, ValueError, "query"), ("mask list", {"mask": [[True]]}, TypeError, "mask"),
         ("mask not square", {"mask": MASK[:4]}, ValueError, "mask")])
row("sparse.layers_to_connect", sparse.layers_to_connect, {"mask": MASK}, ints={"source": -8, "target": -8},
    bad=[("source=8", {"source": 8}, ValueError, "source"), ("max_layers=-1", {"max_layers": -1}, ValueError, "max_layers")])
row("sparse.flex_mask_mod", sparse.flex_mask_mod, {"pattern": "sliding_window", "n": 8, "window": 4}, ints={"n": 0},
    names=("pattern",), bad=[("odd window", {"window": 3}, ValueError, "window")])
row("sparse.flex_block_mask", sparse.flex_block_mask, {"pattern": "sliding_window", "n": 8, "window": 4},
    ints={"n": 1, "block_size": 1}, names=("pattern",))

# ---------------------------------------------------------------------------------------------- linear
LQ = qkv(B, H, 6, D)
for fname in ("elu_feature_map", "relu_feature_map", "softmax_feature_map", "taylor_feature_map"):
    row(f"linear.{fname}", getattr(linear, fname), {"x": S}, bad=[("x list", {"x": [1.0]}, TypeError, "x"),
                                                                  ("x int", {"x": S.long()}, TypeError, "x")])
row("linear.get_feature_map", linear.get_feature_map, {"feature_map": "relu"}, names=("feature_map",))
row("linear.linear_attention", linear.linear_attention, LQ, ints={"chunk_size": 1}, tensors=("q", "k", "v"),
    reals=("eps",), names=("feature_map",), empty=(qkv0(B, H, N, D), (B, H, 0, D)),
    bad=[("key_padding_mask shape", {"key_padding_mask": KPM}, ValueError, "key_padding_mask")])
row("linear.linear_attention_quadratic", linear.linear_attention_quadratic, LQ, tensors=("q", "k", "v"),
    reals=("eps",), names=("feature_map",), empty=(qkv0(B, H, N, D), (B, H, 0, D)))
row("linear.LinearAttentionState", linear.LinearAttentionState.zeros, {"batch_shape": (B, H), "m": D, "dv": D},
    ints={"m": 1, "dv": 1}, bad=[("batch_shape negative", {"batch_shape": (-1,)}, ValueError, "batch_shape")])
row("linear.linear_attention_step", linear.linear_attention_step,
    {"state": None, "q_t": t(B, H, D), "k_t": t(B, H, D, seed=1), "v_t": t(B, H, D, seed=2)},
    tensors=("q_t", "k_t", "v_t"), reals=("eps",), names=("feature_map",),
    bad=[("state list", {"state": [1]}, TypeError, "state")])
row("linear.linear_attention_chunk", linear.linear_attention_chunk, {"state": None, **LQ}, tensors=("q", "k", "v"),
    reals=("eps",), names=("feature_map",), empty=({"state": None, **qkv0(B, H, N, D)}, (B, H, 0, D)),
    bad=[("state list", {"state": [1]}, TypeError, "state")])
row("linear.efficient_attention", linear.efficient_attention, LQ, tensors=("q", "k", "v"),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)))
row("linear.iid_random_features", linear.iid_random_features, {"m": 8, "d": D}, ints={"m": 1, "d": 1},
    bad=[("seed=2.5", {"seed": 2.5}, TypeError, "seed")])
row("linear.orthogonal_random_features", linear.orthogonal_random_features, {"m": 8, "d": D}, ints={"m": 1, "d": 1},
    bad=[("seed=2.5", {"seed": 2.5}, TypeError, "seed")])
PROJ = linear.orthogonal_random_features(8, D)
row("linear.favor_features", linear.favor_features, {"x": LQ["q"], "projection": PROJ}, tensors=("x", "projection"),
    names=("kind",), bad=[("projection width", {"projection": t(8, 3)}, ValueError, "projection")])
row("linear.performer_attention", linear.performer_attention, LQ, ints={"nb_features": 1, "chunk_size": 1},
    tensors=("q", "k", "v"), reals=("eps",), names=("kind",),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)))
row("linear.softmax_kernel", linear.softmax_kernel, {"x": t(3, D), "y": t(4, D)}, tensors=("x", "y"),
    bad=[("y width", {"y": t(4, 3)}, ValueError, "y")])
_EF = {"E": t(6, 3), "F_": t(6, 3, seed=1)}
row("linear.linformer_attention", linear.linformer_attention, {**LQ, **_EF}, tensors=("q", "k", "v"),
    reals=("scale",), bad=[("E rows", {"E": t(5, 3)}, ValueError, "E"), ("E flat", {"E": t(18)}, ValueError, "E"),
                           ("F_ meta", {"F_": _EF["F_"].to("meta")}, ValueError, "F_"),
                           ("F_ list", {"F_": [1.0]}, TypeError, "F_")])
row("linear.segment_means", linear.segment_means, {"x": LQ["q"], "num_landmarks": 3}, ints={"num_landmarks": 1},
    bad=[("x list", {"x": [1.0]}, TypeError, "x"), ("x 1-D", {"x": t(6)}, ValueError, "x"),
         ("num_landmarks > N", {"num_landmarks": 7}, ValueError, "num_landmarks")])
row("linear.iterative_pinv", linear.iterative_pinv, {"a": t(3, 3)}, ints={"iterations": 0},
    bad=[("a list", {"a": [[1.0]]}, TypeError, "a"), ("a not square", {"a": t(3, 4)}, ValueError, "a")])
row("linear.nystrom_attention", linear.nystrom_attention, {**LQ, "num_landmarks": 3},
    ints={"num_landmarks": 1, "pinv_iterations": 0}, tensors=("q", "k", "v"), reals=("scale",),
   )
row("linear.cosformer_weights", linear.cosformer_weights, {"n_q": 3, "n_k": 4, "M": 4},
    ints={"n_q": 0, "n_k": 0, "M": 1, "offset_q": 0})
row("linear.cosformer_attention", linear.cosformer_attention, LQ, ints={"chunk_size": 1}, tensors=("q", "k", "v"),
    reals=("eps",), empty=(qkv0(B, H, N, D), (B, H, 0, D)),
    bad=[("max_len=0", {"max_len": 0}, ValueError, "max_len"), ("causal, no max_len", {"causal": True}, ValueError, "max_len"),
         ("max_len < N", {"causal": True, "max_len": 4}, ValueError, "max_len")])
row("linear.softmax_attention", linear.softmax_attention, LQ, tensors=("q", "k", "v"), reals=("scale",),
    empty=(qkv0(B, H, N, D), (B, H, 0, D)))
row("linear.attention_cost", linear.attention_cost, {"method": "performer", "N": 8, "d": 4, "m": 8},
    ints={"N": 0, "d": 1, "m": 1, "bytes_per": 1}, names=("method",),
    bad=[("m None", {"m": None}, ValueError, "m"), ("dv=0", {"dv": 0}, ValueError, "dv")])
LX = t(B, 6, E)
_LIN_BAD = [("key_padding_mask shape", {"key_padding_mask": KPM}, ValueError, "key_padding_mask"),
            ("attn_mask given", {"attn_mask": torch.ones(6, 6, dtype=torch.bool)}, ValueError, "attn_mask")]
_LIN_EMPTY = ({"x": t(B, 0, E)}, (B, 0, E))
module_row("linear.LinearAttention", linear.LinearAttention, {"embed_dim": E, "num_heads": H}, {"x": LX},
           ints={"embed_dim": 1, "num_heads": 1, "chunk_size": 1}, reals=("eps",), names=("feature_map",),
           bad_init=[("num_heads=3", {"num_heads": 3}, ValueError, "num_heads")],
           bad=_LIN_BAD, empty=_LIN_EMPTY)
module_row("linear.EfficientAttention", linear.EfficientAttention, {"embed_dim": E, "num_heads": H}, {"x": LX},
           ints={"embed_dim": 1, "num_heads": 1}, bad=_LIN_BAD, empty=_LIN_EMPTY)
module_row("linear.PerformerAttention", linear.PerformerAttention, {"embed_dim": E, "num_heads": H}, {"x": LX},
           ints={"embed_dim": 1, "num_heads": 1, "nb_features": 1, "seed": 0}, reals=("eps",), names=("kind",),
           bad=_LIN_BAD, empty=_LIN_EMPTY)
module_row("linear.LinformerAttention", linear.LinformerAttention, {"embed_dim": E, "num_heads": H, "seq_len": 8},
           {"x": LX}, ints={"embed_dim": 1, "num_heads": 1, "seq_len": 1, "k": 1}, names=("share",),
           bad_init=[("shared shape", {"shared": torch.nn.Parameter(t(3, 3))}, ValueError, "shared")],
           bad=_LIN_BAD + [("x longer than seq_len", {"x": t(B, 9, E)}, ValueError, "seq_len")], empty=_LIN_EMPTY)
module_row("linear.NystromAttention", linear.NystromAttention, {"embed_dim": E, "num_heads": H, "num_landmarks": 3},
           {"x": LX}, ints={"embed_dim": 1, "num_heads": 1, "num_landmarks": 1, "pinv_iterations": 0,
                           "residual_conv_kernel": 1}, bad=_LIN_BAD, empty=_LIN_EMPTY)
module_row("linear.CosFormerAttention", linear.CosFormerAttention, {"embed_dim": E, "num_heads": H}, {"x": LX},
           ints={"embed_dim": 1, "num_heads": 1, "max_len": 1}, reals=("eps",),
           bad_init=[("causal, no max_len", {"causal": True}, ValueError, "max_len")], bad=_LIN_BAD, empty=_LIN_EMPTY)

# ---------------------------------------------------------------------------------------------- lora
LA, LB = t(2, 6), t(5, 2, seed=1)
row("lora.lora_scaling", lora.lora_scaling, {"r": 4, "lora_alpha": 8.0}, ints={"r": 1}, reals=("lora_alpha",),
    bad=[("lora_alpha=0", {"lora_alpha": 0.0}, ValueError, "lora_alpha")])
row("lora.lora_delta", lora.lora_delta, {"A": LA, "B": LB, "scaling": 2.0}, tensors=("A", "B"), reals=("scaling",),
    bad=[("r mismatch", {"B": t(5, 3)}, ValueError, "B")])
_LW = {"weight": t(5, 6), "A": LA, "B": LB, "scaling": 2.0}
row("lora.lora_linear", lora.lora_linear, {"x": t(3, 6), "bias": None, **_LW}, tensors=("x", "weight", "A", "B"),
    reals=("scaling",), bad=[("x width", {"x": t(3, 5)}, ValueError, "x"), ("A width", {"A": t(2, 5)}, ValueError, "A")])
for fname in ("merge_weight", "unmerge_weight"):
    row(f"lora.{fname}", getattr(lora, fname), _LW, tensors=("weight", "A", "B"), reals=("scaling",),
        bad=[("A width", {"A": t(2, 5)}, ValueError, "A")])
row("lora.lora_param_count", lora.lora_param_count, {"in_features": 6, "out_features": 5, "r": 2},
    ints={"in_features": 1, "out_features": 1, "r": 1})
row("lora.subspace_similarity", lora.subspace_similarity, {"A1": t(3, 6), "A2": t(2, 6, seed=1)}, tensors=("A1", "A2"),
    ints={"i": 1, "j": 1}, bad=[("i > r1", {"i": 4, "j": 1}, ValueError, "i"), ("A2 width", {"A2": t(2, 5)}, ValueError, "A2")])
module_row("lora.LoRALinear", lora.LoRALinear, {"in_features": 6, "out_features": 5, "r": 2}, {"x": t(3, 6)},
           ints={"in_features": 1, "out_features": 1, "r": 1}, reals=("lora_alpha",),
           bad_init=[("lora_dropout=1", {"lora_dropout": 1.0}, ValueError, "lora_dropout")],
           bad=[("x width", {"x": t(3, 5)}, ValueError, "x")], empty=({"x": t(0, 6)}, (0, 5)))
_MODEL = torch.nn.Sequential(lora.LoRALinear(6, 5, r=2))
row("lora.mark_only_lora_as_trainable", lora.mark_only_lora_as_trainable, {"model": _MODEL}, names=("bias",),
    bad=[("model list", {"model": [1]}, TypeError, "model")])
row("lora.lora_state_dict", lora.lora_state_dict, {"model": _MODEL}, names=("bias",),
    bad=[("model list", {"model": [1]}, TypeError, "model")])
row("lora.count_parameters", lora.count_parameters, {"model": _MODEL}, bad=[("model list", {"model": [1]}, TypeError, "model")])
row("lora.local_bucket_attention", lora.local_bucket_attention, {**qkv(B, H, 6, D), "window": 2}, ints={"window": 1},
    tensors=("q", "k", "v"), empty=({**qkv0(B, H, N, D)}, (B, H, 0, D)),
    bad=[("key_mask shape", {"key_mask": KPM[:, :3]}, ValueError, "key_mask"),
         ("dropout_p=nan", {"dropout_p": math.nan}, ValueError, "dropout_p"),
         ("heads mismatch", {"k": t(B, 3, 6, D)}, ValueError, "k")])
row("lora.global_linear_attention", lora.global_linear_attention, qkv(B, H, 6, D), ints={"blindspot_size": 1},
    tensors=("q", "k", "v"), reals=("eps",), empty=(qkv0(B, H, N, D), (B, H, 0, D)),
    bad=[("key_mask shape", {"key_mask": KPM[:, :3]}, ValueError, "key_mask")])
row("lora.visible_keys", lora.visible_keys, {"n": 6, "kind": "local", "window": 2}, ints={"n": 0, "window": 1,
    "blindspot_size": 1}, names=("kind",),
    bad=[("key_mask shape", {"key_mask": KPM[:, :3]}, ValueError, "key_mask")])
module_row("lora.LoRASelfAttention", lora.LoRASelfAttention,
           {"dim": E, "heads": H, "dim_head": D, "r": 2, "n_local_attn_heads": 1, "local_attn_window_size": 2},
           {"x": LX}, ints={"dim": 1, "heads": 1, "dim_head": 1, "r": 1, "local_attn_window_size": 1,
                            "blindspot_size": 1, "n_local_attn_heads": 0},
           reals=("lora_alpha", "attn_dropout", "dropout"),
           bad_init=[("enable_lora unknown", {"enable_lora": ("x",)}, ValueError, "enable_lora"),
                     ("n_local_attn_heads > heads", {"n_local_attn_heads": 3}, ValueError, "n_local_attn_heads")],
           bad=[("input_mask shape", {"input_mask": KPM}, ValueError, "input_mask")], empty=_LIN_EMPTY)

# ---------------------------------------------------------------------------------------------- gqa
GQ = {"q": t(B, 4, N, D), "k": t(B, 2, N, D, seed=1), "v": t(B, 2, N, D, seed=2)}
row("gqa.KVCache", gqa.KVCache, {"max_len": 8}, bad=[("max_len=0", {"max_len": 0}, ValueError, "max_len"),
                                                   ("max_len=2.5", {"max_len": 2.5}, TypeError, "max_len")])
row("gqa.RollingKVCache", gqa.RollingKVCache, {"window": 4, "sink": 1}, ints={"window": 1, "sink": 0})
row("gqa.sink_window_mask", gqa.sink_window_mask, {"n": 6, "window": 3, "sink": 1}, ints={"n": 0, "window": 1, "sink": 0})
row("gqa.rolling_decode", gqa.rolling_decode, {**qkv(B, H, N, D), "window": 2, "sink": 1}, tensors=("q", "k", "v"),
    ints={"window": 1, "sink": 0}, reals=("scale",), empty=(qkv0(B, H, N, D), (B, H, 0, D)),
    bad=[("k shorter than q", {"k": t(B, H, 3, D), "v": t(B, H, 3, D)}, ValueError, "k")])
row("gqa.repeat_kv", gqa.repeat_kv, {"x": GQ["k"], "n_rep": 2}, ints={"n_rep": 1},
    bad=[("x rank", {"x": t(2, 3)}, ValueError, "x"), ("x list", {"x": [1.0]}, TypeError, "x")])
row("gqa.kv_head_index", gqa.kv_head_index, {"num_heads": 4, "num_kv_heads": 2}, ints={"num_heads": 1, "num_kv_heads": 1},
    bad=[("not a divisor", {"num_kv_heads": 3}, ValueError, "num_kv_heads")])
row("gqa.grouped_query_attention", gqa.grouped_query_attention, GQ, tensors=("q", "k", "v"), reals=("scale",),
    empty=({"q": t(B, 4, 0, D), "k": t(B, 2, 0, D), "v": t(B, 2, 0, D)}, (B, 4, 0, D)), bad=[
        ("kv heads not a divisor", {"k": t(B, 3, N, D), "v": t(B, 3, N, D)}, ValueError, "k"),
        ("batch mismatch", {"k": t(3, 2, N, D), "v": t(3, 2, N, D)}, ValueError, "k"),
        ("dropout_p=nan", {"dropout_p": math.nan}, ValueError, "dropout_p"),
        ("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask")])
row("gqa.mean_pool_kv_heads", gqa.mean_pool_kv_heads, {"weight": t(16, 8), "num_heads": 4, "num_kv_heads": 2},
    ints={"num_heads": 1, "num_kv_heads": 1}, bad=[("weight rows", {"weight": t(15, 8)}, ValueError, "weight"),
                                                  ("weight list", {"weight": [1.0]}, TypeError, "weight")])
module_row("gqa.GroupedQueryAttention", gqa.GroupedQueryAttention, {"embed_dim": 16, "num_heads": 4, "num_kv_heads": 2},
           {"x": t(B, N, 16)}, ints={"embed_dim": 1, "num_heads": 1, "num_kv_heads": 1},
           bad_init=[("num_kv_heads=3", {"num_kv_heads": 3}, ValueError, "num_kv_heads"),
                     ("dropout=nan", {"dropout": math.nan}, ValueError, "dropout")],
           bad=[("attn_mask shape", {"attn_mask": torch.ones(3, 3, dtype=torch.bool)}, ValueError, "attn_mask")],
           empty=({"x": t(B, 0, 16)}, (B, 0, 16)))
module_row("gqa.MultiHeadLatentAttention", gqa.MultiHeadLatentAttention,
           {"embed_dim": 16, "num_heads": 2, "kv_lora_rank": 4, "qk_nope_head_dim": 4, "qk_rope_head_dim": 2,
            "v_head_dim": 4}, {"x": t(B, N, 16)},
           ints={"embed_dim": 1, "num_heads": 1, "kv_lora_rank": 1, "qk_nope_head_dim": 1, "v_head_dim": 1},
           reals=("rope_base", "norm_eps"),
           bad_init=[("odd rope dim", {"qk_rope_head_dim": 3}, ValueError, "qk_rope_head_dim")],
           empty=({"x": t(B, 0, 16)}, (B, 0, 16)))
_KV = {"kind": "gqa", "num_heads": 8, "head_dim": 64, "num_kv_heads": 2}
row("gqa.kv_cache_elements_per_token", gqa.kv_cache_elements_per_token, _KV,
    ints={"num_heads": 1, "head_dim": 1, "num_kv_heads": 1}, names=("kind",),
    bad=[("num_kv_heads missing", {"num_kv_heads": None}, ValueError, "num_kv_heads")])
row("gqa.kv_cache_bytes_per_token", gqa.kv_cache_bytes_per_token, _KV,
    ints={"num_heads": 1, "head_dim": 1, "num_kv_heads": 1, "num_layers": 1}, names=("kind",))
row("gqa.kv_cache_bytes", gqa.kv_cache_bytes, {**_KV, "seq_len": 16}, ints={"seq_len": 0, "batch_size": 1},
    names=("kind",))
row("gqa.compare_cache_sizes", gqa.compare_cache_sizes,
    {"num_heads": 8, "num_kv_heads": 2, "head_dim": 64, "num_layers": 2, "seq_len": 16},
    ints={"num_heads": 1, "num_kv_heads": 1, "head_dim": 1, "num_layers": 1, "seq_len": 0, "batch_size": 1})
row("gqa.weights_bytes", gqa.weights_bytes, {"num_params": 100}, ints={"num_params": 0},
    bad=[("dtype str", {"dtype": "bf16"}, TypeError, "dtype")])
row("gqa.max_batch_size", gqa.max_batch_size, {"memory_bytes": 1000, "weights_bytes": 100, "cache_bytes_per_sequence": 10},
    ints={"memory_bytes": 0, "weights_bytes": 0, "cache_bytes_per_sequence": 1})
row("gqa.max_context_length", gqa.max_context_length,
    {"memory_bytes": 1000, "weights_bytes": 100, "cache_bytes_per_token": 10},
    ints={"memory_bytes": 0, "weights_bytes": 0, "cache_bytes_per_token": 1, "batch_size": 1})
row("gqa.decode_tokens_per_s_bound", gqa.decode_tokens_per_s_bound,
    {"bandwidth_bytes_per_s": 1e12, "weights_bytes": 100, "cache_bytes_per_sequence": 10},
    ints={"weights_bytes": 0, "cache_bytes_per_sequence": 0, "batch_size": 1}, reals=("bandwidth_bytes_per_s",),
    bad=[("bandwidth 0", {"bandwidth_bytes_per_s": 0.0}, ValueError, "bandwidth_bytes_per_s")])
row("gqa.memory_budget", gqa.memory_budget,
    {"kind": "gqa", "num_params": 1000, "memory_bytes": 10**9, "context": 64, "num_layers": 2, "num_heads": 8,
     "num_kv_heads": 2, "head_dim": 64},
    ints={"num_params": 0, "memory_bytes": 0, "context": 1, "num_layers": 1, "num_heads": 1, "num_kv_heads": 1,
          "head_dim": 1}, names=("kind",))

# ---------------------------------------------------------------------------------------------- factory
FX = t(B, 8, 16)
row("factory.AttentionConfig", factory.AttentionConfig, {"attention_type": "local", "d_model": 16, "n_heads": 2},
    ints={"d_model": 1, "n_heads": 1, "window_size": 1, "block_size": 1, "stride": 1, "nb_features": 1,
          "num_landmarks": 1, "proj_k": 1, "max_seq_len": 1, "kv_lora_rank": 1, "num_global_tokens": 0,
          "num_random_blocks": 0, "lora_r": 1, "conv_kernel": 0},
    reals=("dropout", "lora_alpha", "mlp_ratio"), names=("attention_type", "feature_map", "positional"),
    bad=[("odd window", {"window_size": 5}, ValueError, "window_size"),
         ("n_heads=3", {"n_heads": 3}, ValueError, "n_heads"), ("causal str", {"causal": "yes"}, TypeError, "causal")])
row("factory.AttentionFactory", factory.AttentionFactory.create_attention, {"config": factory.AttentionConfig(d_model=16, n_heads=2)},
    bad=[("config a name", {"config": "full"}, TypeError, "config")])
for name in factory.NAMES:  # every mechanism behind the factory's one forward
    cfg = factory.AttentionConfig(name, d_model=16, n_heads=2, window_size=4, block_size=4, stride=4, max_seq_len=8,
                                  num_landmarks=2, proj_k=4)
    mixer = factory.AttentionFactory.create_attention(cfg)
    row(f"factory.AttentionFactory:{name}", mixer, {"x": FX}, tensors=("x",), module=True,
        bad=[("key_padding_mask shape", {"key_padding_mask": KPM}, ValueError, "key_padding_mask"),
             ("key_padding_mask int", {"key_padding_mask": torch.ones(B, 8, dtype=torch.long)}, TypeError,
              "key_padding_mask")] if name != "flash" else [])
row("factory.AttentionSelector", factory.AttentionSelector.select_for_scenario,
    {"scenario": "long_context", "seq_len": 1024, "memory_constraint": 64.0, "d_model": 64, "n_heads": 4},
    ints={"seq_len": 1, "batch_size": 1, "dtype_bytes": 1}, reals=("memory_constraint",), names=("scenario",),
    bad=[("memory_constraint=0", {"memory_constraint": 0.0}, ValueError, "memory_constraint")])
row("factory.AttentionSelector:candidates", factory.AttentionSelector.candidates,
    {"scenario": "long_context", "seq_len": 1024}, ints={"seq_len": 1, "batch_size": 1, "dtype_bytes": 1}, names=("scenario",))
row("factory.AttentionProfiler", factory.AttentionProfiler.profile_attention,
    {"attention_type": "full", "batch_size": 1, "seq_len": 8, "num_iterations": 1, "d_model": 16, "n_heads": 2,
     "warmup": 0}, ints={"batch_size": 1, "seq_len": 1, "num_iterations": 1, "d_model": 1, "n_heads": 1, "warmup": 0},
    names=("attention_type",))
_BLOCK = factory.AttentionConfig(d_model=16, n_heads=2)
module_row("factory.TransformerBlock", factory.TransformerBlock, {"config": _BLOCK}, {"x": FX},
           bad_init=[("config a name", {"config": "full"}, TypeError, "config")], empty=({"x": t(B, 0, 16)}, (B, 0, 16)))
_LM = [factory.AttentionConfig(d_model=16, n_heads=2, causal=True)]
row("factory.TinyLM", factory.TinyLM, {"vocab_size": 10, "configs": _LM, "max_len": 8}, ints={"vocab_size": 1, "max_len": 1},
    bad=[("configs empty", {"configs": []}, TypeError, "configs")])
torch.manual_seed(0)
_TINY = factory.TinyLM(10, _LM, max_len=8)
row("factory.TinyLM.forward", _TINY, {"tokens": torch.randint(0, 10, (B, 8))}, bad=[
    ("tokens float", {"tokens": FX[..., 0]}, TypeError, "tokens"), ("tokens too long", {"tokens": torch.zeros(B, 9, dtype=torch.long)},
                                                                    ValueError, "max_len"),
    ("tokens out of range", {"tokens": torch.full((B, 8), 10)}, ValueError, "tokens"),
    ("tokens rank", {"tokens": torch.zeros(8, dtype=torch.long)}, ValueError, "tokens")])
row("factory.canonical_name", factory.canonical_name, {"name": "mha"}, bad=[("unknown", {"name": "nope"}, ValueError, "attention_type")])
row("factory.param_count", factory.param_count, {"cfg": _BLOCK}, bad=[("cfg a name", {"cfg": "full"}, TypeError, "cfg")])
row("factory.memory_breakdown", factory.memory_breakdown, {"cfg": _BLOCK, "seq_len": 16},
    ints={"seq_len": 0, "batch_size": 1, "dtype_bytes": 1}, names=("mode",), bad=[("cfg a name", {"cfg": "full"}, TypeError, "cfg")])
row("factory.sparse_pairs", factory.sparse_pairs, {"cfg": factory.AttentionConfig("local", d_model=16, n_heads=2, window_size=4), "N": 16},
    ints={"N": 0}, bad=[("cfg a name", {"cfg": "local"}, TypeError, "cfg"), ("cfg not sparse", {"cfg": _BLOCK}, ValueError, "cfg")])
module_row("factory.ShortConv", factory.ShortConv, {"d_model": 16, "kernel": 3}, {"x": FX}, ints={"d_model": 1, "kernel": 1},
           bad=[("x width", {"x": t(B, 8, 5)}, ValueError, "x")], empty=({"x": t(B, 0, 16)}, (B, 0, 16)))
row("factory.Mixer", factory.Mixer, {"config": _BLOCK, "inner": torch.nn.Identity()},
    bad=[("config a name", {"config": "full"}, TypeError, "config"), ("inner not a module", {"inner": 3}, TypeError, "inner")])
module_row("factory.LoRAMHA", factory.LoRAMHA, {"embed_dim": 16, "num_heads": 2, "r": 2, "lora_alpha": 4.0, "targets": ("q", "v")},
           {"x": FX}, ints={"embed_dim": 1, "num_heads": 1, "r": 1}, reals=("lora_alpha",),
           bad_init=[("targets unknown", {"targets": ("x",)}, ValueError, "targets")], empty=({"x": t(B, 0, 16)}, (B, 0, 16)))

# ---------------------------------------------------------------------------------------------- mqar
CFG = factory.AttentionConfig("linear", d_model=16, n_heads=2, causal=True)
row("mqar.gap_probabilities", mqar.gap_probabilities, {"space": 4}, ints={"space": 1}, reals=("power_a",),
    bad=[("power_a=0", {"power_a": 0.0}, ValueError, "power_a")])
row("mqar.mqar_batch", mqar.mqar_batch, {"batch": 2, "vocab_size": 16, "seq_len": 16, "num_pairs": 2, "seed": 0},
    ints={"batch": 1, "vocab_size": 4, "seq_len": 4, "num_pairs": 1, "seed": 0}, reals=("power_a",),
    bad=[("vocab too small", {"num_pairs": 8}, ValueError, "vocab_size")])
_TGT = mqar.mqar_batch(2, 16, 16, 2, 0)[1]
row("mqar.query_positions", mqar.query_positions, {"targets": _TGT},
    bad=[("targets list", {"targets": [1]}, TypeError, "targets"), ("targets float", {"targets": _TGT.float()}, TypeError, "targets")])
row("mqar.recall_accuracy", mqar.recall_accuracy, {"logits": t(2, 16, 16), "targets": _TGT}, bad=[
    ("logits shape", {"logits": t(2, 15, 16)}, ValueError, "logits"), ("logits list", {"logits": [1.0]}, TypeError, "logits"),
    ("targets list", {"targets": [1]}, TypeError, "targets")])
row("mqar.chance_accuracy", mqar.chance_accuracy, {"vocab_size": 16}, ints={"vocab_size": 2})
row("mqar.decode_state_bytes", mqar.decode_state_bytes, {"config": CFG, "seq_len": 16}, ints={"seq_len": 1, "dtype_bytes": 1},
    bad=[("config a name", {"config": "full"}, TypeError, "config")])
row("mqar.train_mqar", mqar.train_mqar, {"configs_or_type": "linear", "steps": 1, "batch": 2, "eval_batch": 2, "width": 16,
                                         "layers": 1, "vocab_size": 16, "seq_len": 16, "num_pairs": 2},
    ints={"steps": 1, "batch": 1, "width": 1, "layers": 1, "eval_batch": 1}, reals=("lr",),
    bad=[("unknown type", {"configs_or_type": "nope"}, ValueError, "attention_type"),
         ("lr=0", {"lr": 0.0}, ValueError, "lr"), ("vocab too small", {"num_pairs": 8}, ValueError, "vocab_size")])


# ---------------------------------------------------------------------------------------------- the checks


EMPTY = [pytest.param(r, id=r.name) for r in ROWS if r.empty]


def _own_raise(e: BaseException) -> tuple[str, str]:
    """Where an exception was raised: (file, source line) of the innermost frame."""
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return frame.filename, linecache.getline(frame.filename, frame.lineno).strip()


def _verdict(r, upd, exc, name) -> str | None:
    """None when the call raises attnkit's own ``exc`` naming ``name``, else what happened."""
    try:
        r.fn(**{**r.good, **upd})
    except Exception as e:  # noqa: BLE001 (any exception is judged below)
        where, line = _own_raise(e)
        if not (where.startswith(ATTNKIT) and line.startswith("raise")):
            return f"{type(e).__name__} from {where}: {line!r} (not attnkit's own raise): {e}"
        if type(e) is not exc:
            return f"expected {exc.__name__}, got {type(e).__name__}: {e}"
        if name not in str(e):
            return f"the message does not name {name!r}: {e}"
        return None
    return "DID NOT RAISE (a silent accept)"


@pytest.mark.parametrize("r", [pytest.param(r, id=r.name) for r in ROWS])
def test_bad_arguments_get_attnkits_own_error_naming_them(r):
    """Every case of the row's battery (one test per row: the battery runs in a loop, and every
    failing case is listed)."""
    failures = [f"{label}: {v}" for label, upd, exc, name in r.cases() if (v := _verdict(r, upd, exc, name))]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("r", EMPTY)
def test_empty_sequence_has_a_defined_answer(r):
    upd, shape = r.empty
    out = r.fn(**{**r.good, **upd})
    out = out[0] if isinstance(out, tuple) else out
    assert tuple(out.shape) == shape
    assert not out.isnan().any()


@pytest.mark.parametrize("r", [pytest.param(r, id=r.name) for r in ROWS])
def test_good_arguments_work(r):
    """The table's good arguments are accepted (so every bad case differs from a working call)."""
    out = r.fn(**r.good)
    for x in out if isinstance(out, tuple) else (out,):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            assert not x.isnan().any()


def test_every_public_name_has_a_row():
    covered = {r.name.split(":")[0].removesuffix(".forward") for r in ROWS}
    missing = [f"{m}.{n}" for m, mod in MODULES.items() for n in mod.__all__
               if f"{m}.{n}" not in covered | CONSTANTS]
    assert not missing, f"public names with no bad-input row: {missing}"
