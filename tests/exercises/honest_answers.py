"""Honest answers to every code exercise, written here from the statements, independently of the
reference solutions (other loops, other names, other library calls), for the bypass corpus: each
must pass its checker, whatever the case seed. ch01.ex4 and ch11.ex4 train models and are left to
their chapter tests."""

import math

import torch
import torch.nn.functional as F

# ---- chapter 01


def attention(q, k, v):  # one token per column: (d, L), (d, S), (d_v, S) -> (d_v, L)
    w = (k.mT @ q) / q.size(-2) ** 0.5  # (S, L): column i holds query i's scores
    w = (w - w.max(-2, keepdim=True).values).exp()
    return v @ (w / w.sum(-2, keepdim=True))


def causal_mask(n):
    i = torch.arange(n)
    return i[None, :] <= i[:, None]


def masked_attention(q, k, v, mask):
    s = (q @ k.mT) / q.size(-1) ** 0.5
    s = torch.where(mask, s, torch.full_like(s, -math.inf))
    top = s.max(-1, keepdim=True).values
    e = torch.where(mask, (s - torch.where(torch.isinf(top), torch.zeros_like(top), top)).exp(), torch.zeros_like(s))
    total = e.sum(-1, keepdim=True)
    return (e / torch.where(total == 0, torch.ones_like(total), total)) @ v


# ---- chapter 02


def dot_variance(d_k, std):
    return float(d_k) * (std * std) ** 2


def unit_variance_scale(d_k, std):
    return (d_k ** -0.5) / (std * std)


def first_saturated_dk(threshold, seq_len):
    from attnkit import experiments as E

    for p in range(11):
        if E.saturation(2**p, seq_len, n_rows=256, scaled=False, seed=0)["max_weight"] >= threshold:
            return 2**p
    return None


def score_variance(d_k, mean_q, std_q, mean_k, std_k):
    eqq, ekk = mean_q**2 + std_q**2, mean_k**2 + std_k**2
    return d_k * (eqq * ekk - mean_q**2 * mean_k**2)


# ---- chapter 03


def stable_softmax(x):
    z = x - x.max(dim=-1, keepdim=True).values
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def masked_softmax(x, mask):
    return torch.softmax(x.masked_fill(~mask, -math.inf), dim=-1).nan_to_num(0.0)


def merge_states(m_a, l_a, m_b, l_b):
    m = torch.max(m_a, m_b)
    base = torch.where(m == -math.inf, torch.zeros_like(m), m)
    return m, l_a * (m_a - base).exp() + l_b * (m_b - base).exp()


def softmax_jacobian(p):
    eye = torch.eye(p.shape[-1], dtype=p.dtype)
    return p[..., :, None] * (eye - p[..., None, :])


def log_softmax_backward(x, grad):
    p = (x - x.logsumexp(-1, keepdim=True)).exp()
    return grad - p * grad.sum(-1, keepdim=True)


# ---- chapter 04


def split_heads(x, num_heads):
    b, n, e = x.shape
    return x.reshape(b, n, num_heads, -1).permute(0, 2, 1, 3)


def merge_heads(x):
    b, h, n, d = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, n, h * d)


def mha(x, w_q, w_k, w_v, w_o, num_heads):
    q, k, v = (split_heads(x @ w.mT, num_heads) for w in (w_q, w_k, w_v))
    out = attention(q.mT, k.mT, v.mT).mT  # chapter 01's attention takes one token per column
    return merge_heads(out) @ w_o.mT


def count_params(embed_dim, num_heads, bias=True):
    per = embed_dim * embed_dim + (embed_dim if bias else 0)
    return 4 * per


def torch_mha(x, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads, attn_mask=None,
              key_padding_mask=None):
    e = x.shape[-1]
    q, k, v = (split_heads(x @ in_proj_weight[i * e:(i + 1) * e].mT + in_proj_bias[i * e:(i + 1) * e], num_heads)
               for i in range(3))
    s = q @ k.mT / math.sqrt(e // num_heads)
    if attn_mask is not None:
        s = s.masked_fill(attn_mask, -math.inf) if attn_mask.dtype == torch.bool else s + attn_mask
    if key_padding_mask is not None:
        s = s.masked_fill(key_padding_mask[:, None, None, :], -math.inf)
    p = s.softmax(-1)
    return merge_heads(p @ v) @ out_weight.mT + out_bias, p.mean(1)


# ---- chapter 05


def repeat_kv(x, n_rep):  # (B, S, n_g, d): the heads on axis 2
    return torch.repeat_interleave(x, n_rep, dim=2)


def kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, batch_size, bytes_per_element):
    per_token = 2 * num_kv_heads * head_dim * bytes_per_element
    return per_token * num_layers * seq_len * batch_size


def decode_step(q_new, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat((k_cache, k_new), -2), torch.cat((v_cache, v_new), -2)
    past = k_cache.shape[-2]
    n, s = q_new.shape[-2], k.shape[-2]
    allowed = torch.arange(s)[None, :] - torch.arange(n)[:, None] <= past
    return masked_attention(q_new, k, v, allowed), k, v


def max_sequences(memory_bytes, num_params, bytes_per_element, num_layers, num_kv_heads, head_dim, seq_len):
    left = memory_bytes - num_params * bytes_per_element
    each = kv_cache_bytes(num_layers, num_kv_heads, head_dim, seq_len, 1, bytes_per_element)
    return max(left // each, 0)


# ---- chapter 06


def rotate_pair(x, y, angle):
    z = complex(x, y) * complex(math.cos(angle), math.sin(angle))
    return z.real, z.imag


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * torch.cat((cos, cos), -1) + rotated * torch.cat((sin, sin), -1)


def alibi_slopes(num_heads):
    p = 1
    while p * 2 <= num_heads:
        p *= 2
    first = [2 ** (-8 * (i + 1) / p) for i in range(p)]
    extra = [2 ** (-8 * (2 * i + 1) / (2 * p)) for i in range(num_heads - p)]
    return torch.tensor(first + extra)


def ntk_base(base, head_dim, scale):
    return base * math.exp(math.log(scale) * head_dim / (head_dim - 2))


def permute_for_half_split(weight, num_heads):
    d = weight.shape[0] // num_heads
    w = weight.reshape(num_heads, d // 2, 2, *weight.shape[1:])
    return w.transpose(1, 2).reshape(weight.shape)


# ---- chapter 07


def merge(m1, l1, o1, m2, l2, o2):
    m = torch.max(m1, m2)
    a, b = l1 * (m1 - m).exp(), l2 * (m2 - m).exp()
    return m, a + b, (a[:, None] * o1 + b[:, None] * o2) / (a + b)[:, None]


def tile_skipped(q_start, q_end, k_start, k_end):
    return k_start >= q_end


def io_flash(N, d, M):
    block = math.ceil(M / (4 * d))
    passes = math.ceil(N / block)
    return 2 * N * d + passes * (3 * N * d + 4 * N)


def flash_backward(q, k, v, o, lse, do, block):
    c = q.shape[-1] ** -0.5
    delta = (do * o).sum(-1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for i in range(0, q.shape[0], block):
        qi, doi = q[i:i + block], do[i:i + block]
        for j in range(0, k.shape[0], block):
            p = (qi @ k[j:j + block].mT * c - lse[i:i + block, None]).exp()
            dv[j:j + block] += p.mT @ doi
            ds = p * (doi @ v[j:j + block].mT - delta[i:i + block, None]) * c
            dq[i:i + block] += ds @ k[j:j + block]
            dk[j:j + block] += ds.mT @ qi
    return dq, dk, dv


# ---- chapter 08


def fixed_mask(n, l, c):
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(i + 1):
            out[i, j] = i // l == j // l or j % l >= l - c
    return out


def reach(mask, layers):
    seen = torch.zeros(mask.shape[0], dtype=torch.bool)
    seen[-1] = True
    for _ in range(layers):
        seen = seen | (mask.float().mT @ seen.float() > 0)
    return seen


def window_bytes(n, window, heads, dtype_bytes):
    return sum(min(i + 1, window) for i in range(n)) * heads * dtype_bytes


def window_attention(q, k, v, window):
    rows = []
    for s in range(0, q.shape[0], 64):  # 64 queries at a time, the keys they can reach
        e, a = min(s + 64, q.shape[0]), max(0, s - window + 1)
        gap = torch.arange(s, e)[:, None] - torch.arange(a, e)[None, :]
        w = (q[s:e] @ k[a:e].mT / math.sqrt(q.shape[1])).masked_fill((gap < 0) | (gap >= window), -math.inf)
        rows.append(w.softmax(-1) @ v[a:e])
    return torch.cat(rows)


# ---- chapter 09


def _phi(x):
    return torch.where(x > 0, x + 1, x.exp())


def step(s, z, q_t, k_t, v_t):
    s = s + torch.outer(_phi(k_t), v_t)
    z = z + _phi(k_t)
    return _phi(q_t) @ s / (_phi(q_t) @ z).clamp(min=1e-6), s, z


def positive_features(x, w):  # Gaussian kernel: exp(-|x|^2/2) exp(x.y) exp(-|y|^2/2), Lemma 1 on the middle
    lemma1 = (x @ w.mT - x.pow(2).sum(-1, keepdim=True) / 2).exp() / math.sqrt(w.shape[0])
    return lemma1 * torch.exp(-x.pow(2).sum(-1, keepdim=True) / 2)


def landmarks(x, m):
    size = -(-x.shape[0] // m)
    return torch.stack([part.mean(0) for part in torch.split(x, size)])


def causal_linear(q, k, v, chunk):
    s, z, out = torch.zeros(q.shape[1], v.shape[1]), torch.zeros(q.shape[1]), []
    for a in range(0, q.shape[0], chunk):
        fq, fk, vc = F.elu(q[a:a + chunk]) + 1, F.elu(k[a:a + chunk]) + 1, v[a:a + chunk]
        inner = (fq @ fk.mT).tril()
        out.append((inner @ vc + fq @ s) / (inner.sum(1) + fq @ z).clamp_min(1e-6)[:, None])
        s = s + fk.mT @ vc
        z = z + fk.sum(0)
    return torch.cat(out)


def gated_delta_step(S, k_t, v_t, beta_t, alpha_t):  # alpha (I - beta k^T k) S + beta k^T v, as a matrix
    erase = torch.eye(k_t.shape[0], dtype=S.dtype) - beta_t * k_t[:, None] * k_t[None, :]
    return alpha_t * erase @ S + beta_t * k_t[:, None] * v_t[None, :]


# ---- chapter 10


def lora_switch(W_merged, old, new):
    out = W_merged.clone()
    for (A, B, alpha, r), sign in ((old, -1.0), (new, 1.0)):
        out += sign * (alpha / r) * torch.einsum("ok,ki->oi", B, A)
    return out


def lora_rescale(B, alpha, r, new_alpha, use_rslora):
    served = new_alpha / r ** 0.5 if use_rslora else new_alpha / r
    return B * (alpha / r / served)


def lora_count(dim, heads, dim_head, r, enable_lora, bias):
    inner = heads * dim_head
    n = sum(r * (dim + inner) for _ in set(enable_lora))
    if bias == "all" or (bias == "lora_only" and "o" in set(enable_lora)):
        n += dim
    return n


def compress(A, B, k):
    u, s, vh = torch.linalg.svd(B @ A)
    return vh[:k], u[:, :k] @ torch.diag(s[:k])


# ---- chapter 11


def mqar_layout(keys, values, slots, seq_len):
    b, n = keys.shape
    inputs = torch.zeros(b, seq_len, dtype=torch.long)
    targets = torch.full((b, seq_len), -100, dtype=torch.long)
    inputs[:, 0:2 * n:2], inputs[:, 1:2 * n:2] = keys, values
    where = 2 * n + 2 * slots
    inputs.scatter_(1, where, keys)
    targets.scatter_(1, where, values)
    return inputs, targets


def max_len(budget_mb, d_model, n_heads):
    free = budget_mb * 2**20 // 4 - 4 * d_model * (d_model + 1)
    n = 0
    while 3 * n_heads * (n + 1) ** 2 + 5 * d_model * (n + 1) <= free:
        n += 1
    return n


def pick(profiles, budget_mb):
    ok = [(p["batch_size"] * p["seq_len"] * 1e3 / p["avg_latency_ms"], name) for name, p in profiles.items()
          if p["memory_mb"] <= budget_mb]
    return max(ok)[1] if ok else None


HONEST = {
    "ch01.ex1": attention, "ch01.ex2": causal_mask, "ch01.ex3": masked_attention,
    "ch02.ex1": dot_variance, "ch02.ex2": unit_variance_scale, "ch02.ex3": first_saturated_dk,
    "ch02.ex4": score_variance,
    "ch03.ex1": stable_softmax, "ch03.ex2": masked_softmax, "ch03.ex3": merge_states, "ch03.ex4": softmax_jacobian,
    "ch03.ex5": log_softmax_backward,
    "ch04.ex1": split_heads, "ch04.ex2": merge_heads, "ch04.ex3": mha, "ch04.ex4": count_params, "ch04.ex5": torch_mha,
    "ch05.ex1": repeat_kv, "ch05.ex2": kv_cache_bytes, "ch05.ex3": decode_step, "ch05.ex4": max_sequences,
    "ch06.ex1": rotate_pair, "ch06.ex2": apply_rope, "ch06.ex3": alibi_slopes, "ch06.ex4": ntk_base,
    "ch06.ex5": permute_for_half_split,
    "ch07.ex1": merge, "ch07.ex2": tile_skipped, "ch07.ex3": io_flash, "ch07.ex4": flash_backward,
    "ch08.ex1": fixed_mask, "ch08.ex2": reach, "ch08.ex3": window_bytes, "ch08.ex4": window_attention,
    "ch09.ex1": step, "ch09.ex2": positive_features, "ch09.ex3": landmarks, "ch09.ex4": causal_linear,
    "ch09.ex5": gated_delta_step,
    "ch10.ex1": lora_switch, "ch10.ex2": lora_rescale, "ch10.ex3": lora_count, "ch10.ex4": compress,
    "ch11.ex1": mqar_layout, "ch11.ex2": max_len, "ch11.ex3": pick,
}
