"""Chapter 10 checkers: each passes its reference solution (itself checked against an oracle:
LoRALinear, a built-and-counted layer, the SVD truncation) and fails typical wrong answers."""

from __future__ import annotations

import pytest
import torch

from attnkit import exercises
from attnkit import lora as L
from attnkit.exercises import ch10, show_hint
from attnkit.i18n import set_language
from helpers import run

# ---------------------------------------------------------------- exercise 1: forward


def test_forward_solution_passes_and_equals_lora_linear(capsys):
    ok, out = run(ch10.check_lora_forward, ch10.solution_lora_forward, capsys)
    assert ok and "✅" in out and "all 3 cases pass" in out
    for i, (xs, o, n_in, r, a) in enumerate(ch10.FWD_CASES):
        x, W, b, A, B, alpha, r = ch10._pair_case(i, xs, o, n_in, r, a)
        layer = L.LoRALinear.from_weight(W, b, r=r, lora_alpha=alpha)
        with torch.no_grad():
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
        torch.testing.assert_close(ch10.solution_lora_forward(x, W, b, A, B, alpha, r), layer(x))


@pytest.mark.parametrize("wrong", [
    lambda x, W, b, A, B, alpha, r: x @ W.T + b + (x @ A.T) @ B.T,  # forgets alpha / r
    lambda x, W, b, A, B, alpha, r: x @ W.T + b + (r / alpha) * (x @ A.T) @ B.T,  # upside down
    lambda x, W, b, A, B, alpha, r: x @ W.T + (alpha / r) * (x @ A.T) @ B.T,  # forgets the bias
    lambda x, W, b, A, B, alpha, r: x @ W + b + (alpha / r) * (x @ A.T) @ B.T,  # fan-in / fan-out mixed up
])
def test_forward_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_lora_forward, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_forward_calling_the_builtin_is_refused(capsys):
    def lazy(x, W, b, A, B, alpha, r):
        return L.lora_linear(x, W, b, A, B, alpha / r)

    ok, out = run(ch10.check_lora_forward, lazy, capsys)
    assert not ok and "attnkit.lora.lora_linear" in out


def test_staged_hints_and_show_hint(capsys):
    def forgets(x, W, b, A, B, alpha, r):
        return x @ W.T + b + (x @ A.T) @ B.T

    exercises._STAGE.pop("ch10.ex1", None)  # earlier tests failed this case too: start afresh
    _, first = run(ch10.check_lora_forward, forgets, capsys)
    _, second = run(ch10.check_lora_forward, forgets, capsys)
    assert "Two paths" in first and "alpha / r, not r / alpha" in second
    assert "(alpha / r) * (x @ A.T) @ B.T" not in first + second  # the formula only on request
    show_hint("ch10.ex1")
    assert "x @ W.T + b + (alpha / r) * (x @ A.T) @ B.T" in capsys.readouterr().out


# ---------------------------------------------------------------- exercise 2: merge


def test_merge_solution_passes_and_gives_the_lora_layers_outputs(capsys):
    ok, out = run(ch10.check_merge, ch10.solution_merge, capsys)
    assert ok and "all 3 cases pass" in out
    x, W, b, A, B, alpha, r = ch10._pair_case(0, (4,), 5, 7, 2, 4)
    merged = ch10.solution_merge(W, A, B, alpha, r)
    torch.testing.assert_close(x @ merged.T + b, ch10.solution_lora_forward(x, W, b, A, B, alpha, r))


@pytest.mark.parametrize("wrong", [
    lambda W, A, B, alpha, r: W + B @ A,  # no scale
    lambda W, A, B, alpha, r: W + (alpha / r) * (B @ A).T if W.shape[0] == W.shape[1] else W + (alpha / r) * A.T @ B.T,
    lambda W, A, B, alpha, r: W + 2 * (alpha / r) * B @ A,  # merged twice
    lambda W, A, B, alpha, r: (alpha / r) * B @ A,  # the update alone
])
def test_merge_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch10.check_merge, wrong, capsys)
    assert not ok and "❌" in out


def test_merge_calling_the_builtin_is_refused(capsys):
    ok, out = run(ch10.check_merge, lambda W, A, B, alpha, r: L.merge_weight(W, A, B, alpha / r), capsys)
    assert not ok and "attnkit.lora.merge_weight" in out


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


def test_q2(capsys):
    assert ch10.check_q2(0) and "✅" in capsys.readouterr().out
    assert not ch10.check_q2(131072) and "❌" in capsys.readouterr().out
    layer = L.LoRALinear(16, 8, r=2)
    layer.merge()
    assert sum(1 for m in layer.modules() if isinstance(m, torch.nn.Linear)) == 0
    assert layer.merged  # the merged forward is F.linear with W alone: nothing extra to compute


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


@pytest.mark.parametrize("check", [ch10.check_lora_forward, ch10.check_merge, ch10.check_count, ch10.check_compress])
def test_stub_says_not_done_and_errors_never_raise(check, capsys):
    def stub(*args):
        raise NotImplementedError

    ok, out = run(check, stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(check, lambda *a: 1 / 0, capsys)
    assert not ok and "ZeroDivisionError" in out


def test_chinese_feedback(capsys):
    set_language("zh")
    ok, out = run(ch10.check_merge, lambda W, A, B, alpha, r: W + B @ A, capsys)
    assert not ok and "练习 2" in out and "提示" in out
    ok, out = run(ch10.check_count, ch10.solution_count, capsys)
    assert ok and "全部通过" in out
    assert ch10.check_q1("c") and "回答正确" in capsys.readouterr().out
