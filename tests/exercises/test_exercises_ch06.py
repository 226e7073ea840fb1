"""Chapter 06 checkers: each passes its reference solution (and attnkit.rope's function) and
fails typical wrong answers, with feedback in both languages, never raising."""

from __future__ import annotations

import math

import pytest
import torch

import attnkit.exercises as X
import attnkit.rope as rope
from attnkit.exercises import ch06
from attnkit.i18n import set_language
from helpers import run, without_forbid

# ---------------------------------------------------------------- exercise 1: rotate a pair


def test_rotate_pair_solution_and_library_pass(capsys):
    ok, out = run(ch06.check_rotate_pair, ch06.solution_rotate_pair, capsys)
    assert ok and "all 4 cases pass" in out
    # attnkit's own rotate_pair handed in as the answer is refused; it agrees with the solution
    ok, out = run(ch06.check_rotate_pair, rope.rotate_pair, capsys)
    assert not ok and "rotate_pair" in out
    assert rope.rotate_pair(0.6, -0.8, 0.3) == pytest.approx(ch06.solution_rotate_pair(0.6, -0.8, 0.3))


def test_rotate_pair_solution_matches_complex_multiplication():
    z = complex(0.6, -0.8) * complex(math.cos(0.3), math.sin(0.3))
    assert ch06.solution_rotate_pair(0.6, -0.8, 0.3) == pytest.approx((z.real, z.imag))


@pytest.mark.parametrize("wrong", [
    lambda x, y, a: (x * math.cos(a) + y * math.sin(a), -x * math.sin(a) + y * math.cos(a)),  # clockwise
    lambda x, y, a: (x * math.sin(a) - y * math.cos(a), x * math.cos(a) + y * math.sin(a)),  # cos/sin swapped
    lambda x, y, a: (x * math.cos(a), y * math.cos(a)),  # forgot the sin terms
])
def test_rotate_pair_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch06.check_rotate_pair, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out


def test_stub_says_not_done_and_chinese_feedback(capsys):
    def stub(x, y, a):
        raise NotImplementedError

    ok, out = run(ch06.check_rotate_pair, stub, capsys)
    assert not ok and "not done yet" in out
    set_language("zh")
    ok, out = run(ch06.check_rotate_pair, lambda x, y, a: (x, y), capsys)
    assert not ok and "练习 1" in out and "提示" in out
    ok, out = run(ch06.check_rotate_pair, ch06.solution_rotate_pair, capsys)
    assert ok and "全部通过" in out


# ---------------------------------------------------------------- exercise 2: apply RoPE to a head


def test_apply_rope_solution_and_library_pass(capsys, monkeypatch):
    ok, out = run(ch06.check_apply_rope, ch06.solution_apply_rope, capsys)
    assert ok and "all 3 cases pass" in out
    library = lambda x, c, s: rope.apply_rope(x, c, s, interleaved=False)  # noqa: E731
    ok, _ = run(ch06.check_apply_rope, library, capsys)
    assert not ok and X.OUTCOMES["ch06.ex2"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    ok, _ = run(ch06.check_apply_rope, library, capsys)
    assert ok


def test_apply_rope_solution_equals_hf_rotate_half():
    x = torch.randn(7, 10)
    cos, sin = rope.generate_rope_embeddings(7, 10)
    x1, x2 = x[:, :5], x[:, 5:]
    hf = x * torch.cat((cos, cos), -1) + torch.cat((-x2, x1), -1) * torch.cat((sin, sin), -1)
    torch.testing.assert_close(ch06.solution_apply_rope(x, cos, sin), hf)


def _chunks(x):
    return x.chunk(2, dim=-1)


@pytest.mark.parametrize("wrong", [
    lambda x, c, s: rope.apply_rope(x, c, s, interleaved=True),  # interleaved pairing
    lambda x, c, s: torch.cat((_chunks(x)[0] * c + _chunks(x)[1] * s, -_chunks(x)[0] * s + _chunks(x)[1] * c), -1),
    lambda x, c, s: torch.stack((_chunks(x)[0] * c - _chunks(x)[1] * s, _chunks(x)[0] * s + _chunks(x)[1] * c),
                                -1).flatten(-2),  # halves interleaved on the way out
    lambda x, c, s: x * torch.cat((c, c), -1),  # no rotation, only the cos factor
])
def test_apply_rope_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch06.check_apply_rope, wrong, capsys)
    assert not ok and "❌" in out


def test_apply_rope_crashing_answer_is_reported_not_raised(capsys):
    ok, out = run(ch06.check_apply_rope, lambda x, c, s: x @ c, capsys)
    assert not ok and "raised RuntimeError" in out


# ---------------------------------------------------------------- exercise 3: ALiBi slopes


def test_alibi_solution_matches_paper_and_library(capsys, monkeypatch):
    assert ch06.solution_alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]
    for h in (1, 3, 5, 8, 12, 16, 24):
        torch.testing.assert_close(ch06.solution_alibi_slopes(h), rope.alibi_slopes(h))
    ok, _ = run(ch06.check_alibi_slopes, lambda h: rope.alibi_slopes(h), capsys)
    assert not ok and X.OUTCOMES["ch06.ex3"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    for fn in (ch06.solution_alibi_slopes, rope.alibi_slopes,
               lambda h: rope.alibi_slopes(h).tolist()):  # a plain list is accepted too
        ok, out = run(ch06.check_alibi_slopes, fn, capsys)
        assert ok and "all 4 cases pass" in out


@pytest.mark.parametrize("wrong", [
    lambda h: torch.tensor([2.0 ** (-8.0 * (i + 1) / h) for i in range(h)]),  # naive for 12 heads
    lambda h: rope.alibi_slopes(h).flip(0),  # reversed
    lambda h: torch.tensor([2.0 ** -(i + 1) for i in range(h)]),  # 1/2^h for every head count
    lambda h: "slopes",
])
def test_alibi_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch06.check_alibi_slopes, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- exercise 4: NTK base


def test_ntk_solution_and_library_pass(capsys, monkeypatch):
    ok, out = run(ch06.check_ntk_base, ch06.solution_ntk_base, capsys)
    assert ok and "all 3 cases pass" in out
    ok, _ = run(ch06.check_ntk_base, lambda b, d, s: rope.ntk_scaled_base(b, d, s), capsys)
    assert not ok and X.OUTCOMES["ch06.ex4"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    ok, _ = run(ch06.check_ntk_base, lambda b, d, s: rope.ntk_scaled_base(b, d, s), capsys)
    assert ok


@pytest.mark.parametrize("wrong", [
    lambda b, d, s: b * s,  # exponent forgotten
    lambda b, d, s: b * s ** ((d - 2) / d),  # exponent upside down
    lambda b, d, s: b / s,
])
def test_ntk_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch06.check_ntk_base, wrong, capsys)
    assert not ok and "❌" in out


# ---------------------------------------------------------------- question 1: predict the score


def _rotated_score(m, n, theta=math.pi / 6):
    """The oracle: q = k = (1, 0), turned to positions m and n by complex multiplication."""
    q, k = complex(math.cos(m * theta), math.sin(m * theta)), complex(math.cos(n * theta), math.sin(n * theta))
    return (q * k.conjugate()).real


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_q1_right_answer_passes_with_its_explanation(lang, capsys):
    set_language(lang)
    X._WRONG.pop("ch06.q1", None)
    expected = _rotated_score(7, 3)
    assert expected == pytest.approx(-0.5)
    assert _rotated_score(107, 103) == pytest.approx(expected)  # only m - n matters, as the explanation says
    assert ch06.check_q1(-0.5) and ch06.check_q1(expected)
    out = capsys.readouterr().out
    assert X.OUTCOMES["ch06.q1"]["status"] == "passed"
    assert ("120°" in out) and (("why" in out) if lang == "en" else ("原因" in out))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_q1_typical_wrong_answers_fail_then_reveal(lang, capsys):
    set_language(lang)
    X._WRONG.pop("ch06.q1", None)
    # cos of the sum of the angles (10θ), and the score before RoPE (1): both wrong
    assert not ch06.check_q1(round(math.cos(10 * math.pi / 6), 3))
    first = capsys.readouterr().out
    assert "−0.5" not in first.split("\n")[0] and X.OUTCOMES["ch06.q1"]["status"] == "failed"
    assert not ch06.check_q1(1.0)
    second = capsys.readouterr().out
    assert "-0.5" not in second and "show_answer" in second  # wrong answers never reveal it
    X.show_answer("ch06.q1")
    assert "-0.5" in capsys.readouterr().out  # asked for: the answer and the explanation
    assert ch06.check_q1(None) is False and X.OUTCOMES["ch06.q1"]["status"] == "todo"


# ---------------------------------------------------------------- stretch: port weights to half-split


def test_permute_solution_passes_and_library_is_forbidden(capsys, monkeypatch):
    ok, out = run(ch06.check_permute_for_half_split, ch06.solution_permute_for_half_split, capsys)
    assert ok and "all 4 cases pass" in out
    ok, _ = run(ch06.check_permute_for_half_split, lambda w, h: rope.permute_qk_weight(w, h), capsys)
    assert not ok and X.OUTCOMES["ch06.ex5"]["status"] == "forbidden"
    without_forbid(monkeypatch)
    ok, _ = run(ch06.check_permute_for_half_split, lambda w, h: rope.permute_qk_weight(w, h), capsys)
    assert ok


def test_permuted_weights_give_the_interleaved_model_in_half_split_code():
    """The oracle: the ported model gives the trained model's outputs (section 5's claim)."""
    torch.manual_seed(0)
    inter = rope.StandardAttentionWithRoPE(48, 3).eval()
    half = rope.StandardAttentionWithRoPE(48, 3, interleaved=False).eval()
    half.load_state_dict(inter.state_dict())
    with torch.no_grad():
        for name in ("q_proj", "k_proj"):
            layer = getattr(half, name)
            layer.weight.copy_(ch06.solution_permute_for_half_split(layer.weight, 3))
            layer.bias.copy_(ch06.solution_permute_for_half_split(layer.bias, 3))
        x = torch.randn(2, 9, 48)
        tables = rope.generate_rope_embeddings(9, 16)
        assert torch.allclose(inter(x, x, x, tables), half(x, x, x, tables), atol=1e-5)


def _inverse(w, h):  # where each old row goes, instead of which old row each place takes
    d = w.shape[0] // h
    order = list(range(0, d, 2)) + list(range(1, d, 2))
    inv = [order.index(j) for j in range(d)]
    return w[[hh * d + i for hh in range(h) for i in inv]]


def _ignores_heads(w, h):  # one permutation over all the rows, as if there were one head
    n = w.shape[0]
    return w[list(range(0, n, 2)) + list(range(1, n, 2))]


def _columns(w, h):  # reorders the input features instead of the output rows
    d = w.shape[-1]
    return w[..., list(range(0, d, 2)) + list(range(1, d, 2))]


@pytest.mark.parametrize("wrong", [_inverse, _ignores_heads, _columns, lambda w, h: w])
def test_permute_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch06.check_permute_for_half_split, wrong, capsys)
    assert not ok and "❌" in out and "hint" in out
