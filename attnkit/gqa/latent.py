"""Multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section 2.1): a cached latent and one rotary key."""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit import validate
from attnkit.gqa._checks import _check_input, _check_positive_int
from attnkit.gqa.cache import KVCache
from attnkit.gqa.grouped import _decode_mask, grouped_query_attention


class MultiHeadLatentAttention(nn.Module):
    """DeepSeek-V2's multi-head latent attention, with a naive and a weight-absorbed path.

    Per token t with hidden state h_t (DeepSeek-V2 section 2.1, eqs 9-19):

        c_t^KV = W^DKV h_t                           (9)   latent, d_c = kv_lora_rank   [cached]
        k_t^C  = W^UK c_t^KV                         (10)  per-head keys,  n_h x d_h (qk_nope_head_dim)
        v_t^C  = W^UV c_t^KV                         (11)  per-head values, n_h x v_head_dim
        c_t^Q  = W^DQ h_t                            (12)  optional query latent, d_c' = q_lora_rank
        q_t^C  = W^UQ c_t^Q                          (13)
        q_t^R  = RoPE(W^QR c_t^Q)                    (14)  per-head rotary query, n_h x d_h^R
        k_t^R  = RoPE(W^KR h_t)                      (15)  ONE rotary key shared by all heads  [cached]
        q_t,i  = [q_t,i^C ; q_t,i^R]                 (16)
        k_t,i  = [k_t,i^C ; k_t^R]                   (17)
        o_t,i  = sum_j softmax_j(q_t,i . k_j,i / sqrt(d_h + d_h^R)) v_j,i^C     (18)
        u_t    = W^O [o_t,1 ; ... ; o_t,n_h]         (19)

    As in DeepSeek's released models, the latents c^KV and c^Q pass through an RMSNorm before being
    up-projected, and RoPE uses the interleaved (RoFormer) pairing. Only the normalised c^KV and
    k^R are cached, side by side in one ``(B, S, kv_lora_rank + qk_rope_head_dim)`` tensor (the
    layout of DeepSeek's FlashMLA kernel): ``kv_lora_rank + qk_rope_head_dim`` elements per token
    per layer. The first ``kv_lora_rank`` columns double as the absorbed path's values.

    ``forward(x, attn_mask=None, is_causal=False, kv_cache=None, absorb=False)`` returns ``out``
    (B, L, E). ``absorb=False`` expands keys and values from the cached latent (eqs 10-11);
    ``absorb=True`` folds W^UK into the query and W^UV after the attention, so the heads attend
    directly over the cached latent (an MQA with head dim d_c + d_h^R). The two agree.
    """

    def __init__(self, embed_dim: int, num_heads: int, kv_lora_rank: int, qk_nope_head_dim: int,
                 qk_rope_head_dim: int, v_head_dim: int, q_lora_rank: int | None = None,
                 rope_base: float = 10000.0, norm_eps: float = 1e-6, bias: bool = False,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads),
                            ("kv_lora_rank", kv_lora_rank), ("qk_nope_head_dim", qk_nope_head_dim),
                            ("qk_rope_head_dim", qk_rope_head_dim), ("v_head_dim", v_head_dim)):
            _check_positive_int(name, value)
        if q_lora_rank is not None:
            _check_positive_int("q_lora_rank", q_lora_rank)
        if qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even for RoPE, got {qk_rope_head_dim}")
        validate.real_number("rope_base", rope_base, 1.0, low_open=True)
        validate.real_number("norm_eps", norm_eps, 0.0, low_open=True)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kv_lora_rank, self.q_lora_rank = kv_lora_rank, q_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim = qk_nope_head_dim, qk_rope_head_dim
        self.v_head_dim, self.rope_base = v_head_dim, rope_base
        self.scale = 1.0 / math.sqrt(qk_nope_head_dim + qk_rope_head_dim)  # eq (18)
        H = num_heads
        kw = dict(bias=bias, device=device, dtype=dtype)
        nkw = dict(eps=norm_eps, device=device, dtype=dtype)
        q_in = embed_dim
        if q_lora_rank is not None:
            self.w_dq = nn.Linear(embed_dim, q_lora_rank, **kw)  # W^DQ, eq (12)
            self.q_norm = nn.RMSNorm(q_lora_rank, **nkw)
            q_in = q_lora_rank
        self.w_uq = nn.Linear(q_in, H * qk_nope_head_dim, **kw)  # W^UQ, eq (13)
        self.w_qr = nn.Linear(q_in, H * qk_rope_head_dim, **kw)  # W^QR, eq (14)
        self.w_dkv = nn.Linear(embed_dim, kv_lora_rank, **kw)  # W^DKV, eq (9)
        self.kv_norm = nn.RMSNorm(kv_lora_rank, **nkw)
        self.w_kr = nn.Linear(embed_dim, qk_rope_head_dim, **kw)  # W^KR, eq (15)
        # Up-projections have no bias, so they can be absorbed into the query / output.
        self.w_uk = nn.Linear(kv_lora_rank, H * qk_nope_head_dim, bias=False, device=device, dtype=dtype)  # (10)
        self.w_uv = nn.Linear(kv_lora_rank, H * v_head_dim, bias=False, device=device, dtype=dtype)  # (11)
        self.w_o = nn.Linear(H * v_head_dim, embed_dim, **kw)  # W^O, eq (19)
        self._rope_tables = None  # (cos, sin), built on first use

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"kv_lora_rank={self.kv_lora_rank}, q_lora_rank={self.q_lora_rank}, "
                f"qk_nope_head_dim={self.qk_nope_head_dim}, qk_rope_head_dim={self.qk_rope_head_dim}, "
                f"v_head_dim={self.v_head_dim}")

    def _rope(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """Rotate x (..., L, d_h^R) as positions offset .. offset + L - 1 (interleaved pairs)."""
        from attnkit.rope import apply_rope, generate_rope_embeddings

        need = offset + x.shape[-2]
        tables = self._rope_tables
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if (tables is None or tables[0].shape[0] < need or tables[0].device != x.device
                or tables[0].dtype != dtype):
            # grow the (positions, d_h^R / 2) tables by doubling, so decoding does not rebuild them
            n = max(need, 2 * (0 if tables is None else tables[0].shape[0]), 64)
            tables = generate_rope_embeddings(n, self.qk_rope_head_dim, base=self.rope_base,
                                              device=x.device, dtype=dtype)
            self._rope_tables = tables
        cos, sin = tables
        return apply_rope(x, cos, sin, interleaved=True, offset=offset)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                kv_cache: KVCache | None = None, absorb: bool = False) -> torch.Tensor:
        _check_input(x, self.embed_dim, self.w_o.weight)
        B, L, _ = x.shape
        H, dn, dr, dv, dc = (self.num_heads, self.qk_nope_head_dim, self.qk_rope_head_dim,
                             self.v_head_dim, self.kv_lora_rank)
        past = 0 if kv_cache is None else kv_cache.seq_len

        # Queries, eqs (12)-(14), (16)
        cq = self.q_norm(self.w_dq(x)) if self.q_lora_rank is not None else x  # (B, L, d_c')
        q_c = self.w_uq(cq).view(B, L, H, dn).transpose(1, 2)  # (B, H, L, dn)
        q_r = self._rope(self.w_qr(cq).view(B, L, H, dr).transpose(1, 2), past)  # (B, H, L, dr)

        # What is cached: the normalised latent, eq (9), and the shared rotary key, eq (15)
        c_kv = self.kv_norm(self.w_dkv(x))  # (B, L, dc)
        k_r = self._rope(self.w_kr(x), past)  # (B, L, dr)
        kv = torch.cat([c_kv, k_r], dim=-1)  # (B, L, dc + dr): one row per token, as FlashMLA stores it
        if kv_cache is not None:
            (kv,) = kv_cache.update(kv)  # (B, S, dc + dr)
        c_kv, k_r = kv[..., :dc], kv[..., dc:]  # views: (B, S, dc), (B, S, dr)
        S = kv.shape[1]
        mask, causal = _decode_mask(attn_mask, is_causal, L, S, x.device)

        if not absorb:
            # Naive: expand per-head keys and values from the latent, eqs (10), (11), (17)
            k_c = self.w_uk(c_kv).view(B, S, H, dn).transpose(1, 2)  # (B, H, S, dn)
            v = self.w_uv(c_kv).view(B, S, H, dv).transpose(1, 2)  # (B, H, S, dv)
            q = torch.cat([q_c, q_r], dim=-1)  # (B, H, L, dn + dr)
            k = torch.cat([k_c, k_r[:, None].expand(B, H, S, dr)], dim=-1)  # (B, H, S, dn + dr)
            o = grouped_query_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                        scale=self.scale)  # (B, H, L, dv), eq (18)
        else:
            # Absorbed: q_c . (W^UK_i c) = (W^UK_i^T q_c) . c, so score over the latent itself.
            w_uk = self.w_uk.weight.view(H, dn, dc)  # (H, dn, dc)
            w_uv = self.w_uv.weight.view(H, dv, dc)  # (H, dv, dc)
            q_lat = torch.einsum("bhld,hdc->bhlc", q_c, w_uk)  # (B, H, L, dc)
            q = torch.cat([q_lat, q_r], dim=-1)  # (B, H, L, dc + dr)
            # One kv head shared by all query heads (an MQA): keys [c; k^R], values c. Passing the
            # whole row [c; k^R] as the value and dropping the last dr output columns is exact, and
            # lets q, k and v share one head size (torch's fused CPU kernel needs that).
            o_lat = grouped_query_attention(q, kv[:, None], kv[:, None], attn_mask=mask,
                                            is_causal=causal, scale=self.scale)[..., :dc]  # (B, H, L, dc)
            o = torch.einsum("bhlc,hvc->bhlv", o_lat, w_uv)  # (B, H, L, dv): W^UV after attention
        o = o.transpose(1, 2).reshape(B, L, H * dv)  # (B, L, H*dv)
        return self.w_o(o)  # eq (19)
