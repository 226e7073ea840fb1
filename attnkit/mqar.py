"""Multi-query associative recall (MQAR), the recall race of chapter 11.

The task of Zoology (Arora et al. 2023, section 3.1 and its data definition). A sequence of
length L holds K key-value pairs first, then the K keys again, each at a later position; at the
position of a repeated key the model must output the value that followed that key earlier:

    inputs:   k1 v1 k2 v2 ... kK vK | 0 0 k2 0 0 0 k1 0 ...      (0: a filler token)
    targets: -100 ...          -100 | . . v2 . . . v1 . ...      (-100 everywhere else)

* keys are drawn from the first half of the vocabulary, {1, ..., V/2 - 1} (0 is the filler),
  values from the second half, {V/2, ..., V - 1}; the K keys of a sequence are distinct, and so
  are its K values;
* the query part has (L - 2K) // 2 slots, at even offsets after the pairs; key i is queried at
  slot g_i, the slots drawn without replacement with P(g) proportional to g^(a - 1),
  g = 1, 2, ... (a = 0.01 as in Zoology: short gaps are more likely, as for repeated bigrams in
  text);
* targets are -100 (``cross_entropy``'s ``ignore_index``) except at the K query positions, so
  the loss and the accuracy count only recall.

``mqar_batch`` is a pure, seeded function of its arguments. ``train_mqar`` trains an
``attnkit.factory.TinyLM`` on fresh batches with AdamW on one thread and scores it on a held-out
batch; ``decode_state_bytes`` is what one layer must keep to predict the next token after
``seq_len`` tokens (the KV cache of softmax attention, the fixed-size state of linear attention,
chapter 09), the x axis of the recall / memory trade-off of Based (Arora et al. 2024, Figure 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnkit import validate

__all__ = ["IGNORE_INDEX", "gap_probabilities", "mqar_batch", "query_positions", "recall_accuracy",
           "chance_accuracy", "decode_state_bytes", "train_mqar"]

IGNORE_INDEX = -100


_int = validate.int_at_least  # the one size rule


def gap_probabilities(space: int, power_a: float = 0.01) -> torch.Tensor:
    """P(g) = g^(a - 1) / sum_h h^(a - 1) for the slots g = 1 .. space, as a (space,) tensor
    (slot g - 1 of the query part). ``power_a = 1`` gives the uniform distribution."""
    _int("space", space, 1)
    validate.real_number("power_a", power_a, 0.0, low_open=True)
    g = torch.arange(1, space + 1, dtype=torch.float64)
    p = g ** (power_a - 1)
    return p / p.sum()


def mqar_batch(batch: int, vocab_size: int, seq_len: int, num_pairs: int, seed: int,
               power_a: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), both LongTensor (batch, seq_len), as in the module docstring.

    Needs ``vocab_size >= 2 * num_pairs + 2`` (num_pairs distinct keys in {1, ..., V/2 - 1}) and
    ``seq_len >= 4 * num_pairs`` (2K tokens of pairs, then K query slots two tokens apart).
    """
    _int("batch", batch, 1)
    K = _int("num_pairs", num_pairs, 1)
    V = _int("vocab_size", vocab_size, 4)
    L = _int("seq_len", seq_len, 4)
    _int("seed", seed, 0)
    half = V // 2
    if half - 1 < K:
        raise ValueError(f"vocab_size = {V} has {half - 1} keys {{1, ..., {half - 1}}} for num_pairs = {K} "
                         f"distinct keys; need vocab_size >= {2 * K + 2}")
    if L < 4 * K:
        raise ValueError(f"seq_len = {L} leaves {(L - 2 * K) // 2} query slots after the {2 * K} tokens of "
                         f"num_pairs = {K} pairs; need seq_len >= 4 * num_pairs = {4 * K}")
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(batch, half - 1, generator=g).argsort(dim=1)[:, :K] + 1          # (B, K) in [1, V/2)
    values = torch.rand(batch, V - half, generator=g).argsort(dim=1)[:, :K] + half    # (B, K) in [V/2, V)
    space = (L - 2 * K) // 2
    p = gap_probabilities(space, power_a).float().expand(batch, space)
    slots = torch.multinomial(p, K, replacement=False, generator=g)                  # (B, K): slot of key i
    inputs = torch.zeros(batch, L, dtype=torch.long)
    inputs[:, 0:2 * K:2] = keys
    inputs[:, 1:2 * K:2] = values
    where = 2 * K + 2 * slots                                                         # (B, K) query positions
    inputs.scatter_(1, where, keys)
    targets = torch.full((batch, L), IGNORE_INDEX, dtype=torch.long)
    targets.scatter_(1, where, values)
    return inputs, targets


def _check_targets(targets) -> None:
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.long:
        got = f"dtype {targets.dtype}" if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise TypeError(f"targets must be a LongTensor (B, L), got {got}")


def query_positions(targets: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): True where a target is scored (not ``IGNORE_INDEX``)."""
    _check_targets(targets)
    return targets != IGNORE_INDEX


def recall_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of query positions whose argmax over the vocabulary is the target.
    logits (B, L, V), targets (B, L)."""
    validate.tensor("logits", logits)
    _check_targets(targets)
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits must be (B, L, V) for targets (B, L) = {tuple(targets.shape)}, "
                         f"got {tuple(logits.shape)}")
    q = query_positions(targets)
    if not q.any():
        raise ValueError("targets has no query position (every entry is IGNORE_INDEX)")
    return (logits.argmax(-1)[q] == targets[q]).float().mean().item()


# ---------------------------------------------------------------------------------------------
# the state a layer keeps to predict the next token
# ---------------------------------------------------------------------------------------------

_GROWING = ("full", "mha", "flash")        # K and V of every token
_WINDOWED = ("local", "sliding")           # K and V of the last window_size tokens
_LINEAR = ("linear", "cosformer")          # S (M, d_h) and z (M) per head, M = d_h (cosFormer: 2 d_h)
_FORGETTING = ("retnet", "gated_linear", "gla", "deltanet", "gated_deltanet", "retention", "decay_linear",
               "simple_gla", "gdn")        # attnkit.forgetting: S (d_h, d_h) per head, no normaliser


def decode_state_bytes(config, seq_len: int, dtype_bytes: int = 4) -> int:
    """Bytes one layer keeps, batch 1, to predict token ``seq_len + 1`` after ``seq_len`` tokens.

    * full / mha / flash: the KV cache, 2 * seq_len * d_model numbers (chapter 05);
    * gqa / mqa: 2 * seq_len * num_kv_heads * d_h;
    * local / sliding (causal window w, chapter 08): 2 * min(seq_len, w) * d_model;
    * linear (elu+1, chapter 09): per head S = sum phi(k) v^T (d_h x d_h) and z = sum phi(k)
      (d_h), so n_heads * d_h * (d_h + 1); cosFormer keeps a cos and a sin copy (2 d_h features),
      the Taylor feature map (Based) 1 + d_h + d_h^2 features, so n_heads * (1 + d_h + d_h^2) * (d_h + 1);
      Performer: nb_features * (d_h + 1) per head;
    * the recurrences that forget (retnet, gated_linear, gla, deltanet, gated_deltanet,
      ``attnkit.forgetting``): per head the state S (d_k x d_v = d_h x d_h) and no normaliser,
      so n_heads * d_h * d_h;
    * plus the short causal convolution before the mixer, when the config has one: its last
      conv_kernel - 1 inputs, (conv_kernel - 1) * d_model numbers (the same for every mixer).
    """
    _int("seq_len", seq_len, 1)
    _int("dtype_bytes", dtype_bytes, 1)
    if not all(hasattr(config, a) for a in ("attention_type", "d_model", "n_heads")):
        raise TypeError(f"config must be an AttentionConfig (attention_type, d_model, n_heads), got "
                        f"{type(config).__name__}")
    kind = getattr(config, "kind", None) or config.attention_type      # the canonical name, aliases resolved
    d, h = config.d_model, config.n_heads
    dh = d // h
    if kind in _GROWING:
        n = 2 * seq_len * d
    elif kind in ("gqa", "mqa"):
        kv = 1 if kind == "mqa" else (getattr(config, "kv_heads", None) or config.num_kv_heads)
        n = 2 * seq_len * kv * dh
    elif kind in _WINDOWED:
        n = 2 * min(seq_len, getattr(config, "window", None) or config.window_size) * d
    elif kind in _LINEAR:  # M features per head: d_h, cosFormer 2 d_h, Based's Taylor map 1 + d_h + d_h^2
        m = 2 * dh if kind == "cosformer" else (1 + dh + dh * dh if getattr(config, "feature_map", None) == "taylor"
                                                else dh)
        n = h * m * (dh + 1)
    elif kind in _FORGETTING:
        n = h * dh * dh
    elif kind == "performer":
        n = h * (getattr(config, "features", None) or config.nb_features) * (dh + 1)
    else:
        raise ValueError(f"decode_state_bytes knows full, mha, flash, gqa, mqa, local, sliding, linear, "
                         f"cosformer, performer, {', '.join(_FORGETTING)}; got attention_type {kind!r}")
    conv = getattr(config, "conv_kernel", 0) or 0
    n += max(conv - 1, 0) * d
    return n * dtype_bytes


def memory_recall(num_pairs: int, dim: int, memory: str = "linear", feature_map: str = "identity",
                  keys: str = "random", seed: int = 0, trials: int = 64) -> float:
    """How many of K stored associations a memory gives back, with no learning at all.

    K keys k_i with N(0, 1) entries in R^dim (or orthogonal ones of the same length,
    sqrt(dim), where K <= dim) and K values v_i, random unit vectors in R^dim. Read key k_i back
    from

    * ``"linear"``: the state of causal linear attention after the K pairs (chapter 09,
      eqs. 16-20), S = sum_j phi(k_j) v_j^T and z = sum_j phi(k_j) -- the same size however
      many pairs it holds -- read as r_i = S^T phi(k_i) / (z . phi(k_i)) (``feature_map``
      ``"identity"``: no normaliser, r_i = sum_j (k_j . k_i) v_j; ``"elu+1"``: positive features
      and the normaliser, as in the race);
    * ``"softmax"``: the KV cache (all K keys and values, growing with K), read as
      r_i = sum_j softmax_j(k_i . k_j / sqrt(dim)) v_j.

    The read is right when, of the K stored values, v_i has the largest dot product with r_i.
    Returns the fraction right over ``trials`` seeded draws. Orthogonal keys read back exactly
    from the identity state; random keys leave crosstalk of relative size about sqrt(K / dim),
    and positive features (every phi(k_i) . phi(k_j) > 0) much more.
    """
    K = _int("num_pairs", num_pairs, 1)
    d = _int("dim", dim, 1)
    _int("trials", trials, 1)
    if memory not in ("linear", "softmax"):
        raise ValueError(f"memory must be 'linear' or 'softmax', got {memory!r}")
    if feature_map not in ("identity", "elu+1"):
        raise ValueError(f"feature_map must be 'identity' or 'elu+1', got {feature_map!r}")
    if keys not in ("random", "orthogonal"):
        raise ValueError(f"keys must be 'random' or 'orthogonal', got {keys!r}")
    if keys == "orthogonal" and K > d:
        raise ValueError(f"orthogonal keys need num_pairs <= dim, got num_pairs = {K} > dim = {d}")
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(trials, K, d, generator=g, dtype=torch.float64)      # (T, K, d)
    if keys == "orthogonal":
        k = torch.linalg.qr(k.transpose(1, 2))[0].transpose(1, 2) * d ** 0.5  # orthogonal rows of length sqrt(d)
    v = torch.randn(trials, K, d, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True)                                  # (T, K, d)
    if memory == "linear":
        f = F.elu(k) + 1 if feature_map == "elu+1" else k                  # phi(k) (T, K, d)
        S = f.transpose(1, 2) @ v                                          # (T, d, d): sum_j phi(k_j) v_j^T
        read = f @ S                                                       # (T, K, d): row i = (S^T phi(k_i))^T
        if feature_map == "elu+1":
            read = read / (f @ f.sum(1, keepdim=True).transpose(1, 2))     # / z . phi(k_i)
    else:
        read = torch.softmax(k @ k.transpose(1, 2) / d ** 0.5, dim=-1) @ v  # (T, K, d)
    guess = (read @ v.transpose(1, 2)).argmax(-1)                          # (T, K): best-matching stored value
    return (guess == torch.arange(K)).double().mean().item()


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def _configs(configs_or_type, width: int, layers: int, **options) -> list:
    from attnkit.factory import AttentionConfig

    if isinstance(configs_or_type, str):
        return [AttentionConfig(attention_type=configs_or_type, d_model=width, **options) for _ in range(layers)]
    if isinstance(configs_or_type, (list, tuple)) and configs_or_type:
        out = []
        for c in configs_or_type:
            out.append(AttentionConfig(attention_type=c, d_model=width, **options) if isinstance(c, str) else c)
        return out
    raise TypeError(f"configs_or_type must be an attention type name, or a non-empty list of names or "
                    f"AttentionConfigs (one per layer), got {configs_or_type!r}")


def train_mqar(configs_or_type, vocab_size: int = 64, seq_len: int = 32, num_pairs: int = 4, width: int = 64,
               layers: int = 2, steps: int = 300, lr: float = 3e-3, batch: int = 64, seed: int = 0,
               n_heads: int = 1, window_size: int = 8, conv_kernel: int = 4, feature_map: str = "elu+1",
               nb_features: int = 32, weight_decay: float = 0.1, eval_batch: int = 256, **options) -> dict:
    """Train a TinyLM with one mixer per layer on MQAR; score recall on a held-out batch.

    ``configs_or_type``: a name (the same mixer in every layer) or a list with one name or
    ``AttentionConfig`` per layer (a mixed stack; ``layers`` is then its length). Names get
    ``d_model=width``, ``n_heads``, ``causal=True``, ``window_size``, ``conv_kernel`` (the short
    causal convolution before each mixer, as in Zoology), no MLP, ``feature_map``,
    ``nb_features``. Each step draws a fresh batch (``mqar_batch`` seeded with ``seed`` and the
    step); AdamW, one thread; the model is built after ``torch.manual_seed(seed)``, so a call
    repeats exactly. The held-out batch has its own seed (``10**6 + seed``).

    Returns ``{"accuracy", "losses" (one per step), "state_bytes" (all layers, at seq_len,
    float32), "params", "seconds", "settings"}``.
    """
    from attnkit.factory import TinyLM
    from attnkit.timing import one_thread, round_robin_times

    for name, value, minimum in (("steps", steps, 1), ("batch", batch, 1), ("width", width, 1),
                                 ("layers", layers, 1), ("eval_batch", eval_batch, 1)):
        _int(name, value, minimum)
    validate.real_number("lr", lr, 0.0, low_open=True)
    opts = dict(n_heads=n_heads, causal=True, window_size=window_size, conv_kernel=conv_kernel,
                mlp_ratio=0.0, feature_map=feature_map, nb_features=nb_features, seed=seed, **options)
    configs = _configs(configs_or_type, width, layers, **opts)
    mqar_batch(1, vocab_size, seq_len, num_pairs, 0)            # bad task arguments fail before training
    x_test, y_test = mqar_batch(eval_batch, vocab_size, seq_len, num_pairs, seed=10**6 + seed)
    out = {}

    def run():
        torch.manual_seed(seed)
        model = TinyLM(vocab_size, configs, max_len=seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        losses = []
        model.train()
        for step in range(steps):
            x, y = mqar_batch(batch, vocab_size, seq_len, num_pairs, seed=seed * 100_003 + step)
            loss = F.cross_entropy(model(x).reshape(-1, vocab_size), y.reshape(-1), ignore_index=IGNORE_INDEX)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            out.update(model=model, losses=losses, accuracy=recall_accuracy(model(x_test), y_test))

    with one_thread():
        seconds = round_robin_times({"train": run}, repeats=1, warmup=0)["train"][0]  # one timed run
    model, losses, accuracy = out["model"], out["losses"], out["accuracy"]
    return {"accuracy": accuracy, "losses": losses,
            "state_bytes": sum(decode_state_bytes(c, seq_len) for c in configs),
            "params": sum(p.numel() for p in model.parameters()), "seconds": seconds, "model": model,
            "settings": {"types": [c.attention_type for c in configs], "vocab_size": vocab_size,
                         "seq_len": seq_len, "num_pairs": num_pairs, "width": width, "layers": len(configs),
                         "steps": steps, "lr": lr, "batch": batch, "seed": seed, "n_heads": n_heads,
                         "window_size": window_size, "conv_kernel": conv_kernel,
                         "chance": 1.0 / (vocab_size - vocab_size // 2)}}


def chance_accuracy(vocab_size: int) -> float:
    """Guessing a value uniformly from the value half: 1 / (V - V // 2)."""
    _int("vocab_size", vocab_size, 2)
    return 1.0 / (vocab_size - vocab_size // 2)

