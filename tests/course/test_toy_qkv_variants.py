"""Chapter 01's experiment with one matrix shared by two roles, and why R is in the task."""

import torch

from attnkit.toy import self_match_fraction, train_fixed_vs_qkv


def test_queries_tied_to_keys_fail_and_keys_tied_to_values_do_not():
    r = train_fixed_vs_qkv(n=8, d=16, steps=150, seed=0)
    assert set(r) >= {"fixed", "qkv", "tied_qk", "tied_kv", "zero", "tied_qk_curve", "tied_kv_curve"}
    # W_Q = W_K makes the scores x_i W W^T x_j symmetric: no better than a fixed matrix here
    assert r["tied_qk"] > 0.8 * r["zero"] and r["tied_qk"] > 3 * r["qkv"]
    # W_K = W_V: the query matrix absorbs the key matrix (only W_Q W_K^T enters the scores)
    assert r["tied_kv"] < 0.3 * r["fixed"]
    assert len(r["tied_kv_curve"]) == 150


def test_the_variants_start_where_qkv_starts():
    # with no training step, a model's first loss is that of its initial matrices: the tied
    # models copy qkv's (W_Q, W_V for queries = keys; W_Q, W_K for keys = values)
    r = train_fixed_vs_qkv(n=8, d=16, steps=1, seed=3)
    g = torch.Generator().manual_seed(3)
    torch.linalg.qr(torch.randn(16, 16, generator=g))
    wq, wk, wv = (torch.randn(16, 16, generator=g) / 4 for _ in range(3))
    assert r["qkv_curve"][0] != r["tied_kv_curve"][0] != r["tied_qk_curve"][0]
    from attnkit.toy import lookup_batch

    rot = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))[0]
    x, y = lookup_batch(g, 64, 8, 16, rot)

    def loss(a, b, c):
        return ((torch.softmax((x @ a) @ (x @ b).transpose(1, 2), -1) @ (x @ c)) - y).pow(2).mean().item()

    assert abs(r["qkv_curve"][0] - loss(wq, wk, wv)) < 1e-6
    assert abs(r["tied_qk_curve"][0] - loss(wq, wq, wv)) < 1e-6
    assert abs(r["tied_kv_curve"][0] - loss(wq, wk, wk)) < 1e-6


def test_self_match_fraction_is_counted_by_brute_force():
    frac = self_match_fraction(n=5, d=4, batch=50, seed=2)
    x = torch.randn(50, 5, 4, generator=torch.Generator().manual_seed(2))
    hits = sum(int(max(range(5), key=lambda j: float(x[b, i] @ x[b, j])) == i) for b in range(50) for i in range(5))
    assert abs(frac - hits / 250) < 1e-6  # a float32 mean
    assert 0 < frac < 1  # at d = 4 another vector sometimes matches better than itself
