"""Chapter 10's small pretrained model: a character-level language model, and LoRA fine-tuning of it.

``CharLM`` is a two-layer causal transformer over 96 characters (newline and printable ASCII)
whose attention is ``attnkit.lora.LoRASelfAttention`` (two local softmax heads, two global
linear heads, causal). ``tools/pretrain_charlm.py`` trains it on the course's own English prose
(``attnkit/data/charlm/english.txt``) and stores the weights in ``attnkit/data/charlm/charlm.pt``;
chapter 10 loads them (``load_pretrained``) and fine-tunes them with LoRA on Python source code
(``attnkit/data/charlm/python.txt``), a different style written in the same characters.

Everything is seeded and runs on one thread in seconds: ``finetune`` draws its windows from a
``torch.Generator`` of its own, so a run depends only on its arguments.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.lora import LoRALinear, LoRASelfAttention

DATA = Path(__file__).resolve().parent.parent / "data" / "charlm"
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))  # 96 symbols; any other character reads as "?"
CONFIG = dict(dim=64, layers=2, heads=4, local_heads=2, window=32, context=64)
HELD_OUT = 8192  # the last 8,192 characters of each text are held out (never trained on)
_INDEX = {c: i for i, c in enumerate(VOCAB)}


def encode(text: str) -> torch.Tensor:
    """Characters -> ids (N,), int64; characters outside VOCAB become '?'."""
    unknown = _INDEX["?"]
    return torch.tensor([_INDEX.get(c, unknown) for c in text], dtype=torch.long)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def read_text(name: str) -> str:
    """One of the committed texts: ``"english"`` (the course's prose) or ``"python"`` (code)."""
    if name not in ("english", "python"):
        raise ValueError(f"name must be 'english' or 'python', got {name!r}")
    return (DATA / f"{name}.txt").read_text(encoding="utf-8")


def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train ids, held-out ids) of a committed text: the held-out part is its last HELD_OUT characters."""
    ids = encode(read_text(name))
    return ids[:-HELD_OUT], ids[-HELD_OUT:]


class Block(nn.Module):
    """Pre-norm block: x + attention(LN x), then x + MLP(LN x). (B, N, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, heads: int, local_heads: int, window: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = LoRASelfAttention(dim, heads, enable_lora=(), causal=True, dim_head=dim // heads,
                                      n_local_attn_heads=local_heads, local_attn_window_size=window,
                                      attn_dropout=0.0, dropout=0.0)
        self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class CharLM(nn.Module):
    """Token and position embeddings, ``layers`` blocks, a final LayerNorm, a tied read-out layer.
    ids (B, N) with N <= context -> logits (B, N, len(VOCAB))."""

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4, local_heads: int = 2, window: int = 32,
                 context: int = 64):
        super().__init__()
        self.context = context
        self.tok = nn.Embedding(len(VOCAB), dim)
        nn.init.normal_(self.tok.weight, std=0.02)  # small: the read-out is tied to it
        self.pos = nn.Parameter(torch.randn(context, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, local_heads, window) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or not 1 <= ids.shape[1] <= self.context:
            raise ValueError(f"ids must be (B, N) with 1 <= N <= {self.context}, got {tuple(ids.shape)}")
        x = self.tok(ids) + self.pos[: ids.shape[1]]  # (B, N, dim)
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.tok.weight.T  # (B, N, vocab): read-out tied to the embedding


def load_pretrained() -> CharLM:
    """The committed pretrained weights (tools/pretrain_charlm.py), in eval mode."""
    model = CharLM(**CONFIG)
    model.load_state_dict(torch.load(DATA / "charlm.pt", map_location="cpu", weights_only=True))
    return model.eval()


LINEAR_NAMES = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out", "fc1": "fc1", "fc2": "fc2"}


def add_lora(model: CharLM, where=("q", "v"), r: int = 8, lora_alpha: float = 16) -> CharLM:
    """Wrap the named linear layers of every block (q, k, v, o of the attention; fc1, fc2 of the
    MLP) in ``LoRALinear.from_linear`` (B = 0: the model is unchanged), and freeze everything else."""
    unknown = [w for w in where if w not in LINEAR_NAMES]
    if unknown:
        raise ValueError(f"where must name layers among {list(LINEAR_NAMES)}, got {unknown}")
    model.requires_grad_(False)
    for block in model.blocks:
        for w in where:
            owner = block.attn if w in "qkvo" else block
            name = LINEAR_NAMES[w]
            setattr(owner, name, LoRALinear.from_linear(getattr(owner, name), r=r, lora_alpha=lora_alpha))
    return model


def lora_layers(model: CharLM) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def windows(ids: torch.Tensor, context: int, batch: int, generator: torch.Generator):
    """A batch of random windows: inputs (batch, context) and the next characters (batch, context)."""
    start = torch.randint(0, len(ids) - context - 1, (batch,), generator=generator)
    idx = start[:, None] + torch.arange(context + 1)  # (batch, context + 1)
    chunk = ids[idx]
    return chunk[:, :-1], chunk[:, 1:]


@torch.no_grad()
def evaluate(model: CharLM, ids: torch.Tensor) -> float:
    """Mean cross-entropy (nats per character) over consecutive windows of ``context`` characters
    (the first character of the text is never predicted)."""
    c = model.context
    n = (len(ids) - 1) // c
    x = ids[: n * c].reshape(n, c)
    y = ids[1: n * c + 1].reshape(n, c)
    return F.cross_entropy(model(x).reshape(-1, len(VOCAB)), y.reshape(-1)).item()


def train(model: nn.Module, ids: torch.Tensor, steps: int, lr: float, batch: int = 16, seed: int = 0,
          warmup: int = 0) -> list[float]:
    """Adam on the parameters that require grad, cosine decay (after a linear warm-up); returns
    the training loss of every step. The windows come from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        x, y = windows(ids, model.context, batch, g)
        loss = F.cross_entropy(model(x).reshape(-1, len(VOCAB)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def sample(model: CharLM, prompt: str, n: int, seed: int = 0) -> str:
    """Greedy continuation of ``prompt`` by ``n`` characters (the last ``context`` characters as input)."""
    ids = encode(prompt)
    for _ in range(n):
        logits = model(ids[-model.context:][None])[0, -1]
        ids = torch.cat([ids, logits.argmax()[None]])
    return decode(ids[len(encode(prompt)):])
