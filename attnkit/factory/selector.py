"""AttentionSelector: picks a mechanism for a scenario and a memory budget from the cost formulas, with its reason."""

from __future__ import annotations

import dataclasses

from attnkit import validate
from attnkit.factory.config import CAUSAL_ONLY, NAMES, NO_CAUSAL, AttentionConfig, _positive_int
from attnkit.factory.costs import MB, memory_breakdown
from attnkit.i18n import register, t

register({
    "factory.reason": {
        "en": "{scenario} at N = {seq_len}: {choice} needs {memory:.1f} MB by the formula (full attention "
              "{full:.1f} MB), within the budget of {constraint:.1f} MB. Rule: {rule}",
        "zh": "{scenario}，N = {seq_len}：按公式 {choice} 需要 {memory:.1f} MB（全注意力 {full:.1f} MB），"
              "在 {constraint:.1f} MB 的预算之内。规则：{rule}",
    },
    "factory.rule.training": {
        "en": "the first that fits, exact attention first (full, torch's fused kernel), then sparse, then linear.",
        "zh": "按顺序取第一个放得下的：先精确注意力（full，即 torch 的融合算子），再稀疏，最后线性。",
    },
    "factory.rule.inference": {
        "en": "the least compressed KV cache that fits: full, gqa, mla, mqa, then a window, then a "
              "linear state.",
        "zh": "取放得下的、KV 缓存压缩最少的：full、gqa、mla、mqa，然后是窗口，最后是线性注意力的状态。",
    },
    "factory.rule.long_context": {
        "en": "exact if it fits (full: the fused kernel, O(N) memory), then sparse patterns with global tokens, "
              "then windows, then linear.",
        "zh": "放得下就用精确注意力（full：融合算子，内存 O(N)），其次是带全局词元的稀疏模式，再次是窗口，最后是线性。",
    },
    "factory.rule.memory_limited": {
        "en": "the least memory of all mechanisms.",
        "zh": "所有机制中内存最少的。",
    },
})


# scenario -> (memory mode, candidates in order of preference, rule). Exact attention is "full",
# torch's fused kernel: it holds no N x N matrix and runs faster than "flash" (chapter 07's tiling in
# Python, for teaching) and "math" (the materialising path), which are no candidates of the ordered
# rules. block_sparse is block-diagonal (no token sees another block, at any depth): a candidate only
# where the least memory is all that counts.
SCENARIOS = {
    "training": ("training", ("full", "local", "longformer", "bigbird", "performer", "cosformer",
                              "linear", "gated_deltanet"), "first"),
    "inference": ("decode", ("full", "gqa", "mla", "mqa", "local", "linear", "gated_deltanet"), "first"),
    "long_context": ("forward", ("full", "longformer", "bigbird", "local", "performer", "cosformer", "linear",
                                 "gated_deltanet"), "first"),
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
            if overrides.get("causal") is False and name in CAUSAL_ONLY:  # asked for a non-causal layer
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
        validate.real_number("memory_constraint", memory_constraint, 0.0, low_open=True)  # MB
        mode, _, rule = SCENARIOS[scenario]
        cands = AttentionSelector.candidates(scenario, seq_len, batch_size, dtype_bytes, **overrides)
        fits = [(c, m) for c, m in cands if m <= memory_constraint]
        if not fits:
            c, m = min(cands, key=lambda cm: cm[1])
            raise ValueError(f"memory_constraint={memory_constraint} MB: no {scenario} candidate fits at "
                             f"seq_len={seq_len}; the smallest need is {m:.1f} MB ({c.attention_type})")
        choice, mem = fits[0] if rule == "first" else min(fits, key=lambda cm: cm[1])
        full_cfg = dataclasses.replace(choice, attention_type="full", reason=None, memory_mb=None,
                                       causal=choice.causal or mode == "decode")
        full = AttentionSelector.memory_mb(full_cfg, seq_len, batch_size, dtype_bytes, mode)
        choice.memory_mb = mem
        choice.reason = t("factory.reason", scenario=scenario, seq_len=seq_len, choice=choice.attention_type, memory=mem,
                          full=full, constraint=float(memory_constraint), rule=t(f"factory.rule.{scenario}"))
        return choice
