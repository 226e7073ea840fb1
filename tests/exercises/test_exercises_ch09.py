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


# ---------------------------------------------------------------- exercise 4 (id ch09.ex5): the gated delta rule


def _library_step(S, k, v, beta, alpha):
    """attnkit.forgetting's step on one head: the oracle the reference solution is held to."""
    from attnkit import forgetting as FG

    full = lambda x: torch.full((1, 1), x, dtype=S.dtype)  # noqa: E731
    return FG.delta_rule_step(S[None, None], k[None, None], k[None, None], v[None, None], full(beta),
                              full(math.log(alpha)))[1][0, 0]


def test_gated_delta_solution_passes_and_equals_attnkit_forgetting(capsys):
    from attnkit import exercises as X
    from attnkit import forgetting as FG

    ok, out = run(ch09.check_gated_delta_step, ch09.solution_gated_delta_step, capsys)
    assert ok and "all 3 cases pass" in out
    ex = X.registry(("ch09",))["ch09.ex5"]
    for seed in (0, 1, 2):
        for case in ex.cases(seed):  # the visible cases and one drawn
            torch.testing.assert_close(ch09.solution_gated_delta_step(*case.args), _library_step(*case.args))
    # stepped over a sequence, it is the recurrence whose explicit N x N form is the triangular solve
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 1, 9, n, generator=g, dtype=torch.float64) for n in (5, 5, 3))
    k = FG.l2_normalize(k)
    beta = torch.rand(1, 1, 9, generator=g, dtype=torch.float64)
    logs = -torch.rand(1, 1, 9, generator=g, dtype=torch.float64)
    S, outs = torch.zeros(5, 3, dtype=torch.float64), []
    for i in range(9):
        S = ch09.solution_gated_delta_step(S, k[0, 0, i], v[0, 0, i], beta[0, 0, i].item(), logs[0, 0, i].exp().item())
        outs.append(q[0, 0, i] @ S)
    torch.testing.assert_close(torch.stack(outs), FG.delta_rule_explicit(q, k, v, beta, logs, scale=1.0)[0, 0])


def _honest_projection(S, k_t, v_t, beta_t, alpha_t):  # erase along k, then write: written from the formula
    decayed = alpha_t * S
    return decayed - beta_t * torch.outer(k_t, k_t @ decayed) + beta_t * torch.outer(k_t, v_t)


def test_gated_delta_an_honest_answer_passes_whatever_the_seed(capsys):
    from attnkit import exercises as X

    for seed in (0, 7, 123):
        X.set_case_seed(seed)
        try:
            ok, out = run(ch09.check_gated_delta_step, _honest_projection, capsys)
        finally:
            X.set_case_seed(None)
        assert ok and "all 3 cases pass" in out


# mistakes as a learner writes them (not the checker's own lambdas), each with the key of its hint
def _error_before_decay(S, k_t, v_t, beta_t, alpha_t):
    err = v_t - k_t @ S
    return alpha_t * S + beta_t * torch.outer(k_t, err)


def _decay_after_write(S, k_t, v_t, beta_t, alpha_t):
    S = S + beta_t * torch.outer(k_t, v_t - k_t @ S)
    return alpha_t * S


def _no_erase(S, k_t, v_t, beta_t, alpha_t):
    return alpha_t * S + beta_t * torch.outer(k_t, v_t)


def _gradient_added(S, k_t, v_t, beta_t, alpha_t):
    S = alpha_t * S
    return S + beta_t * torch.outer(k_t, k_t @ S - v_t)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize(("wrong", "key"), [(_error_before_decay, "ch09.mistake.ex5.error_before_decay"),
                                            (_decay_after_write, "ch09.mistake.ex5.decay_after_write"),
                                            (_no_erase, "ch09.mistake.ex5.no_erase"),
                                            (_gradient_added, "ch09.mistake.ex5.sign")])
def test_gated_delta_named_mistakes_get_their_hint(wrong, key, lang, capsys):
    from attnkit.exercises import _STAGE
    from attnkit.i18n import t

    set_language(lang)
    _STAGE.pop("ch09.ex5", None)
    ok, out = run(ch09.check_gated_delta_step, wrong, capsys)
    assert not ok and t(key) in out
    assert "torch.outer(k_t, err)" not in out  # the formula comes only with show_hint
    others = {"ch09.mistake.ex5.error_before_decay", "ch09.mistake.ex5.decay_after_write",
              "ch09.mistake.ex5.no_erase", "ch09.mistake.ex5.sign"} - {key}
    assert not any(t(k) in out for k in others)


def test_gated_delta_stub_library_and_its_sibling_are_refused(capsys):
    from attnkit import forgetting as FG

    def stub(S, k_t, v_t, beta_t, alpha_t):
        raise NotImplementedError

    ok, out = run(ch09.check_gated_delta_step, stub, capsys)
    assert not ok and "not done yet" in out
    ok, out = run(ch09.check_gated_delta_step, _library_step, capsys)
    assert not ok and "attnkit.forgetting.delta_rule_step" in out

    def through_gla(S, k_t, v_t, beta_t, alpha_t):  # the gated linear step fed the delta rule's correction
        u = beta_t * (v_t - k_t @ (alpha_t * S))
        one = lambda x: x[None, None]  # noqa: E731
        return FG.gated_linear_attention_step(one(S), one(k_t), one(k_t), one(u),
                                              torch.full((1, 1), math.log(alpha_t), dtype=S.dtype))[1][0, 0]

    ok, out = run(ch09.check_gated_delta_step, through_gla, capsys)
    assert not ok and "attnkit.forgetting.gated_linear_attention_step" in out


def test_gated_delta_hard_coded_visible_outputs_fail_the_drawn_case(capsys):
    from attnkit import exercises as X

    ex = X.registry(("ch09",))["ch09.ex5"]
    table = [(case.args, ex.expected(case)) for case in ex.visible]

    def lookup(S, k_t, v_t, beta_t, alpha_t):
        for args, out in table:
            if args[0].shape == S.shape and torch.equal(args[0], S) and torch.equal(args[1], k_t):
                return out
        return table[-1][1]

    X.set_case_seed(5)
    try:
        ok, out = run(ch09.check_gated_delta_step, lookup, capsys)
    finally:
        X.set_case_seed(None)
    assert not ok and "drawn from seed 5" in out


# ---------------------------------------------------------------- question 3 (predict first): overwrite


def test_q3_the_expected_choice_is_what_the_library_computes(capsys):
    from attnkit import forgetting as FG
    from attnkit.exercises import show_answer

    k = torch.tensor([0.6, 0.8, 0.0], dtype=torch.float64)
    v1, v2 = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), torch.tensor([0.0, 3.0, -1.0], dtype=torch.float64)
    keys, vals = torch.stack([k, k])[None, None], torch.stack([v1, v2])[None, None]
    plain = FG.gated_linear_attention_recurrent(keys, keys, vals, torch.zeros(1, 1, 2, dtype=torch.float64))[1][0, 0]
    delta = FG.delta_rule_recurrent(keys, keys, vals, torch.ones(1, 1, 2, dtype=torch.float64))[1][0, 0]
    torch.testing.assert_close(k @ plain, v1 + v2)  # choice b: the mix, and ...
    torch.testing.assert_close(k @ delta, v2)  # ... the new value
    ok, out = run(ch09.check_q3, None, capsys)
    assert not ok and "not answered yet" in out
    ok, out = run(ch09.check_q3, "c", capsys)
    assert not ok and "❌" in out and "S = 0" in out and "v2 - v1 is what it writes" not in out
    ok, out = run(ch09.check_q3, "a", capsys)
    assert not ok and 'show_answer("ch09.q3")' in out and "v2 - v1 is what it writes" not in out
    ok, out = run(show_answer, "ch09.q3", capsys)
    assert "b) plain: v1 + v2; delta rule: v2" in out
    for spelling in ("b", "B", "b)", "（b）", "b) plain: v1 + v2; delta rule: v2", "不遗忘：v1 + v2；delta 规则：v2"):
        ok, out = run(ch09.check_q3, spelling, capsys)
        assert ok and "✅" in out and "v2 - v1 is what it writes" in out, spelling


def test_q3_and_exercise_4_in_chinese(capsys):
    set_language("zh")
    ok, out = run(ch09.check_q3, "ｂ", capsys)
    assert ok and "问题 3" in out and "修正" in out
    ok, out = run(ch09.check_gated_delta_step, _no_erase, capsys)
    assert not ok and "练习 4" in out and "门控线性注意力" in out
