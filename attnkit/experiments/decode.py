"""Chapter 05's experiments: a tiny decoder and greedy generation with and without the cache, and decode-step timing."""

from __future__ import annotations

import torch
from torch import nn

from attnkit.gqa import KINDS, GroupedQueryAttention, KVCache, MultiHeadLatentAttention
from attnkit.gqa._checks import _check_positive_int, _check_tensor, _shape


def make_decode_model(kind: str, embed_dim: int = 512, num_heads: int = 8, num_kv_heads: int = 2,
                      kv_lora_rank: int | None = None, qk_rope_head_dim: int | None = None,
                      seed: int = 0, dtype=None) -> nn.Module:
    """One attention layer of the given kind, all with ``num_heads`` heads of ``embed_dim/num_heads``.

    MLA uses qk_nope_head_dim = v_head_dim = d_h, d_c = 4 d_h and d_h^R = d_h / 2 by default.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    torch.manual_seed(seed)
    d_h = embed_dim // num_heads
    if kind == "mla":
        return MultiHeadLatentAttention(
            embed_dim, num_heads, kv_lora_rank=4 * d_h if kv_lora_rank is None else kv_lora_rank,
            qk_nope_head_dim=d_h, qk_rope_head_dim=d_h // 2 if qk_rope_head_dim is None else qk_rope_head_dim,
            v_head_dim=d_h, dtype=dtype).eval()
    kv = {"mha": num_heads, "gqa": num_kv_heads, "mqa": 1}[kind]
    return GroupedQueryAttention(embed_dim, num_heads, kv, dtype=dtype).eval()


def _prefilled_cache(model: nn.Module, batch_size: int, context_len: int, generator) -> tuple:
    """Random cached tensors of the shapes ``model`` caches for ``context_len`` past tokens."""
    p = next(model.parameters())
    kw = dict(generator=generator, dtype=p.dtype, device=p.device)
    if isinstance(model, MultiHeadLatentAttention):
        width = model.kv_lora_rank + model.qk_rope_head_dim
        return (torch.randn(batch_size, context_len, width, **kw),)  # (B, S, d_c + d_h^R)
    shape = (batch_size, model.num_kv_heads, context_len, model.head_dim)  # (B, Hkv, S, D)
    return torch.randn(*shape, **kw), torch.randn(*shape, **kw)


def decode_step(model: nn.Module, context_len: int, batch_size: int = 1, absorb: bool = True,
                seed: int = 0):
    """A zero-argument callable that runs one decode step (one new token attending over
    ``context_len`` cached ones) and returns the cache it filled.

    The cache is pre-filled with random tensors of the right shapes (the values do not change the
    cost); every call starts again from the same ``context_len`` tokens."""
    _check_positive_int("context_len", context_len)
    g = torch.Generator().manual_seed(seed)
    past = _prefilled_cache(model, batch_size, context_len, g)
    p = next(model.parameters())
    x = torch.randn(batch_size, 1, model.embed_dim, generator=g, dtype=p.dtype)  # (B, 1, E)
    kw = {"absorb": absorb} if isinstance(model, MultiHeadLatentAttention) else {}

    @torch.no_grad()
    def step() -> KVCache:
        cache = KVCache()
        cache.tensors = past
        model(x, is_causal=True, kv_cache=cache, **kw)
        return cache

    return step


def measure_decode_steps(variants: dict, contexts, batch_size: int = 1, repeats: int = 5,
                         seed: int = 0) -> dict:
    """Time one decode step of every variant at every context length, round-robin on one thread.

    ``variants`` maps a name to ``(model, absorb)``. All (variant, S) steps are timed in turn
    (``attnkit.timing.round_robin_medians``), so a burst of load hits them alike. Returns
    ``{name: [{"ms": median milliseconds, "cache_bytes": bytes the cache holds after the step
    (measured), "tokens": S + 1} for S in contexts]}``."""
    from attnkit.timing import one_thread, round_robin_medians

    _check_positive_int("repeats", repeats)
    contexts = list(contexts)
    steps = {(name, S): decode_step(model, S, batch_size, absorb, seed)
             for name, (model, absorb) in variants.items() for S in contexts}
    with one_thread():
        medians = round_robin_medians(steps, repeats=repeats)
    out = {}
    for (name, S), step in steps.items():
        cache = step()
        out.setdefault(name, []).append({"ms": 1e3 * medians[(name, S)], "cache_bytes": cache.nbytes,
                                         "tokens": cache.seq_len})
    return out


def measure_decode_step(model: nn.Module, context_len: int, batch_size: int = 1, repeats: int = 5,
                        absorb: bool = True, seed: int = 0) -> dict:
    """``measure_decode_steps`` for one model and one context length: ``{"ms", "cache_bytes",
    "tokens"}`` (median of ``repeats`` steps after a warm-up, on one thread)."""
    return measure_decode_steps({"step": (model, absorb)}, [context_len], batch_size, repeats, seed)["step"][0]




class TinyDecoder(nn.Module):
    """A small decoder-only language model built from ``GroupedQueryAttention`` layers.

    Token embedding + learned absolute position embedding, ``num_layers`` pre-norm blocks
    (causal GQA self-attention, then a 4x GELU MLP, each with a residual), a final LayerNorm and
    an output head over the vocabulary. Untrained unless you train it: it exists to show that
    cached decoding gives the same tokens as recomputing everything.

    ``forward(tokens, caches=None, positions=None)``: ``tokens`` (B, L) int64 -> logits
    (B, L, vocab). With ``caches`` (one ``KVCache`` per layer, from ``new_cache()``) the new
    tokens continue the cached ones, so their positions start at the cache's length:
    ``positions`` defaults to ``past, ..., past + L - 1`` (``position_ids``).
    """

    def __init__(self, vocab_size: int = 64, embed_dim: int = 64, num_heads: int = 4,
                 num_kv_heads: int = 2, num_layers: int = 2, max_len: int = 256):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("num_layers", num_layers), ("max_len", max_len)):
            _check_positive_int(name, value)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok_emb = nn.Embedding(vocab_size, embed_dim)
        self.pos_emb = nn.Embedding(max_len, embed_dim)
        self.blocks = nn.ModuleList()
        for _ in range(num_layers):
            block = nn.Module()
            block.norm1 = nn.LayerNorm(embed_dim)
            block.attn = GroupedQueryAttention(embed_dim, num_heads, num_kv_heads)
            block.norm2 = nn.LayerNorm(embed_dim)
            block.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(),
                                      nn.Linear(4 * embed_dim, embed_dim))
            self.blocks.append(block)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size, bias=False)

    def new_cache(self, max_len: int | None = None) -> list[KVCache]:
        """One empty ``KVCache`` per layer."""
        return [KVCache(max_len) for _ in self.blocks]

    def positions(self, length: int, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Positions of ``length`` new tokens after what ``caches`` hold: past .. past + length - 1."""
        past = caches[0].seq_len if caches else 0
        return torch.arange(past, past + length, device=self.pos_emb.weight.device)  # (L,)

    def forward(self, tokens: torch.Tensor, caches: list[KVCache] | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        _check_tensor("tokens", tokens, 2, "(B, L)")
        if tokens.dtype != torch.long:
            raise TypeError(f"tokens must be int64 token ids, got dtype {tokens.dtype}")
        if caches is not None and (not isinstance(caches, (list, tuple)) or len(caches) != len(self.blocks)
                                   or not all(isinstance(c, KVCache) for c in caches)):
            raise ValueError(f"caches must be a list of {len(self.blocks)} KVCache (one per layer, "
                             f"from new_cache()), got {caches!r}")
        B, L = tokens.shape
        pos = self.positions(L, caches) if positions is None else positions  # (L,)
        if pos.shape != (L,):
            raise ValueError(f"positions must have shape ({L},), got {_shape(pos)}")
        if L and int(pos.max()) >= self.max_len:
            raise ValueError(f"positions up to {int(pos.max())} exceed max_len={self.max_len} - 1")
        h = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L, E)
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else caches[i]
            h = h + block.attn(block.norm1(h), is_causal=True, kv_cache=cache)[0]
            h = h + block.mlp(block.norm2(h))
        return self.head(self.norm(h))  # (B, L, vocab)


@torch.no_grad()
def greedy_generate(model: TinyDecoder, prompt: torch.Tensor, max_new_tokens: int,
                    use_cache: bool = True, caches: list[KVCache] | None = None) -> torch.Tensor:
    """Append ``max_new_tokens`` argmax tokens to ``prompt`` (B, P); returns (B, P + max_new_tokens).

    ``use_cache=False`` runs the whole sequence through the model at every step. ``use_cache=True``
    runs the prompt once (prefill), then one token per step over the cache (``caches``, or fresh
    ones). Tokens already in ``caches`` count as context before the prompt: reset them
    (``crop(0)``) or pass new ones to start a new sequence.
    """
    _check_tensor("prompt", prompt, 2, "(B, P)")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if prompt.shape[1] == 0:
        raise ValueError(f"prompt needs at least one token, got shape {_shape(prompt)}")
    if caches is not None and not use_cache:
        raise ValueError("caches were given with use_cache=False: pass use_cache=True or no caches")
    out = prompt
    if not use_cache:
        for _ in range(max_new_tokens):
            nxt = model(out)[:, -1].argmax(-1, keepdim=True)  # (B, 1): recompute every position
            out = torch.cat([out, nxt], dim=1)
        return out
    caches = model.new_cache() if caches is None else caches
    logits = model(prompt, caches)  # prefill: (B, P, vocab)
    for i in range(max_new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        out = torch.cat([out, nxt], dim=1)
        if i + 1 < max_new_tokens:
            logits = model(nxt, caches)  # one new token over the cache: (B, 1, vocab)
    return out
