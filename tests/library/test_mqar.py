"""attnkit.mqar: the MQAR data definition (checked against an independent loop over each
sequence), seeds, errors, the gap distribution, the state sizes (against real tensors), and a
tiny training run in which softmax attention learns to recall."""

from __future__ import annotations

import pytest
import torch

from attnkit import mqar
from attnkit.mqar import IGNORE_INDEX, mqar_batch


def labels_by_loop(inputs: torch.Tensor, num_pairs: int) -> torch.Tensor:
    """The targets, recomputed one sequence and one token at a time: after the 2K tokens of
    pairs, a token that is a key of an earlier pair is a query, and its target is that pair's
    value; every other position is ignored."""
    out = torch.full(inputs.shape, IGNORE_INDEX, dtype=torch.long)
    for b, row in enumerate(inputs.tolist()):
        pairs = {}
        for i in range(num_pairs):
            pairs[row[2 * i]] = row[2 * i + 1]
        for pos in range(2 * num_pairs, len(row)):
            if row[pos] in pairs:
                out[b, pos] = pairs[row[pos]]
    return out


@pytest.mark.parametrize("batch,V,L,K,seed", [(8, 64, 32, 4, 0), (5, 128, 64, 8, 3), (3, 16, 16, 4, 7),
                                              (4, 10, 9, 2, 1), (2, 8192, 256, 16, 5)])
def test_definition(batch, V, L, K, seed):
    x, y = mqar_batch(batch, V, L, K, seed)
    assert x.shape == y.shape == (batch, L) and x.dtype == y.dtype == torch.long
    half = V // 2
    keys, values = x[:, 0:2 * K:2], x[:, 1:2 * K:2]
    assert ((keys >= 1) & (keys < half)).all()                     # keys: first half, 0 excluded
    assert ((values >= half) & (values < V)).all()                 # values: second half
    for row_k, row_v in zip(keys.tolist(), values.tolist(), strict=True):
        assert len(set(row_k)) == K and len(set(row_v)) == K       # distinct within a sequence
    # labels only at queries, each the value paired with that key earlier (an independent loop)
    torch.testing.assert_close(y, labels_by_loop(x, K), rtol=0, atol=0)
    assert (y[:, :2 * K] == IGNORE_INDEX).all()
    assert ((y != IGNORE_INDEX).sum(1) == K).all()                 # every key queried exactly once
    q = x[:, 2 * K:]
    assert ((q == 0) | ((q >= 1) & (q < half))).all()              # query part: filler 0 or keys
    assert ((q != 0).sum(1) == K).all()
    pos = torch.nonzero(y != IGNORE_INDEX)[:, 1]
    assert ((pos - 2 * K) % 2 == 0).all()                          # query slots two tokens apart


def test_example_by_hand():
    x, y = mqar_batch(1, 16, 16, 3, seed=0)
    row, lab = x[0].tolist(), y[0].tolist()
    for i in range(3):
        key, value = row[2 * i], row[2 * i + 1]
        later = [p for p in range(6, 16) if row[p] == key]
        assert len(later) == 1 and lab[later[0]] == value


def test_seeds_repeat_and_differ():
    a = mqar_batch(16, 64, 32, 4, seed=11)
    b = mqar_batch(16, 64, 32, 4, seed=11)
    c = mqar_batch(16, 64, 32, 4, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_gap_probabilities_closed_form_and_sampling():
    p = mqar.gap_probabilities(5, power_a=0.5)
    expected = torch.tensor([g ** -0.5 for g in range(1, 6)], dtype=torch.float64)
    torch.testing.assert_close(p, expected / expected.sum())
    torch.testing.assert_close(mqar.gap_probabilities(4, power_a=1.0), torch.full((4,), 0.25, dtype=torch.float64))
    # K = 1: the slot of the one query is drawn from p itself
    x, y = mqar_batch(20000, 16, 12, 1, seed=0)
    slots = (torch.nonzero(y != IGNORE_INDEX)[:, 1] - 2) // 2
    freq = torch.bincount(slots, minlength=5).double() / len(slots)
    torch.testing.assert_close(freq, mqar.gap_probabilities(5), atol=0.015, rtol=0)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(seq_len=15, num_pairs=4), ValueError, "seq_len = 15 .* need seq_len >= 4 \\* num_pairs = 16"),
    (dict(vocab_size=9, num_pairs=4), ValueError, "vocab_size = 9 .* need vocab_size >= 10"),
    (dict(num_pairs=0), ValueError, "num_pairs must be an int >= 1, got 0"),
    (dict(batch=2.0), TypeError, "batch must be an int >= 1, got float"),
    (dict(seed=-1), ValueError, "seed must be an int >= 0, got -1"),
    (dict(power_a=0), ValueError, "power_a must be a finite number > 0, got 0.0"),
])
def test_errors_name_the_argument(kwargs, exc, match):
    args = dict(batch=2, vocab_size=64, seq_len=32, num_pairs=4, seed=0) | kwargs
    with pytest.raises(exc, match=match):
        mqar_batch(**args)


def test_smallest_allowed_sizes_work():
    x, y = mqar_batch(3, 10, 16, 4, seed=0)  # V = 2K + 2, L = 4K
    torch.testing.assert_close(y, labels_by_loop(x, 4), rtol=0, atol=0)


def test_recall_accuracy_counts_only_queries():
    x, y = mqar_batch(4, 16, 16, 2, seed=0)
    logits = torch.zeros(4, 16, 16)
    logits.scatter_(2, y.clamp(min=0)[..., None], 1.0)  # right at every query, "0" elsewhere
    assert mqar.recall_accuracy(logits, y) == 1.0
    q = torch.nonzero(y != IGNORE_INDEX)
    logits[q[0, 0], q[0, 1]] = 0.0
    logits[q[0, 0], q[0, 1], 15 if y[q[0, 0], q[0, 1]] != 15 else 14] = 1.0  # one wrong answer of 8
    assert mqar.recall_accuracy(logits, y) == 7 / 8
    with pytest.raises(ValueError, match="logits must be"):
        mqar.recall_accuracy(logits[0], y)
    assert mqar.chance_accuracy(64) == 1 / 32


class _Cfg:
    def __init__(self, attention_type, d_model=64, n_heads=4, window_size=8, num_kv_heads=2, nb_features=16,
                 conv_kernel=0):
        self.attention_type, self.d_model, self.n_heads = attention_type, d_model, n_heads
        self.window_size, self.num_kv_heads, self.nb_features, self.conv_kernel = (window_size, num_kv_heads,
                                                                                   nb_features, conv_kernel)


def test_decode_state_bytes_against_real_tensors():
    from attnkit.gqa import kv_cache_bytes_per_token
    from attnkit.linear import LinearAttentionState

    N, d, h = 100, 64, 4
    assert mqar.decode_state_bytes(_Cfg("full"), N) == N * kv_cache_bytes_per_token("mha", num_heads=h, head_dim=d // h,
                                                                                    dtype=torch.float32)
    assert mqar.decode_state_bytes(_Cfg("gqa"), N) == N * kv_cache_bytes_per_token(
        "gqa", num_heads=h, num_kv_heads=2, head_dim=d // h, dtype=torch.float32)
    k = torch.zeros(1, h, 8, d // h)
    assert mqar.decode_state_bytes(_Cfg("sliding"), N) == 2 * k.nbytes           # a window of 8 keys and values
    assert mqar.decode_state_bytes(_Cfg("sliding"), 5) == 2 * k[:, :, :5].nbytes  # shorter than the window
    lin = LinearAttentionState.zeros((1, h), d // h, d // h)
    assert mqar.decode_state_bytes(_Cfg("linear"), N) == lin.s.nbytes + lin.z.nbytes
    assert mqar.decode_state_bytes(_Cfg("linear"), 10 * N) == mqar.decode_state_bytes(_Cfg("linear"), N)
    perf = LinearAttentionState.zeros((1, h), 16, d // h)
    assert mqar.decode_state_bytes(_Cfg("performer"), N) == perf.s.nbytes + perf.z.nbytes
    assert mqar.decode_state_bytes(_Cfg("full", conv_kernel=4), N) == mqar.decode_state_bytes(_Cfg("full"), N) \
        + 3 * d * 4
    with pytest.raises(ValueError, match="got attention_type 'nystrom'"):
        mqar.decode_state_bytes(_Cfg("nystrom"), N)


def test_decode_state_bytes_of_the_taylor_map_is_the_real_state():
    """Based's layer: the state LinearAttention.recurrent really keeps with the Taylor feature map
    (1 + d_h + d_h^2 features per head); elu+1 at the same size keeps d_h features."""
    from attnkit.factory import AttentionConfig
    from attnkit.linear import LinearAttention

    torch.manual_seed(0)
    for h in (1, 2):
        layer = LinearAttention(32, h, feature_map="taylor", causal=True)
        _, state = layer.recurrent(torch.randn(1, 5, 32))
        cfg = AttentionConfig(attention_type="linear", d_model=32, n_heads=h, causal=True, feature_map="taylor")
        assert mqar.decode_state_bytes(cfg, 5) == state.s.nbytes + state.z.nbytes
        assert state.s.shape == (1, h, 1 + 32 // h + (32 // h) ** 2, 32 // h)
    elu = AttentionConfig(attention_type="linear", d_model=32, n_heads=2, causal=True)
    assert mqar.decode_state_bytes(elu, 5) == 2 * 16 * 17 * 4


def test_decode_state_bytes_agrees_with_the_factorys_decode_formula():
    from attnkit.factory import AttentionConfig, memory_breakdown

    for kind, opts in (("full", {}), ("local", {"window_size": 8}), ("linear", {}), ("gqa", {"num_kv_heads": 2}),
                       ("performer", {"nb_features": 24}), ("cosformer", {"max_seq_len": 64})):
        cfg = AttentionConfig(attention_type=kind, d_model=64, n_heads=4, causal=True, **opts)
        assert mqar.decode_state_bytes(cfg, 64) == memory_breakdown(cfg, 64, mode="decode")["kv_cache"], kind


def test_training_is_seeded_and_softmax_learns_to_recall():
    a = mqar.train_mqar("full", vocab_size=16, seq_len=16, num_pairs=2, width=32, steps=5, batch=8, eval_batch=16)
    b = mqar.train_mqar("full", vocab_size=16, seq_len=16, num_pairs=2, width=32, steps=5, batch=8, eval_batch=16)
    assert a["losses"] == b["losses"] and a["accuracy"] == b["accuracy"]
    assert a["settings"]["types"] == ["full", "full"] and a["settings"]["chance"] == 1 / 8
    r = mqar.train_mqar("full", vocab_size=16, seq_len=16, num_pairs=2, width=32, steps=60, batch=16, lr=1e-2,
                        eval_batch=64)
    assert r["accuracy"] > 3 * mqar.chance_accuracy(16)          # 0.375; chance is 0.125
    assert sum(r["losses"][-10:]) < 0.75 * sum(r["losses"][:10])
    assert r["state_bytes"] == 2 * mqar.decode_state_bytes(r["model"].configs[0], 16)
    mixed = mqar.train_mqar(["local", "linear"], vocab_size=16, seq_len=16, num_pairs=2, width=32, steps=2, batch=4,
                            eval_batch=8)
    assert mixed["settings"]["types"] == ["local", "linear"] and mixed["settings"]["layers"] == 2


def test_training_arguments_are_checked():
    with pytest.raises(ValueError, match="seq_len = 8 .* need seq_len >= 4 \\* num_pairs = 16"):
        mqar.train_mqar("full", seq_len=8, num_pairs=4, steps=1)
    with pytest.raises(TypeError, match="configs_or_type must be"):
        mqar.train_mqar(3, steps=1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0.0"):
        mqar.train_mqar("full", lr=0, steps=1)


def _memory_recall_by_loop(K, d, feature_map, seed=0, trials=4):
    """memory_recall's linear memory, one trial and one key at a time with plain sums."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(trials, K, d, generator=g, dtype=torch.float64)
    v = torch.randn(trials, K, d, generator=g, dtype=torch.float64)
    right = 0
    for t in range(trials):
        vt = [v[t, j] / v[t, j].norm() for j in range(K)]
        phi = [torch.nn.functional.elu(k[t, j]) + 1 if feature_map == "elu+1" else k[t, j] for j in range(K)]
        for i in range(K):
            num = sum(float(phi[j] @ phi[i]) * vt[j] for j in range(K))
            den = sum(float(phi[j] @ phi[i]) for j in range(K)) if feature_map == "elu+1" else 1.0
            read = num / den
            right += int(max(range(K), key=lambda j: float(read @ vt[j])) == i)
    return right / (trials * K)


@pytest.mark.parametrize("feature_map", ["identity", "elu+1"])
def test_memory_recall_against_a_loop(feature_map):
    for K, d in ((3, 4), (6, 4), (5, 8)):
        assert mqar.memory_recall(K, d, feature_map=feature_map, trials=4) == _memory_recall_by_loop(K, d, feature_map)


def test_memory_recall_capacity():
    assert mqar.memory_recall(16, 16, keys="orthogonal") == 1.0          # d orthogonal keys: exact
    assert mqar.memory_recall(64, 16) < 0.5                               # far more pairs than dimensions
    assert mqar.memory_recall(8, 64, feature_map="elu+1") < mqar.memory_recall(8, 64)   # positive features mix more
    assert mqar.memory_recall(32, 64, memory="softmax") == 1.0           # the cache reads every key back
    with pytest.raises(ValueError, match="orthogonal keys need num_pairs <= dim"):
        mqar.memory_recall(9, 8, keys="orthogonal")
    with pytest.raises(ValueError, match="memory must be 'linear' or 'softmax'"):
        mqar.memory_recall(2, 8, memory="cache")
