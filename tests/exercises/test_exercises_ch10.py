"""Chapter 10 checkers: each passes its reference solution (itself checked against an oracle:
LoRALinear unmerged and merged, a served LoRALinear with another alpha and rsLoRA, a
built-and-counted layer, the SVD truncation, a FLOP counter) and fails typical wrong answers."""

from __future__ import annotations

import pytest
import torch

from attnkit import exercises
from attnkit import lora as L
from attnkit.exercises import ch10, show_hint
from attnkit.i18n import set_language
from helpers import run

# ---------------------------------------------------------------- exercise 1: fix the adapter switch


def _cases(ex_id, seed):
    """The visible cases and one drawn from ``seed``, as the checker runs them."""
    return exercises.registry(("ch10",))[ex_id].cases(seed)


def _layer(W, A, B, alpha, r):
    layer = L.LoRALinear.from_weight(W.clone(), r=r, lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


def test_switch_solution_passes_and_equals_unmerge_then_merge_of_lora_linear(capsys):
    ok, out = run(ch10.check_switch, ch10.solution_switch, capsys)
    assert ok and "✅" in out and "all 3 cases pass" in out
    for case in _cases("ch10.ex1", seed=5):
        W_merged, old, new = case.args
        # the oracle: LoRALinear holding the old adapter merged, unmerged, then the new one merged
        base = _layer(W_merged, *old)
        base.merged = True
        base.unmerge()
        after = _layer(base.weight.detach(), *new)
        after.merge()
        torch.testing.assert_close(ch10.solution_switch(W_merged, old, new), after.weight.detach())


def test_the_colleagues_switch_is_wrong_on_square_weights_and_fails_on_others():
    (W, old, new), (W2, old2, new2) = (c.args for c in _cases("ch10.ex1", seed=0)[:3:2])
    assert W.shape[0] == W.shape[1] and not torch.allclose(ch10.colleague_switch_adapter(W, old, new),
                                                           ch10.solution_switch(W, old, new))
    assert W2.shape[0] != W2.shape[1]
    with pytest.raises(RuntimeError):
        ch10.colleague_switch_adapter(W2, old2, new2)


@pytest.mark.parametrize("wrong", [
    ch10.colleague_switch_adapter,  # untouched
    lambda W, old, new: W - (new[2] / new[3]) * old[1] @ old[0] + (new[2] / new[3]) * new[1] @ new[0],  # one scale
    lambda W, old, new: W + (new[2] / new[3]) * new[1] @ new[0],  # forgets to take the old one out
    lambda W, old, new: W - (old[2] / old[3]) * old[1] @ old[0] - (new[2] / new[3]) * new[1] @ new[0],  # sign
])
def test_switch_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_switch, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_switch_calling_the_library_is_refused(capsys):
    def lazy(W, old, new):
        (A0, B0, a0, r0), (A1, B1, a1, r1) = old, new
        return L.merge_weight(L.unmerge_weight(W, A0, B0, a0 / r0), A1, B1, a1 / r1)

    ok, out = run(ch10.check_switch, lazy, capsys)
    assert not ok and "attnkit.lora.unmerge_weight" in out


def test_staged_hints_and_show_hint(capsys):
    def forgets_the_old(W, old, new):  # a mistake the checker does not name: staged hints
        return W + (new[2] / new[3]) * new[1] @ new[0]

    exercises._STAGE.pop("ch10.ex1", None)
    _, first = run(ch10.check_switch, forgets_the_old, capsys)
    _, second = run(ch10.check_switch, forgets_the_old, capsys)
    assert "each adapter added" in first and "Two bugs" in second
    assert "(alpha0 / r0) * B0 @ A0" not in first + second  # the formula only on request
    show_hint("ch10.ex1")
    assert "W_merged - (alpha0 / r0) * B0 @ A0 + (alpha1 / r1) * B1 @ A1" in capsys.readouterr().out


# ---------------------------------------------------------------- exercise 2: another alpha, rsLoRA


def test_rescale_solution_passes_and_the_served_layer_computes_the_same(capsys):
    ok, out = run(ch10.check_rescale, ch10.solution_rescale, capsys)
    assert ok and "all 3 cases pass" in out
    g = torch.Generator().manual_seed(0)
    for case in _cases("ch10.ex2", seed=3):
        B, alpha, r, new_alpha, rslora = case.args
        A = torch.randn(r, 6, generator=g, dtype=torch.float64)
        W = torch.randn(B.shape[0], 6, generator=g, dtype=torch.float64)
        x = torch.randn(4, 6, generator=g, dtype=torch.float64)
        trained = _layer(W, A, B, alpha, r)
        served = L.LoRALinear.from_weight(W.clone(), r=r, lora_alpha=new_alpha, use_rslora=rslora)
        with torch.no_grad():
            served.lora_A.copy_(A)
            served.lora_B.copy_(ch10.solution_rescale(B, alpha, r, new_alpha, rslora))
        torch.testing.assert_close(served(x), trained(x))


@pytest.mark.parametrize("wrong", [
    lambda B, a, r, na, rs: B * na / a,  # upside down
    lambda B, a, r, na, rs: B * a / na,  # ignores rsLoRA
    lambda B, a, r, na, rs: B,  # loads it unchanged
])
def test_rescale_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_rescale, wrong, capsys)
    assert not ok and "❌" in out


def test_rescale_calling_lora_scaling_is_refused(capsys):
    ok, out = run(ch10.check_rescale, lambda B, a, r, na, rs: B * L.lora_scaling(r, a) / L.lora_scaling(r, na, rs),
                  capsys)
    assert not ok and "attnkit.lora.lora_scaling" in out


# ---------------------------------------------------------------- exercise 3: count


def test_count_solution_passes_and_equals_the_built_layer(capsys):
    ok, out = run(ch10.check_count, ch10.solution_count, capsys)
    assert ok and f"all {len(ch10.COUNT_CASES)} cases pass" in out
    for c in ch10.COUNT_CASES:
        assert ch10.solution_count(*c) == ch10.count_by_building(*c)


@pytest.mark.parametrize("wrong", [
    lambda dim, heads, dh, r, en, bias: len(set(en)) * r * dim,  # counts A only
    lambda dim, heads, dh, r, en, bias: len(en) * r * (dim + heads * dh),  # a repeated letter counted twice
    lambda dim, heads, dh, r, en, bias: len(set(en)) * r * (dim + heads * dh),  # ignores the bias
    lambda dim, heads, dh, r, en, bias: len(set(en)) * r * (dim + heads * dh) + (dim if bias != "none" else 0),
])
def test_count_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_count, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- questions


def test_q1(capsys):
    assert not ch10.check_q1(None) and "not answered yet" in capsys.readouterr().out
    assert not ch10.check_q1("b")
    first = capsys.readouterr().out
    assert "❌" in first and "differentiate" in first
    assert not ch10.check_q1("a")
    assert "answer:   c)" not in capsys.readouterr().out  # never revealed by wrong tries
    from attnkit.exercises import show_answer
    show_answer("ch10.q1")
    assert "answer:   c)" in capsys.readouterr().out  # but on request
    assert ch10.check_q1("c") and "✅" in capsys.readouterr().out


def test_q1_answer_is_what_autograd_says():
    layer = L.LoRALinear(6, 4, r=2)
    layer(torch.randn(3, 6)).pow(2).sum().backward()
    assert layer.lora_A.grad.abs().sum() == 0 and layer.lora_B.grad.abs().sum() > 0  # only B: choice c


def test_q2_answer_is_the_counted_multiply_adds(capsys):
    assert ch10.check_q2(131072) and "✅" in capsys.readouterr().out
    assert not ch10.check_q2(0) and "❌" in capsys.readouterr().out  # the merged adapter's cost
    assert not ch10.check_q2(16 * 4096) and "❌" in capsys.readouterr().out  # A alone
    # counted: the multiply-adds of x A^T then (x A^T) B^T for one token, by FLOP counting
    from torch.utils.flop_counter import FlopCounterMode

    A, B, x = torch.randn(16, 4096), torch.randn(4096, 16), torch.randn(1, 4096)
    with FlopCounterMode(display=False) as fc:
        (x @ A.T) @ B.T
    assert fc.get_total_flops() == 2 * 131072


# ---------------------------------------------------------------- stretch: compress


def test_compress_solution_passes_and_is_the_best_rank_k(capsys):
    ok, out = run(ch10.check_compress, ch10.solution_compress, capsys)
    assert ok and "all 3 cases pass" in out
    A, B, k = ch10._compress_case(0, 12, 10, 4, 2)
    A2, B2 = ch10.solution_compress(A, B, k)
    S = torch.linalg.svdvals(B @ A)
    # Eckart-Young: the error of the best rank-k approximation is the tail of the singular values
    assert (B @ A - B2 @ A2).norm().item() == pytest.approx(S[k:].norm().item(), rel=1e-9)
    # and no random rank-k factorisation does better
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        P = torch.randn(k, 4, generator=g, dtype=torch.float64)
        assert (B @ A - (B @ torch.linalg.pinv(P) @ P) @ A).norm() >= (B @ A - B2 @ A2).norm() - 1e-12


@pytest.mark.parametrize("wrong", [
    lambda A, B, k: (A[:k], B[:, :k]),  # truncates the factors
    lambda A, B, k: (torch.linalg.svd(A, full_matrices=False)[2][:k], B @ torch.linalg.svd(A, full_matrices=False)[2][:k].T),
    lambda A, B, k: (torch.linalg.svd(B @ A)[2][-k:], torch.linalg.svd(B @ A)[0][:, -k:] * torch.linalg.svd(B @ A)[1][-k:]),
    lambda A, B, k: (A, B),  # does not compress
])
def test_compress_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_compress, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- stubs, errors, Chinese


@pytest.mark.parametrize("check", [ch10.check_switch, ch10.check_rescale, ch10.check_count, ch10.check_compress])
def test_stub_says_not_done_and_errors_never_raise(check, capsys):
    def stub(*args):
        raise NotImplementedError

    ok, out = run(check, stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(check, lambda *a: 1 / 0, capsys)
    assert not ok and "ZeroDivisionError" in out


def test_chinese_feedback(capsys):
    set_language("zh")
    ok, out = run(ch10.check_rescale, lambda B, a, r, na, rs: B, capsys)
    assert not ok and "练习 2" in out and "提示" in out
    ok, out = run(ch10.check_count, ch10.solution_count, capsys)
    assert ok and "全部通过" in out
    assert ch10.check_q1("c") and "回答正确" in capsys.readouterr().out
