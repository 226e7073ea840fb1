"""Chapter 09 checkers: each passes its reference solution (itself checked against attnkit.linear,
an independent definition or a closed form) and fails typical wrong answers, never raising."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attnkit.linear as L
from attnkit.exercises import ch09
from attnkit.i18n import set_language
from helpers import run


def phi(x):
    return F.elu(x) + 1


# ---------------------------------------------------------------- exercise 1: the RNN step


def test_step_solution_passes_and_equals_attnkit_recurrence(capsys):
    ok, out = run(ch09.check_step, ch09.solution_step, capsys)
    assert ok and "✅" in out and "all 3 cases pass" in out
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3))
    s, z = torch.zeros(4, 4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    outs = []
    for i in range(6):
        o, s, z = ch09.solution_step(s, z, q[i], k[i], v[i])
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs), L.linear_attention(q, k, v, causal=True))


def _read_before_update(s, z, q_t, k_t, v_t):  # the output misses the current token
    pq = phi(q_t)
    out = (pq @ s) / torch.clamp(pq @ z, min=1e-6)
    return out, s + torch.outer(phi(k_t), v_t), z + phi(k_t)


def _no_denominator(s, z, q_t, k_t, v_t):
    s, z = s + torch.outer(phi(k_t), v_t), z + phi(k_t)
    return phi(q_t) @ s, s, z


def _no_feature_map(s, z, q_t, k_t, v_t):
    s, z = s + torch.outer(k_t, v_t), z + k_t
    return (q_t @ s) / (q_t @ z), s, z


@pytest.mark.parametrize("wrong", [_read_before_update, _no_denominator, _no_feature_map])
def test_step_wrong_answers_fail_with_a_nudge_not_the_formula(wrong, capsys, monkeypatch):
    monkeypatch.setitem(ch09.MISTAKES, "ch09.ex1", ())  # the staged hints, not the diagnosis (tested elsewhere)
    ok, out = run(ch09.check_step, wrong, capsys)
    assert not ok and "❌" in out and "update first" in out
    assert "torch.outer" not in out  # the formula comes only with show_hint
    ok, out = run(ch09.check_step, wrong, capsys)
    assert not ok and "elu(x) + 1" in out and 'show_hint("ch09.ex1")' in out


def test_step_calling_the_library_is_refused(capsys):
    def uses_attnkit(s, z, q_t, k_t, v_t):
        return L.linear_attention_step(None, q_t, k_t, v_t)

    ok, out = run(ch09.check_step, uses_attnkit, capsys)
    assert not ok and "attnkit.linear.linear_attention_step" in out


# ---------------------------------------------------------------- exercise 2: Gaussian-kernel features


def test_features_solution_passes_and_estimates_the_gaussian_kernel(capsys):
    ok, out = run(ch09.check_positive_features, ch09.solution_positive_features, capsys)
    assert ok and "all 3 cases pass" in out
    # the oracle: the closed form exp(-|x - y|^2 / 2), reached by averaging over many features
    x, _ = ch09._feature_case(5, 5, 4, 7)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(400_000, 4, generator=g, dtype=torch.float64)
    est = ch09.solution_positive_features(x, w)
    gauss = torch.exp(-torch.cdist(x, x) ** 2 / 2)  # (5, 5)
    torch.testing.assert_close(est @ est.T, gauss, rtol=0.03, atol=0.0)
    # Lemma 1's map times each token's own exp(-|x|^2 / 2): the derivation, checked against attnkit
    torch.testing.assert_close(ch09.solution_positive_features(x, w[:7]),
                               L.favor_features(x, w[:7], "positive") * torch.exp(-(x * x).sum(-1, keepdim=True) / 2))


def _gauss(c, norm=True):  # m^-1/2 exp(w . x - c |x|^2)
    return lambda x, w: torch.exp(x @ w.T - c * (x * x).sum(-1, keepdim=True)) / (math.sqrt(w.shape[0]) if norm else 1)


@pytest.mark.parametrize(("wrong", "says"), [
    (_gauss(0.5), "Lemma 1's map unchanged"),  # the chapter's Lemma 1 retyped: estimates exp(x . y)
    (_gauss(0.0), "c(x) is 0"),  # the kernel's factor with the wrong sign: cancels Lemma 1's
    (_gauss(1.0, norm=False), "m^(−1/2)"),  # forgets 1 / sqrt(m)
])
def test_features_named_mistakes_get_their_diagnosis(wrong, says, capsys):
    ok, out = run(ch09.check_positive_features, wrong, capsys)
    assert not ok and "❌" in out and says in out


@pytest.mark.parametrize("wrong", [
    _gauss(2.0),  # 2 |x|^2
    lambda x, w: torch.cos(x @ w.T) / math.sqrt(w.shape[0]),  # the trig map, half of it
])
def test_features_other_wrong_answers_fail_with_a_staged_hint(wrong, capsys):
    ok, out = run(ch09.check_positive_features, wrong, capsys)
    assert not ok and "❌" in out and "|x - y|^2" in out and "torch.exp" not in out


def test_features_calling_favor_features_is_refused(capsys):
    def derived_with_the_library(x, w):
        return L.favor_features(x, w) * torch.exp(-(x * x).sum(-1, keepdim=True) / 2)

    ok, out = run(ch09.check_positive_features, derived_with_the_library, capsys)
    assert not ok and "attnkit.linear.favor_features" in out


# ---------------------------------------------------------------- exercise 3: landmarks


def test_landmarks_solution_passes_and_equals_segment_means(capsys):
    ok, out = run(ch09.check_landmarks, ch09.solution_landmarks, capsys)
    assert ok and "all 3 cases pass" in out
    for n, m in ((12, 4), (10, 4), (5, 5), (17, 6)):
        x = ch09._rows(n, 3, n)
        torch.testing.assert_close(ch09.solution_landmarks(x, m), L.segment_means(x, m))
    x = ch09._rows(10, 2, 8)
    by_hand = torch.stack([x[0:3].mean(0), x[3:6].mean(0), x[6:9].mean(0), x[9]])
    torch.testing.assert_close(ch09.solution_landmarks(x, 4), by_hand)


@pytest.mark.parametrize("wrong", [
    lambda x, m: x.reshape(-1, m, x.shape[1]).mean(0),  # strided, not contiguous
    lambda x, m: F.pad(x, (0, 0, 0, -(-x.shape[0] // m) * m - x.shape[0])).reshape(m, -1, x.shape[1]).mean(1),
    lambda x, m: x[:: -(-x.shape[0] // m)],  # the first row of each segment
])
def test_landmarks_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch09.check_landmarks, wrong, capsys)
    assert not ok and "❌" in out


def test_zero_padding_fails_only_on_the_ragged_case(capsys):
    padded = lambda x, m: F.pad(x, (0, 0, 0, -(-x.shape[0] // m) * m - x.shape[0])).reshape(m, -1, x.shape[1]).mean(1)  # noqa: E731
    ok, out = run(ch09.check_landmarks, padded, capsys)
    assert not ok and "case 2 of 3" in out and "N = 10, m = 4" in out


# ---------------------------------------------------------------- questions


def test_q1_state_size_of_a_performer_head(capsys):
    # the oracle: attnkit's own causal state, grown one token at a time with 256 features
    m, d = 256, 64
    phi_k = L.favor_features(torch.randn(1, d), L.orthogonal_random_features(m, d))  # (1, m)
    _, state = L.linear_attention_step(None, torch.ones(m), phi_k[0], torch.randn(d), feature_map=lambda x: x)
    assert state.s.numel() + state.z.numel() == 16640
    ok, out = run(ch09.check_q1, None, capsys)
    assert not ok and "not answered yet" in out
    ok, out = run(ch09.check_q1, 64 * 64 + 64, capsys)  # the elu + 1 head of section 2: M = d
    assert not ok and "❌" in out and "phi(k)" in out and "16640" not in out
    ok, out = run(ch09.check_q1, 256 * 64 * 1_000_000, capsys)
    assert not ok and "16640" not in out  # wrong answers never reveal it
    from attnkit.exercises import show_answer
    ok, out = run(show_answer, "ch09.q1", capsys)
    assert "16640" in out
    ok, out = run(ch09.check_q1, 256 * 64 + 256, capsys)
    assert ok and "✅" in out


def test_q2_choice_matches_lemma2(capsys):
    # the right choice is the one with the smaller Lemma 2 MSE at a small kernel value
    x, y = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])  # SM(x, y) = e^-1 ... small
    sm = math.exp(float(x @ y))
    pos = math.exp(float((x + y) @ (x + y))) * sm**2 * (1 - math.exp(-float((x + y) @ (x + y))))
    trig = math.exp(float((x + y) @ (x + y))) / sm**2 * (1 - math.exp(-float((x - y) @ (x - y)))) ** 2 / 2
    assert pos < trig
    ok, out = run(ch09.check_q2, "a", capsys)
    assert not ok and "❌" in out and "Lemma 2" in out
    ok, out = run(ch09.check_q2, "z", capsys)
    assert not ok and "choose one of" in out
    ok, out = run(ch09.check_q2, "B", capsys)
    assert ok and "✅" in out


# ---------------------------------------------------------------- stretch


def test_stretch_solution_passes_and_equals_attnkit(capsys):
    ok, out = run(ch09.check_causal_linear, ch09.solution_causal_linear, capsys)
    assert ok and "all 3 cases pass" in out
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(23, 4, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(ch09.solution_causal_linear(q, k, v, 5), L.linear_attention_quadratic(q, k, v, causal=True))


def _quadratic(q, k, v, chunk):  # right numbers, N x N memory
    a = (phi(q) @ phi(k).T).tril()
    return (a @ v) / a.sum(1, keepdim=True)


def _chunks_forget_the_past(q, k, v, chunk):
    outs = []
    for a in range(0, q.shape[0], chunk):
        pq, pk, vc = phi(q[a:a + chunk]), phi(k[a:a + chunk]), v[a:a + chunk]
        w = (pq @ pk.T).tril()
        outs.append((w @ vc) / w.sum(1, keepdim=True))
    return torch.cat(outs)


def _peeks_inside_the_chunk(q, k, v, chunk):
    s, z, outs = 0, 0, []
    for a in range(0, q.shape[0], chunk):
        pq, pk, vc = phi(q[a:a + chunk]), phi(k[a:a + chunk]), v[a:a + chunk]
        w = pq @ pk.T  # no tril: sees the rest of its chunk
        outs.append((w @ vc + pq @ s) / (w.sum(1) + pq @ z)[:, None] if a else (w @ vc) / w.sum(1)[:, None])
        s, z = s + pk.T @ vc, z + pk.sum(0)
    return torch.cat(outs)


def test_stretch_quadratic_memory_fails_on_the_measured_case(capsys):
    ok, out = run(ch09.check_causal_linear, _quadratic, capsys)
    assert not ok and "case 3 of 3" in out and "MiB" in out


@pytest.mark.parametrize("wrong", [_chunks_forget_the_past, _peeks_inside_the_chunk])
def test_stretch_wrong_answers_fail(wrong, capsys):
    ok, out = run(ch09.check_causal_linear, wrong, capsys)
    assert not ok and "❌" in out and "values differ" in out


# ---------------------------------------------------------------- stubs, errors, Chinese


@pytest.mark.parametrize("check", [ch09.check_step, ch09.check_positive_features, ch09.check_landmarks,
                                   ch09.check_causal_linear])
def test_stub_says_not_done_and_errors_never_raise(check, capsys):
    def stub(*args):
        raise NotImplementedError

    ok, out = run(check, stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(check, lambda *a: 1 / 0, capsys)
    assert not ok and "ZeroDivisionError" in out
    ok, out = run(check, 42, capsys)
    assert not ok and "expected a function" in out


def test_chinese_feedback(capsys):
    set_language("zh")
    ok, out = run(ch09.check_step, _no_denominator, capsys)
    assert not ok and "练习 1" in out and "提示" in out
    ok, out = run(ch09.check_landmarks, ch09.solution_landmarks, capsys)
    assert ok and "全部通过" in out
    ok, out = run(ch09.check_q2, "b", capsys)
    assert ok and "引理 2" in out
