"""The bypass corpus: for every code exercise of every chapter, the cheats a hurried
learner tries must not pass — the library's function or a sibling that computes the same thing
(called directly, bound as a default argument, through an alias), the reference solution handed in,
its source copied and run under another name, outputs hard-coded for the visible cases — and an
honest answer written independently of the solution (tests/exercises/honest_answers.py) passes.
The case seed is fixed, so a failure repeats."""

from __future__ import annotations

import functools
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from honest_answers import HONEST

import attnkit.core
import attnkit.experiments
import attnkit.factory
import attnkit.flash
import attnkit.forgetting
import attnkit.gqa
import attnkit.linear
import attnkit.lora
import attnkit.mha
import attnkit.mqar
import attnkit.rope
import attnkit.softmax
import attnkit.sparse
from attnkit import exercises as X

REFUSE_SOLUTIONS = True  # see tests/exercises/conftest.py
SEED = 20240607
REGISTRY = X.registry()
CODE = sorted(ex_id for ex_id in HONEST)


@pytest.fixture(autouse=True)
def _fixed_seed():
    X.set_case_seed(SEED)
    yield
    X.set_case_seed(None)


def _aliased(fn):
    alias = fn

    def cheat(*args, **kwargs):
        return alias(*args, **kwargs)
    return cheat


def _by_default(fn):
    def cheat(*args, _f=fn, **kwargs):
        return _f(*args, **kwargs)
    return cheat


sdpa = F.scaled_dot_product_attention
flash = attnkit.flash.flash_attention

# exercise id -> cheats that call a ready-made function (the library's own, or a sibling)
LIBRARY = {
    "ch01.ex1": [lambda q, k, v: sdpa(q.mT, k.mT, v.mT).mT,  # one token per column: transposed around SDPA
                 lambda q, k, v: torch.ops.aten.scaled_dot_product_attention(q.mT, k.mT, v.mT).mT,
                 lambda q, k, v: (flash(q.mT[None, None], k.mT[None, None], v.mT[None, None])[0, 0]
                                  if q.dim() == 2 else flash(q.mT, k.mT, v.mT)).mT],
    "ch01.ex2": [lambda n: attnkit.core.causal_mask(n)],
    "ch01.ex3": [lambda q, k, v, m: attnkit.core.scaled_dot_product_attention(q, k, v, mask=m),
                 lambda q, k, v, m: sdpa(q, k, v, attn_mask=m).nan_to_num(0.0)],
    "ch02.ex4": [lambda d, mq, sq, mk, sk: attnkit.experiments.dot_product_variance_theory(d, std=sq)
                 + d * (mq * mk) ** 2],
    "ch03.ex1": [lambda x: x.softmax(-1), lambda x: torch.special.softmax(x, -1), lambda x: attnkit.softmax.softmax(x)],
    "ch03.ex2": [lambda x, m: attnkit.softmax.softmax(x, mask=m)],
    "ch03.ex3": [lambda ma, la, mb, lb: (lambda s: (s.m, s.l))(attnkit.softmax.merge(
        attnkit.softmax.OnlineSoftmaxState(ma, la), attnkit.softmax.OnlineSoftmaxState(mb, lb)))],
    "ch03.ex4": [lambda p: attnkit.softmax.softmax_jacobian(p),
                 lambda p: torch.autograd.functional.jacobian(lambda x: x.softmax(-1), p.log())
                 if p.dim() == 1 else attnkit.softmax.softmax_jacobian(p)],
    "ch03.ex5": [lambda x, g: torch.autograd.grad(x.requires_grad_().log_softmax(-1), x, g)[0]],
    "ch04.ex1": [lambda x, h: attnkit.mha.split_heads(x, h)],
    "ch04.ex2": [lambda x: attnkit.mha.merge_heads(x)],
    "ch04.ex3": [lambda x, wq, wk, wv, wo, h: attnkit.mha.merge_heads(
        sdpa(*(attnkit.mha.split_heads(x @ w.T, h) for w in (wq, wk, wv)))) @ wo.T],
    "ch04.ex4": [lambda e, h, bias=True: attnkit.mha.mha_param_count(e, h, bias=bias)],
    "ch04.ex5": [lambda x, w, b, ow, ob, h, attn_mask=None, key_padding_mask=None: F.multi_head_attention_forward(
        x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), x.shape[-1], h, w, b, None, None, False, 0.0, ow, ob,
        attn_mask=attn_mask, key_padding_mask=key_padding_mask)],
    "ch05.ex1": [lambda x, n: attnkit.gqa.repeat_kv(x, n),
                 lambda x, n: attnkit.gqa.repeat_kv(x.transpose(1, 2), n).transpose(1, 2)],  # heads moved to axis 2
    "ch05.ex2": [lambda L, H, D, S, B, b: attnkit.gqa.kv_cache_bytes("gqa", S, B, num_layers=L, num_kv_heads=H,
                                                                    head_dim=D, bytes_per_element=b)],
    "ch05.ex3": [lambda q, k, v, kc, vc: (sdpa(q, torch.cat((kc, k), -2), torch.cat((vc, v), -2),
                                               attn_mask=torch.ones(q.shape[-2], kc.shape[-2] + k.shape[-2],
                                                                    dtype=torch.bool).tril(kc.shape[-2])),
                                          torch.cat((kc, k), -2), torch.cat((vc, v), -2))],
    "ch05.ex4": [lambda M, P, b, L, H, D, S: attnkit.gqa.max_batch_size(M, P * b, 2 * L * H * D * S * b)],
    "ch06.ex1": [lambda x, y, a: attnkit.rope.rotate_pair(x, y, a)],
    "ch06.ex2": [lambda x, c, s: attnkit.rope.apply_rope(x, c, s, interleaved=False),
                 lambda x, c, s: attnkit.rope._rotate(x, c, s, False)],
    "ch06.ex3": [lambda h: attnkit.rope.alibi_slopes(h)],
    "ch06.ex4": [lambda b, d, s: attnkit.rope.ntk_scaled_base(b, d, s)],
    "ch06.ex5": [lambda w, h: attnkit.rope.permute_qk_weight(w, h)],
    "ch07.ex1": [lambda m1, l1, o1, m2, l2, o2: attnkit.softmax.merge_partials(((m1, l1, o1), (m2, l2, o2)))],
    "ch07.ex2": [lambda qs, qe, ks, ke: attnkit.flash.causal_tile_kind(qs, qe, ks, ke) == "skip"],
    "ch07.ex3": [lambda N, d, M: attnkit.flash.io_flash(N, d, M)["total"]],
    "ch07.ex4": [lambda q, k, v, o, lse, do, block: torch.autograd.grad(
        attnkit.flash.flash_attention(*(t[None, None].requires_grad_() for t in (q, k, v))), [], [])],
    "ch08.ex1": [lambda n, l, c: attnkit.sparse.fixed_mask(n, l, c)],
    "ch08.ex2": [lambda m, layers: attnkit.sparse.receptive_field(m, layers)],
    "ch08.ex3": [lambda n, w, h, b: attnkit.sparse.attention_cost("sliding_window", n, window=w) * h * b],
    "ch08.ex4": [lambda q, k, v, w: attnkit.sparse.sliding_window_attention(q, k, v, w, causal=True),
                 lambda q, k, v, w: attnkit.sparse.block_sparse_attention(
                     q, k, v, torch.ones(1, 1), q.shape[0], mask_mod=lambda b, h, i, j: (j <= i) & (i - j < w))],
    "ch09.ex1": [lambda s, z, q, k, v: attnkit.linear.linear_attention_step(None, q, k, v)],
    "ch09.ex2": [lambda x, w: attnkit.linear.favor_features(x, w) * torch.exp(-(x * x).sum(-1, keepdim=True) / 2),
                 lambda x, w: attnkit.linear.softmax_kernel(x, w) * torch.exp(-(x * x).sum(-1, keepdim=True))
                 / math.sqrt(w.shape[0])],
    "ch09.ex3": [lambda x, m: attnkit.linear.segment_means(x, m)],
    "ch09.ex4": [lambda q, k, v, c: attnkit.linear.linear_attention(q, k, v, causal=True, chunk_size=c)],
    "ch09.ex5": [lambda S, k, v, b, a: attnkit.forgetting.delta_rule_step(
                     S[None, None], k[None, None], k[None, None], v[None, None], torch.full((1, 1), b, dtype=S.dtype),
                     torch.full((1, 1), math.log(a), dtype=S.dtype))[1][0, 0],
                 lambda S, k, v, b, a: attnkit.forgetting.gated_linear_attention_step(  # fed the delta correction
                     S[None, None], k[None, None], k[None, None], (b * (v - k @ (a * S)))[None, None],
                     torch.full((1, 1), math.log(a), dtype=S.dtype))[1][0, 0]],
    "ch10.ex1": [lambda W, old, new: attnkit.lora.merge_weight(attnkit.lora.unmerge_weight(
        W, old[0], old[1], old[2] / old[3]), new[0], new[1], new[2] / new[3])],
    "ch10.ex2": [lambda B, a, r, na, rs: B * attnkit.lora.lora_scaling(r, a) / attnkit.lora.lora_scaling(r, na, rs)],
    "ch10.ex3": [lambda *a: attnkit.lora.count_parameters(attnkit.lora.LoRASelfAttention(a[0], a[1], r=a[3]))[0]],
    "ch11.ex2": [lambda b, d, h: attnkit.factory.memory_breakdown(b, d, h)],
    "ch11.ex1": [lambda keys, values, slots, L: attnkit.mqar.mqar_batch(keys.shape[0], 32, L, keys.shape[1], 0)],
}


def _raw_solution(ex):
    sol = ex.solution
    return getattr(sol, "fn", sol)


def _copy_of_solution(ex):
    """The solution's source run under another name, in a copy of its module's namespace."""
    sol = _raw_solution(ex)
    mod = inspect.getmodule(sol)
    src = inspect.getsource(sol).replace(f"def {sol.__name__}(", "def copied_answer(", 1)
    scope = dict(vars(mod))
    exec(src, scope)  # noqa: S102 - the cheat under test
    return scope["copied_answer"]


def _hard_coded(ex):
    """Outputs of the visible cases, looked up by their inputs: right on every visible case only."""
    table = [(case, ex.expected(case)) for case in ex.visible]

    def same(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.shape == b.shape and bool((a == b).all())
        if isinstance(a, (tuple, list)):
            return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(same, a, b))
        return a == b

    def lookup(*args, **kwargs):
        for case, out in table:
            if same(case.args, args):
                return out[0] if isinstance(out, X.Result) else out
        out = table[0][1]  # an input it has not seen: the first answer it knows
        return out[0] if isinstance(out, X.Result) else out
    return lookup


def _outcome(ex, fn):
    ok = ex.check(fn)
    return ok, X.OUTCOMES[ex.id]


@pytest.mark.parametrize("ex_id", CODE)
def test_an_honest_answer_passes(ex_id, capsys):
    ok, rec = _outcome(REGISTRY[ex_id], HONEST[ex_id])
    assert ok, rec["feedback"]


@pytest.mark.parametrize("ex_id", CODE)
def test_the_reference_solution_and_a_copy_of_it_do_not_pass(ex_id, capsys):
    ex = REGISTRY[ex_id]
    ok, rec = _outcome(ex, _raw_solution(ex))
    assert not ok and rec["status"] == "solution", rec["feedback"]
    ok, rec = _outcome(ex, _copy_of_solution(ex))
    assert not ok and rec["status"] == "solution", rec["feedback"]


@pytest.mark.parametrize("ex_id", CODE)
def test_outputs_hard_coded_for_the_visible_cases_do_not_pass(ex_id, capsys):
    ex = REGISTRY[ex_id]
    ok, rec = _outcome(ex, _hard_coded(ex))
    assert not ok and rec["status"] in ("failed", "error"), rec["feedback"]


CALLS = [(ex_id, i) for ex_id in sorted(LIBRARY) for i in range(len(LIBRARY[ex_id]))]


@pytest.mark.parametrize(("ex_id", "i"), CALLS, ids=[f"{e}-{i}" for e, i in CALLS])
def test_a_ready_made_function_directly_by_default_argument_or_alias_does_not_pass(ex_id, i, capsys):
    ex, cheat = REGISTRY[ex_id], LIBRARY[ex_id][i]
    for how in (cheat, _by_default(cheat), _aliased(cheat), functools.partial(cheat)):
        ok, rec = _outcome(ex, how)
        assert not ok and rec["status"] == "forbidden", rec["feedback"]


def test_every_code_exercise_is_in_the_corpus():
    code = {ex_id for ex_id, ex in REGISTRY.items() if not ex.question} - {"ch01.ex4", "ch11.ex4"}
    assert code == set(HONEST)
    assert set(LIBRARY) >= {ex_id for ex_id in code if REGISTRY[ex_id].forbid}


# ---- the stretch exercises that take a class or a trained model

def test_ch01_stretch_refuses_the_reference_class_and_multihead_attention_by_default_argument(capsys):
    from attnkit.exercises import ch01

    assert not ch01.check_self_attention(ch01.SolutionSelfAttention)
    assert X.OUTCOMES["ch01.ex4"]["status"] == "solution"

    class Cheat(torch.nn.Module):
        def __init__(self, d, _mha=torch.nn.MultiheadAttention):
            super().__init__()
            self.inner = _mha(d, 1, batch_first=True)

        def forward(self, x):
            return self.inner(x, x, x)[0]
    assert not ch01.check_self_attention(Cheat)
    assert X.OUTCOMES["ch01.ex4"]["status"] == "forbidden"


def test_ch11_stretch_refuses_a_model_whose_layers_see_the_whole_sequence(capsys):
    from attnkit.exercises import ch11
    from attnkit.factory import AttentionConfig, TinyLM

    wide = TinyLM(32, [AttentionConfig(attention_type="local", d_model=16, n_heads=1, window_size=32, causal=True)
                       for _ in range(2)])
    assert not ch11.check_recaller(lambda: wide)
    out = capsys.readouterr().out
    assert X.OUTCOMES["ch11.ex4"]["status"] == "failed" and "whole sequence" in out
    assert ch11.layers_reach(wide.configs) == 62


def test_ch09_stretch_refuses_the_chapters_cumsum_cell(capsys):
    from attnkit.exercises import ch09

    def phi(x):
        return F.elu(x) + 1

    def retyped(q, k, v, chunk):  # chapter 09's cumsum cell, retyped: ignores chunk, holds N x d x dv
        S = torch.cumsum(phi(k)[:, :, None] * v[:, None, :], dim=0)
        Z = torch.cumsum(phi(k), dim=0)
        return torch.einsum("nd,nde->ne", phi(q), S) / (phi(q) * Z).sum(1, keepdim=True)

    assert not ch09.check_causal_linear(retyped)
    rec = X.OUTCOMES["ch09.ex4"]
    assert rec["status"] == "failed" and rec["case"] == 3 and "N(d + dv) + C(C + d·dv)" in rec["feedback"]
    assert 4 * 2048 * 32 * 32 >= 5 * ch09.memory_bound(2048, 32, 32, 64)  # the shortcut is 5 bounds and more
    assert math.isclose(ch09.memory_bound(2048, 32, 32, 64) / 2**20, 1.53, abs_tol=0.01)


def test_ch09_retyped_chapter_cells_do_not_pass(capsys):
    """A chapter cell retyped in place of the exercise: section 1's linear_attention_scratch on the
    one token (state ignored) for exercise 1; section 3's Lemma 1 map for exercise 2 (it estimates
    exp(x . y), not the Gaussian kernel); section 5's 4-token mean matrix E_pool for exercise 3."""
    from attnkit.exercises import ch09

    def phi(x):
        return F.elu(x) + 1

    def scratch_step(s, z, q_t, k_t, v_t):
        kv, zz = phi(k_t)[:, None] * v_t[None, :], phi(k_t)
        return (phi(q_t) @ kv) / (phi(q_t) @ zz), s + kv, z + zz

    def lemma1(x, w):
        return torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])

    def pooled(x, m):
        n = x.shape[0]
        E = torch.zeros(n, m, dtype=x.dtype)
        E[torch.arange(n), torch.arange(n) // (n // m)] = m / n
        return E.T @ x

    for check, ex_id, cheat in ((ch09.check_step, "ch09.ex1", scratch_step),
                                (ch09.check_positive_features, "ch09.ex2", lemma1),
                                (ch09.check_landmarks, "ch09.ex3", pooled)):
        assert not check(cheat), ex_id
        assert X.OUTCOMES[ex_id]["status"] in ("failed", "error"), X.OUTCOMES[ex_id]["feedback"]
    assert "Lemma 1's map unchanged" in X.OUTCOMES["ch09.ex2"]["feedback"]  # diagnosed, not just refused


def test_ch10_counting_refuses_the_chapters_usage_cell_retyped(capsys):
    from attnkit.exercises import ch10

    def retyped(dim, heads, dim_head, r, enable_lora, bias):  # chapter 10 section 5's usage cell, retyped
        attn = attnkit.lora.LoRASelfAttention(dim=dim, heads=heads, r=r, enable_lora=enable_lora, dim_head=dim_head)
        n_train, n_total = attnkit.lora.count_parameters(attnkit.lora.mark_only_lora_as_trainable(attn, bias=bias))
        return n_train

    assert not ch10.check_count(retyped)
    assert X.OUTCOMES["ch10.ex3"]["status"] == "forbidden", X.OUTCOMES["ch10.ex3"]["feedback"]


def test_ch08_stretch_refuses_the_chapters_window_mask_cell_retyped(capsys):
    """Chapter 08's section-2 cell (window_mask, an N x N mask) retyped and fed to dense attention,
    attnkit's or PyTorch's: right values, but the N x N mask and scores fail the memory case."""
    from attnkit.exercises import ch08

    def window_mask(n, w, causal=False):  # chapter 08, section 2, retyped
        i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
        return ((i - j >= 0) & (i - j < w)) if causal else ((i - j).abs() <= w // 2)

    for dense in (attnkit.core.scaled_dot_product_attention, sdpa):
        def retyped(q, k, v, window, _dense=dense):
            return _dense(q, k, v, attn_mask=window_mask(q.shape[0], window, causal=True))
        assert not ch08.check_window_attention(retyped)
        rec = X.OUTCOMES["ch08.ex4"]
        assert rec["status"] == "failed" and rec["case"] == 3 and "MiB" in rec["feedback"], rec["feedback"]


def test_ch01_ch05_ch06_retyped_chapter_cells_do_not_pass(capsys):
    """A chapter cell retyped in place of the exercise: 01 section 4's attention (one token per row;
    exercise 1 has one per column) for exercises 1 and 3 (it gives NaN where every key is masked);
    05 section 3's my_repeat_kv (heads on axis 1; the exercise has them on axis 2); 06 section 3's
    my_rope (interleaved pairs; exercise 2 asks for half-split ones)."""
    from attnkit.exercises import ch01, ch05, ch06

    def attention(q, k, v, mask=None):  # chapter 01, section 4
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def my_repeat_kv(x, n_rep):  # chapter 05, section 3
        B, n_g, S, d = x.shape
        return x[:, :, None].expand(B, n_g, n_rep, S, d).reshape(B, n_g * n_rep, S, d)

    def my_rope(x, cos, sin):  # chapter 06, section 3, given the exercise's cos and sin
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)

    for check, ex_id, cheat in ((ch01.check_attention, "ch01.ex1", attention),
                                (ch01.check_masked_attention, "ch01.ex3", attention),
                                (ch05.check_repeat_kv, "ch05.ex1", my_repeat_kv),
                                (ch06.check_apply_rope, "ch06.ex2", my_rope)):
        assert not check(cheat), ex_id
        assert X.OUTCOMES[ex_id]["status"] in ("failed", "error"), X.OUTCOMES[ex_id]["feedback"]
