"""Chapter 01's experiment and cost helpers, against brute force and torch's FLOP counter."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from attnkit.core import scaled_dot_product_attention
from attnkit.toy import attention_flops, lookup_batch, measure_attention_cost, train_fixed_vs_qkv


def test_lookup_batch_answers_are_the_best_matches():
    g = torch.Generator().manual_seed(0)
    rot = torch.linalg.qr(torch.randn(6, 6, generator=g))[0]
    x, y = lookup_batch(g, 3, 5, 6, rot)
    for b in range(3):
        for i in range(5):
            scores = [float((rot @ x[b, i]) @ x[b, j]) for j in range(5)]
            assert torch.equal(y[b, i], x[b, scores.index(max(scores))])


def test_attention_learns_the_lookup_and_a_fixed_matrix_cannot():
    r = train_fixed_vs_qkv(n=8, d=16, steps=150, seed=0)
    assert r["qkv"] < 0.3 * r["fixed"]
    assert r["fixed"] > 0.8 * r["zero"]  # barely better than predicting zero
    assert len(r["qkv_curve"]) == 150


def test_flop_formula_matches_torch_flop_counter():
    q, k, v = torch.randn(1, 1, 40, 16), torch.randn(1, 1, 24, 16), torch.randn(1, 1, 24, 8)
    with FlopCounterMode(display=False) as counter:
        torch.matmul(torch.matmul(q, k.transpose(-2, -1)), v)
    assert counter.get_total_flops() == attention_flops(40, 24, 16, 8)


def test_measured_bytes_are_those_of_the_weight_matrix():
    rows = measure_attention_cost(ns=(32, 64), d=8, repeats=1)
    assert [r["score_bytes"] for r in rows] == [32 * 32 * 4, 64 * 64 * 4]
    _, w = scaled_dot_product_attention(torch.randn(64, 8), torch.randn(64, 8), torch.randn(64, 8),
                                        return_weights=True)
    assert w.numel() * w.element_size() == rows[1]["score_bytes"]
    assert all(r["ms"] > 0 for r in rows)


def test_attention_cost_is_timed_round_robin_on_one_thread(monkeypatch):
    from attnkit import timing

    seen = []
    real = timing.round_robin_medians

    def spy(impls, repeats, warmup=1):
        seen.append((list(impls), torch.get_num_threads(), repeats))
        return real(impls, repeats, warmup)

    monkeypatch.setattr(timing, "round_robin_medians", spy)
    rows = measure_attention_cost(ns=(16, 32), d=8, repeats=2)
    assert seen == [([16, 32], 1, 2)] and all(r["ms"] > 0 for r in rows)
