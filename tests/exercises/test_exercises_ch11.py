"""Chapter 11 checkers: each passes its reference solution (itself checked against an oracle:
attnkit.mqar's layout, a bisection on AttentionSelector.memory_mb, tokens per second recomputed,
a trained model's recall measured) and fails typical wrong answers, in both languages."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit import exercises
from attnkit import mqar as M
from attnkit.exercises import ch11, show_hint
from attnkit.factory import AttentionConfig, AttentionProfiler, AttentionSelector, TinyLM
from attnkit.i18n import set_language
from attnkit.sparse import sliding_window_mask
from helpers import run

# ---------------------------------------------------------------- exercise 1: the MQAR layout


def test_layout_solution_passes_and_matches_mqar_batch(capsys):
    ok, out = run(ch11.check_mqar_layout, ch11.solution_mqar_layout, capsys)
    assert ok and "✅" in out and f"all {len(ch11.LAYOUT_CASES)} cases pass" in out
    # the oracle: attnkit.mqar's own batch, taken apart into its draws and rebuilt
    x, y = M.mqar_batch(4, 32, 32, 8, seed=3)
    K = 8
    keys, values = x[:, 0:2 * K:2], x[:, 1:2 * K:2]
    slots = torch.zeros_like(keys)
    for b in range(4):
        for i in range(K):
            pos = [p for p in range(2 * K, 32) if x[b, p] == keys[b, i]]
            slots[b, i] = (pos[0] - 2 * K) // 2
    got = ch11.solution_mqar_layout(keys, values, slots, 32)
    assert torch.equal(got[0], x) and torch.equal(got[1], y)


def _shifted_target(keys, values, slots, seq_len):  # the target one position after the query
    x, y = ch11.solution_mqar_layout(keys, values, slots, seq_len)
    return x, torch.cat([torch.full_like(y[:, :1], -100), y[:, :-1]], dim=1)


def _odd_offsets(keys, values, slots, seq_len):  # queries at 2K + slot instead of 2K + 2 slot
    return ch11.solution_mqar_layout(keys, values, slots // 2, seq_len)


def _zero_targets(keys, values, slots, seq_len):  # 0 instead of -100 where nothing is scored
    x, y = ch11.solution_mqar_layout(keys, values, slots, seq_len)
    return x, y.clamp(min=0)


@pytest.mark.parametrize("wrong", [_shifted_target, _odd_offsets, _zero_targets])
def test_layout_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch11.check_mqar_layout, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_layout_calling_mqar_batch_is_refused(capsys):
    def lazy(keys, values, slots, seq_len):
        return M.mqar_batch(keys.shape[0], 32, seq_len, keys.shape[1], seed=0)

    ok, out = run(ch11.check_mqar_layout, lazy, capsys)
    assert not ok and "attnkit.mqar.mqar_batch" in out


def test_layout_staged_hints(capsys, monkeypatch):
    monkeypatch.setitem(ch11.MISTAKES, "ch11.ex1", ())  # the staged hints, not the diagnosis (tested elsewhere)
    exercises._STAGE.pop("ch11.ex1", None)
    _, first = run(ch11.check_mqar_layout, _shifted_target, capsys)
    _, second = run(ch11.check_mqar_layout, _shifted_target, capsys)
    assert "Three parts" in first and "not one later" in second
    assert "scatter_" not in first + second  # the answer only on request
    show_hint("ch11.ex1")
    assert "x.scatter_(1, pos, keys)" in capsys.readouterr().out


# ---------------------------------------------------------------- exercise 2: the longest length


def longest_by_bisection(budget_mb, d_model, n_heads):
    """The oracle: the largest N with AttentionSelector.memory_mb(math, N) <= budget."""
    cfg = AttentionConfig(attention_type="math", d_model=d_model, n_heads=n_heads)
    if AttentionSelector.memory_mb(cfg, 1) > budget_mb:
        return 0
    lo, hi = 1, 2
    while AttentionSelector.memory_mb(cfg, hi) <= budget_mb:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if AttentionSelector.memory_mb(cfg, mid) <= budget_mb else (lo, mid)
    return lo


def test_max_len_solution_passes_and_equals_the_selector(capsys):
    ok, out = run(ch11.check_max_len, ch11.solution_max_len, capsys)
    assert ok and f"all {len(ch11.MAX_LEN_CASES)} cases pass" in out
    for c in ch11.MAX_LEN_CASES + [(7, 128, 2), (500, 1024, 16)]:
        assert ch11.solution_max_len(*c) == longest_by_bisection(*c), c
    assert 0 in [ch11.solution_max_len(*c) for c in ch11.MAX_LEN_CASES]  # a case where not even N = 1 fits


def _scores_only(budget_mb, d, h):  # only the 3 H N^2 arrays
    return int(math.sqrt(budget_mb * 2**20 / 4 / (3 * h)))


def _one_head(budget_mb, d, h):  # the arrays of one head
    return longest_by_bisection(budget_mb, d, 1)


def _one_array(budget_mb, d, h):  # H N^2: the scores alone, what the selector once counted for full
    rest = budget_mb * 2**20 / 4 - (4 * d * d + 4 * d)
    n = 0
    while h * (n + 1) ** 2 + 5 * d * (n + 1) <= rest:
        n += 1
    return n


def _decimal_mb(budget_mb, d, h):  # 1 MB = 10**6 bytes
    return longest_by_bisection(budget_mb * 10**6 / 2**20, d, h)


def _rounded(budget_mb, d, h):  # the root rounded to nearest, not down
    rest = budget_mb * 2**20 / 4 - (4 * d * d + 4 * d)
    return max(0, round((-5 * d + math.sqrt(max(25 * d * d + 12 * h * rest, 0))) / (6 * h) + 0.5))


@pytest.mark.parametrize("wrong", [_scores_only, _one_head, _one_array, _decimal_mb, _rounded])
def test_max_len_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch11.check_max_len, wrong, capsys)
    assert not ok and "❌" in out


def test_max_len_using_the_selector_is_refused(capsys):
    ok, out = run(ch11.check_max_len, longest_by_bisection, capsys)
    assert not ok and "attnkit.factory.costs.memory_breakdown" in out


# ---------------------------------------------------------------- exercise 3: reading a profile


def test_pick_solution_passes_and_uses_tokens_per_second(capsys):
    ok, out = run(ch11.check_pick, ch11.solution_pick, capsys)
    assert ok and f"all {len(ch11.PICK_CASES)} cases pass" in out
    for profiles, budget in ch11.PICK_CASES:
        tps = {k: p["batch_size"] * p["seq_len"] * 1e3 / p["avg_latency_ms"] for k, p in profiles.items()
               if p["memory_mb"] <= budget}
        assert ch11.solution_pick(profiles, budget) == (max(tps, key=tps.get) if tps else None)
    # a profile straight from the profiler reads the same way
    live = AttentionProfiler.profile_many(["full", "linear"], 1, 64, 2, d_model=32, n_heads=2)
    best = ch11.solution_pick(live, 1e6)
    assert best == max(live, key=lambda k: live[k]["tokens_per_s"])


@pytest.mark.parametrize("wrong", [
    lambda profiles, budget: min(profiles, key=lambda k: profiles[k]["avg_latency_ms"]),  # ignores the budget
    lambda profiles, budget: min((k for k, p in profiles.items() if p["memory_mb"] <= budget),
                                 key=lambda k: profiles[k]["avg_latency_ms"], default=None),  # latency, not tokens / s
    lambda profiles, budget: ch11.solution_pick({k: {**p, "memory_mb": p["formula_mb"]} for k, p in profiles.items()},
                                                budget),  # the formula, not the measurement
    lambda profiles, budget: ch11.solution_pick(profiles, budget - 1e-9),  # "at most" read as "below"
])
def test_pick_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch11.check_pick, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- question 1


def reach_by_autograd(window, kernel, n=64):
    """The oracle for question 1: the furthest input token the last output of two blocks (a short
    causal convolution, then a causal window) depends on, by autograd."""
    cfg = AttentionConfig(attention_type="local", d_model=8, n_heads=1, causal=True, window_size=window,
                          conv_kernel=kernel, mlp_ratio=0.0)
    model = TinyLM(16, [cfg, cfg], max_len=None)
    x = torch.randn(1, n, 8, requires_grad=True)
    h = x
    for block in model.blocks:
        h = block(h)
    h[0, -1].sum().backward()
    first = int((x.grad[0].abs().sum(-1) > 0).nonzero().min())
    return n - 1 - first


def test_q1(capsys):
    exercises._WRONG.pop("ch11.q1", None)
    expected = reach_by_autograd(ch11.Q1_WINDOW, ch11.Q1_CONV)
    assert expected == 34
    ok, out = run(ch11.check_q1, 17, capsys)  # one block's reach
    assert not ok and "❌" in out
    ok, out = run(ch11.check_q1, 30, capsys)  # 2 (w - 1): the convolutions forgotten
    assert not ok and "❌" in out and "34" not in out  # a wrong answer does not reveal it
    ok, out = run(ch11.check_q1, expected, capsys)
    assert ok and "✅" in out and "2(16 + 3 - 2) = 34" in out
    ok, out = run(ch11.check_q1, None, capsys)
    assert not ok and "⏳" in out
    # the explanation's window: a causal window of 16 sees 15 tokens back
    assert int(sliding_window_mask(64, 16, causal=True)[40].nonzero().min()) == 40 - 15


# ---------------------------------------------------------------- stretch: a constant-state recaller


@pytest.fixture(scope="module")
def trained():
    return ch11.solution_recaller()


def test_recaller_solution_passes(trained, capsys):
    ok, out = run(ch11.check_recaller, lambda: trained, capsys)
    assert ok and "✅" in out
    assert ch11.recall_of(trained) >= ch11.RECALL_NEEDED
    assert ch11.recall_of(trained, seed=7) >= ch11.RECALL_NEEDED  # not tuned to the checker's batch
    assert all(c.attention_type == "linear" for c in trained.configs)


def test_recaller_is_judged_on_a_drawn_held_out_batch_too(monkeypatch, capsys):
    """A model that recalls on the visible held-out batch only (here: recall_of faked for that seed)
    fails the case drawn from the case seed; the model is trained once for both cases."""
    calls = []
    seeds = []

    def fake_recall(model, seed=ch11.HELD_OUT_SEED, batch=256):
        seeds.append(seed)
        return 1.0 if seed == ch11.HELD_OUT_SEED else 0.1

    def learner():
        calls.append(1)
        return TinyLM(32, [AttentionConfig(attention_type="linear", d_model=16, n_heads=1, causal=True,
                                           mlp_ratio=0.0)] * 2, max_len=32)

    monkeypatch.setattr(ch11, "recall_of", fake_recall)
    exercises.set_case_seed(5)
    try:
        ok, out = run(ch11.check_recaller, learner, capsys)
    finally:
        exercises.set_case_seed(None)
    assert not ok and "below 0.9" in out and len(calls) == 1
    assert seeds[0] == ch11.HELD_OUT_SEED and seeds[1] != ch11.HELD_OUT_SEED
    cases = exercises.registry(("ch11",))["ch11.ex4"].cases(5)
    assert [c.args[0] for c in cases][0] == ch11.HELD_OUT_SEED and len(cases) == 2
    assert cases[1].args == exercises.registry(("ch11",))["ch11.ex4"].cases(5)[1].args  # the seed fixes the draw


def test_recaller_wrong_answers_fail(capsys):
    def cfgs(kind, **kw):
        return [AttentionConfig(attention_type=kind, d_model=32, n_heads=1, causal=True, mlp_ratio=0.0, **kw)] * 2

    growing = TinyLM(32, cfgs("full"), max_len=32)  # softmax: its cache grows with the length
    ok, out = run(ch11.check_recaller, lambda: growing, capsys)
    assert not ok and "grows with the length" in out
    untrained = TinyLM(32, cfgs("linear"), max_len=32)
    ok, out = run(ch11.check_recaller, lambda: untrained, capsys)
    assert not ok and "below 0.9" in out
    other_vocab = TinyLM(64, cfgs("linear"), max_len=32)
    ok, out = run(ch11.check_recaller, lambda: other_vocab, capsys)
    assert not ok and "vocabulary of 64" in out
    ok, out = run(ch11.check_recaller, lambda: "a model", capsys)
    assert not ok and "expected a TinyLM" in out


# ---------------------------------------------------------------- both languages


def test_feedback_in_chinese(capsys):
    set_language("zh")
    ok, out = run(ch11.check_pick, ch11.solution_pick, capsys)
    assert ok and "全部通过" in out
    ok, out = run(ch11.check_max_len, _scores_only, capsys)
    assert not ok and "未通过" in out and "提示" in out
    def stub(keys, values, slots, seq_len):
        raise NotImplementedError

    ok, out = run(ch11.check_mqar_layout, stub, capsys)
    assert not ok and "还没有完成" in out
    growing = TinyLM(32, [AttentionConfig(attention_type="gqa", d_model=32, n_heads=2, num_kv_heads=1, causal=True,
                                          mlp_ratio=0.0)], max_len=32)
    ok, out = run(ch11.check_recaller, lambda: growing, capsys)
    assert not ok and "随长度增长" in out
