"""Chapter 05 checkers: each passes its reference solution and attnkit's own function, fails
typical wrong answers with bilingual feedback, and never raises."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnkit.exercises as X
from attnkit.core import causal_mask
from attnkit.exercises import ch05
from attnkit.gqa import KVCache, grouped_query_attention, kv_cache_bytes, repeat_kv
from attnkit.i18n import set_language
from helpers import run, todo, without_forbid


@pytest.mark.parametrize("check", [ch05.check_repeat_kv, ch05.check_kv_cache_bytes, ch05.check_decode_step])
def test_stub_says_not_done_yet(check, capsys):
    ok, out = run(check, todo, capsys)
    assert not ok and "not done yet" in out


# ---------------------------------------------------------------- exercise 1: repeat_kv


def test_repeat_kv_solution_and_library_pass(capsys):
    for fn in (ch05.solution_repeat_kv, lambda x, n: torch.repeat_interleave(x, n, dim=2)):
        ok, out = run(ch05.check_repeat_kv, fn, capsys)
        assert ok and "all 4 cases pass" in out
    # attnkit's own repeat_kv handed in as the answer is refused, also moved to the exercise's layout
    ok, out = run(ch05.check_repeat_kv, repeat_kv, capsys)
    assert not ok and "repeat_kv" in out
    ok, out = run(ch05.check_repeat_kv, lambda x, n: repeat_kv(x.transpose(1, 2), n).transpose(1, 2), capsys)
    assert not ok and X.OUTCOMES["ch05.ex1"]["status"] == "forbidden"
    # the oracle: with the heads moved to axis 1, the solution is attnkit's repeat_kv (and SDPA's enable_gqa)
    x = torch.randn(2, 3, 4, 5)  # (B, S, n_g, d)
    assert torch.equal(repeat_kv(x.transpose(1, 2), 2), ch05.solution_repeat_kv(x, 2).transpose(1, 2))
    q, k = torch.randn(2, 8, 3, 5), x.transpose(1, 2)
    assert torch.allclose(F.scaled_dot_product_attention(q, ch05.solution_repeat_kv(x, 2).transpose(1, 2),
                                                         ch05.solution_repeat_kv(x, 2).transpose(1, 2)),
                          F.scaled_dot_product_attention(q, k, k, enable_gqa=True), atol=1e-6)


def test_repeat_kv_is_not_the_chapters_cell_retyped(capsys):
    def my_repeat_kv(x, n_rep):  # section 3's cell: the heads on axis 1
        B, n_g, S, d = x.shape
        return x[:, :, None].expand(B, n_g, n_rep, S, d).reshape(B, n_g * n_rep, S, d)

    ok, out = run(ch05.check_repeat_kv, my_repeat_kv, capsys)
    assert not ok and X.OUTCOMES["ch05.ex1"]["status"] in ("failed", "error")


@pytest.mark.parametrize("wrong", [
    lambda x, n: x.repeat(1, 1, n, 1),  # tiles the stack: head order 0,1,0,1
    lambda x, n: x,  # forgot to repeat
    lambda x, n: x[:, :, :1].expand(x.shape[0], x.shape[1], x.shape[2] * n, x.shape[3]),  # every head = kv head 0
    lambda x, n: torch.repeat_interleave(x, n, dim=1),  # the chapter's layout: repeats the tokens
])
def test_repeat_kv_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch05.check_repeat_kv, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


# ---------------------------------------------------------------- exercise 2: cache size


def test_cache_bytes_solution_and_library_pass(capsys, monkeypatch):
    def library(layers, kv, hd, seq, batch, nbytes):
        return kv_cache_bytes("gqa", seq, batch, num_kv_heads=kv, head_dim=hd, num_layers=layers, dtype=nbytes)

    ok, _ = run(ch05.check_kv_cache_bytes, library, capsys)
    assert not ok and X.OUTCOMES["ch05.ex2"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    for fn in (ch05.solution_kv_cache_bytes, library):
        ok, out = run(ch05.check_kv_cache_bytes, fn, capsys)
        assert ok and "all 3 cases pass" in out
    # the LLaMA-2-7B case is 2 GiB at 4096 tokens
    assert ch05.solution_kv_cache_bytes(32, 32, 128, 4096, 1, 2) == 2 * 2**30


@pytest.mark.parametrize("wrong", [
    lambda l, kv, hd, s, b, nb: l * kv * hd * s * b * nb,  # forgot that K and V are both cached
    lambda l, kv, hd, s, b, nb: 2 * l * kv * hd * s * nb,  # forgot the batch
    lambda l, kv, hd, s, b, nb: 2 * kv * hd * s * b * nb,  # one layer only
])
def test_cache_bytes_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch05.check_kv_cache_bytes, wrong, capsys)
    assert not ok and "❌" in out and "expected" in out


# ---------------------------------------------------------------- exercise 3: a decode step


def test_decode_step_solution_matches_the_library_cache():
    """The reference solution agrees with attnkit's KVCache + end-aligned mask and with SDPA."""
    q, kn, vn, kc, vc = ch05._step_case(5, 2, 2, 3, 4)
    out, k, v = ch05.solution_decode_step(q, kn, vn, kc, vc)
    cache = KVCache()
    cache.update(kc, vc)
    k2, v2 = cache.update(kn, vn)
    assert torch.equal(k, k2) and torch.equal(v, v2)
    ref = F.scaled_dot_product_attention(q, k2, v2, attn_mask=causal_mask(3, 7, offset=4))
    assert torch.allclose(out, ref, atol=1e-6)


def test_decode_step_solution_and_library_pass(capsys):
    def library(q, kn, vn, kc, vc):
        cache = KVCache()
        if kc.shape[-2]:
            cache.update(kc, vc)
        k, v = cache.update(kn, vn)
        L, S = q.shape[-2], k.shape[-2]
        return grouped_query_attention(q, k, v, attn_mask=causal_mask(L, S, offset=S - L)), k, v

    ok, out = run(ch05.check_decode_step, ch05.solution_decode_step, capsys)
    assert ok and "all 4 cases pass" in out
    # attnkit's cache and attention agree with the solution, and are what the exercise asks to write
    torch.testing.assert_close(library(*ch05._step_case(30, 1, 2, 3, 4))[0],
                               ch05.solution_decode_step(*ch05._step_case(30, 1, 2, 3, 4))[0])
    ok, out = run(ch05.check_decode_step, library, capsys)
    assert not ok and X.OUTCOMES["ch05.ex3"]["status"] == "forbidden"


def _sdpa(q, k, v, attn_mask=None, is_causal=False):
    """SDPA written out (the exercise forbids the built-in): the wrong answers below use it."""
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if is_causal:
        attn_mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _top_left(q, kn, vn, kc, vc):
    k, v = torch.cat([kc, kn], -2), torch.cat([vc, vn], -2)
    return _sdpa(q, k, v, is_causal=True), k, v


def _no_mask(q, kn, vn, kc, vc):
    k, v = torch.cat([kc, kn], -2), torch.cat([vc, vn], -2)
    return _sdpa(q, k, v), k, v


def _not_appended(q, kn, vn, kc, vc):
    return _sdpa(q, kc, vc), kc, vc


def _prepended(q, kn, vn, kc, vc):
    k, v = torch.cat([kn, kc], -2), torch.cat([vn, vc], -2)
    L, S = q.shape[-2], k.shape[-2]
    return _sdpa(q, k, v, attn_mask=causal_mask(L, S, offset=S - L)), k, v


@pytest.mark.parametrize("wrong", [_top_left, _no_mask, _not_appended, _prepended])
def test_decode_step_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch05.check_decode_step, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_feedback_in_chinese(capsys):
    set_language("zh")
    ok, out = run(ch05.check_decode_step, _top_left, capsys)
    assert not ok and "提示" in out and "缓存" in out
    ok, out = run(ch05.check_repeat_kv, ch05.solution_repeat_kv, capsys)
    assert ok and "全部通过" in out


# ---------------------------------------------------------------- the question: what GQA buys at batch 1


def test_q1_right_answer_explains_and_the_numbers_hold(capsys):
    from attnkit.gqa import decode_tokens_per_s_bound, kv_cache_bytes

    X._WRONG.pop("ch05.q1", None)
    ok, out = run(ch05.check_q1, None, capsys)
    assert not ok and X.OUTCOMES["ch05.q1"]["status"] == "todo"
    ok, out = run(ch05.check_q1, 1.03, capsys)
    assert ok and "✅" in out and "3%" in out
    # the answer and the explanation's numbers, from the library's formulas: 7B bf16, 1,000 tokens, MHA vs GQA-8
    shape = dict(head_dim=128, num_layers=32, dtype=torch.bfloat16)
    mha = kv_cache_bytes("mha", 1000, num_heads=32, **shape)
    gqa = kv_cache_bytes("gqa", 1000, num_kv_heads=8, **shape)
    assert round(mha / 1e9, 2) == 0.52 and round(gqa / 1e9, 2) == 0.13
    speedup = decode_tokens_per_s_bound(1e12, 14 * 10**9, gqa) / decode_tokens_per_s_bound(1e12, 14 * 10**9, mha)
    assert abs(speedup - ch05.Q1_SPEEDUP) < 1e-9 and 1.02 < speedup < 1.035


@pytest.mark.parametrize("wrong", [4.0, 1.0, 1.25])  # the cache's 4x, no faster, a guess
def test_q1_wrong_answers_fail_then_reveal(wrong, capsys):
    X._WRONG.pop("ch05.q1", None)
    ok, out = run(ch05.check_q1, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out and "3%" not in out
    assert "0.52" not in out and "14.52" not in out  # the nudge does not give the numbers away
    ok, out = run(ch05.check_q1, wrong, capsys)
    assert not ok and "3%" not in out and "show_answer" in out  # wrong answers never reveal it
    ok, out = run(X.show_answer, "ch05.q1", capsys)
    assert "3%" in out  # asked for: the answer and why
    X._WRONG.pop("ch05.q1", None)


def test_q1_in_chinese(capsys):
    set_language("zh")
    X._WRONG.pop("ch05.q1", None)
    ok, out = run(ch05.check_q1, 1.028, capsys)
    assert ok and "权重" in out


# ---------------------------------------------------------------- exercise 4: sequences beside the weights


def test_max_sequences_solution_passes_and_agrees_with_the_library(capsys, monkeypatch):
    import attnkit.gqa as G
    from attnkit.gqa import memory_budget

    ok, out = run(ch05.check_max_sequences, ch05.solution_max_sequences, capsys)
    assert ok and "all 5 cases pass" in out

    def library(mem, params, nbytes, layers, kv, hd, seq):  # attnkit's function handed in
        return G.max_batch_size(mem, params * nbytes, kv_cache_bytes(
            "gqa", seq, num_kv_heads=kv, head_dim=hd, num_layers=layers, dtype=nbytes))

    ok, _ = run(ch05.check_max_sequences, library, capsys)
    assert not ok and X.OUTCOMES["ch05.ex4"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    ok, out = run(ch05.check_max_sequences, library, capsys)
    assert ok
    # checked as a function of its arguments: it agrees with memory_budget on a grid of models
    for mem in (16, 80, 141):
        for params in (1, 7, 13, 70):
            for kv in (1, 8, 32):
                for seq in (4096, 32768):
                    got = ch05.solution_max_sequences(mem * 2**30, params * 10**9, 2, 32, kv, 128, seq)
                    ref = memory_budget("gqa", params * 10**9, mem * 2**30, seq, 32, 32, kv, 128,
                                        dtype=torch.float16)["max_batch"]
                    assert got == ref and isinstance(got, int)


@pytest.mark.parametrize("wrong", [
    lambda m, p, b, l, kv, hd, s: m // (2 * l * kv * hd * s * b),  # forgot the weights
    lambda m, p, b, l, kv, hd, s: (m - p * b) // (l * kv * hd * s * b),  # counted K only
    lambda m, p, b, l, kv, hd, s: (m - p * b) / (2 * l * kv * hd * s * b),  # a fraction of a sequence
    lambda m, p, b, l, kv, hd, s: round((m - p * b) / (2 * l * kv * hd * s * b)),  # rounded, not floored
    lambda m, p, b, l, kv, hd, s: (m - p * b) // (2 * l * kv * hd * s * b) if m > p * b else -1,
])
def test_max_sequences_wrong_answers_fail(wrong, capsys):
    X._STAGE.pop("ch05.ex4", None)
    ok, out = run(ch05.check_max_sequences, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out
    assert ch05.t("ch05.ex4.formula") not in out


def test_max_sequences_weights_that_do_not_fit_give_zero(capsys):
    def no_clamp(m, p, b, l, kv, hd, s):
        return (m - p * b) // (2 * l * kv * hd * s * b)  # negative when the weights do not fit

    ok, out = run(ch05.check_max_sequences, no_clamp, capsys)
    assert not ok and X.OUTCOMES["ch05.ex4"]["case"] == 4


def test_max_sequences_hints_are_staged_in_both_languages(capsys, monkeypatch):
    monkeypatch.setitem(ch05.MISTAKES, "ch05.ex4", ())  # the staged hints, not the diagnosis (tested elsewhere)
    def wrong(m, p, b, l, kv, hd, s):
        return m // (2 * l * kv * hd * s * b)

    for lang in ("en", "zh"):
        set_language(lang)
        nudge, stronger, formula = (ch05.t(f"ch05.ex4.{k}") for k in ("nudge", "stronger", "formula"))
        X._STAGE.pop("ch05.ex4", None)
        _, first = run(ch05.check_max_sequences, wrong, capsys)
        assert nudge in first and stronger not in first and formula not in first
        _, second = run(ch05.check_max_sequences, wrong, capsys)
        assert stronger in second and formula not in second
        X.show_hint("ch05.ex4")
        assert formula in capsys.readouterr().out
