"""Chapter 04's explorer: what each head of a tiny trained model looks at.

The toy task ("recall"): a sentence of random words; at every position the model must name
three words at once, the **previous** word, the word **two back** and the **first** word of the
sentence. One softmax row is one weighted average, so a single head cannot put all its weight on
three places at once; with several heads, each can take one job. We train a two-layer,
attention-only transformer built from ``attnkit.mha.MultiHeadAttention`` (seeded, a few seconds
on 2 CPU cores) and look at its per-head attention weights.

Pure, tested functions: ``recall_batch`` (the data), ``TinyAttentionModel`` (the model),
``train_recall_model`` (seeded training), ``head_weights`` (per-layer, per-head weights for a
sentence), ``head_roles`` (how much weight each head puts on the previous / two-back / first
position). ``heads_explorer`` draws them with a layer and head selector.
"""

from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import nn

from attnkit.i18n import register, t
from attnkit.mha import MultiHeadAttention
from attnkit.viz import PALETTE, attention_heatmap
from attnkit.widgets import Explorer

__all__ = [
    "ROLES",
    "recall_batch",
    "TinyAttentionModel",
    "train_recall_model",
    "head_weights",
    "head_roles",
    "vocabulary",
    "example_sentences",
    "heads_explorer",
    "plot_split_heads",
]

register({
    "heads.vocab": {
        "en": "the a cat dog bird fish sat ran saw ate on under big small red blue",
        "zh": "这 那 猫 狗 鸟 鱼 坐 跑 看 吃 在 下 大 小 红 蓝",
    },
    "heads.layer": {"en": "layer", "zh": "层"},
    "heads.head": {"en": "head", "zh": "头"},
    "heads.sentence": {"en": "sentence", "zh": "句子"},
    "heads.all_heads": {"en": "all heads", "zh": "所有头"},
    "heads.layer_n": {"en": "layer {n}", "zh": "第 {n} 层"},
    "heads.head_n": {"en": "head {h}", "zh": "第 {h} 个头"},
    "heads.grid_title": {"en": "layer {n}: attention weights of every head",
                         "zh": "第 {n} 层：每个头的注意力权重"},
    "heads.one_title": {"en": "layer {n}, head {h} ({role})", "zh": "第 {n} 层，第 {h} 个头（{role}）"},
    "heads.role.prev": {"en": "previous word", "zh": "前一个词"},
    "heads.role.prev2": {"en": "two back", "zh": "往前第二个词"},
    "heads.role.first": {"en": "first word", "zh": "第一个词"},
    "heads.role.self": {"en": "itself", "zh": "自身"},
    "heads.role.mixed": {"en": "mixed", "zh": "混合"},
    "heads.split.title": {"en": "splitting heads is a reshape", "zh": "拆分头只是一次变形"},
    "heads.split.x": {"en": "x: (L, E)", "zh": "x：(L, E)"},
    "heads.split.heads": {"en": "split: (H, L, Dh)", "zh": "拆分后：(H, L, Dh)"},
    "heads.split.merge": {"en": "merge: (L, H·Dh)", "zh": "合并后：(L, H·Dh)"},
    "heads.split.features": {"en": "features (E)", "zh": "特征（E）"},
    "heads.split.positions": {"en": "positions (L)", "zh": "位置（L）"},
})

# What a head can attend to, as an offset from the query position (None: the first position).
ROLES = {"prev": 1, "prev2": 2, "first": None, "self": 0}
SEQ_LEN = 10


def vocabulary() -> list[str]:
    """The toy vocabulary in the current language (the token ids are the same in both)."""
    return t("heads.vocab").split()


def recall_batch(g: torch.Generator, batch: int, seq_len: int = SEQ_LEN, vocab: int = 16):
    """tokens (batch, L) uniform over the vocabulary; targets (3, batch, L): the previous,
    two-back and first token of each position (-100 = no answer, ignored by cross_entropy)."""
    tokens = torch.randint(0, vocab, (batch, seq_len), generator=g)  # (B, L)
    ignore = torch.full((batch, 1), -100)
    prev = torch.cat([ignore, tokens[:, :-1]], dim=1)  # (B, L)
    prev2 = torch.cat([ignore, ignore, tokens[:, :-2]], dim=1)  # (B, L)
    first = tokens[:, :1].expand(batch, seq_len)  # (B, L)
    return tokens, torch.stack([prev, prev2, first])  # (B, L), (3, B, L)


class TinyAttentionModel(nn.Module):
    """Token + position embeddings, ``n_layers`` causal pre-LN attention layers (no MLP),
    three linear read-outs (previous, two back, first)."""

    def __init__(self, vocab: int = 16, seq_len: int = SEQ_LEN, d: int = 32, n_heads: int = 4,
                 n_layers: int = 2):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(n_layers))
        self.attn = nn.ModuleList(MultiHeadAttention(d, n_heads) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(d)
        self.readout = nn.Linear(d, 3 * vocab)
        self.vocab = vocab

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        """tokens (B, L) -> logits (3, B, L, vocab) and, if asked, weights (layers, B, H, L, L)."""
        B, L = tokens.shape
        x = self.tok(tokens) + self.pos(torch.arange(L, device=tokens.device))  # (B, L, d)
        weights = []
        for norm, attn in zip(self.norms, self.attn, strict=True):
            out, w = attn(norm(x), is_causal=True, need_weights=need_weights)
            x = x + out  # residual
            weights.append(w)
        logits = self.readout(self.out_norm(x)).view(B, L, 3, self.vocab).permute(2, 0, 1, 3)
        return logits, (torch.stack(weights) if need_weights else None)


def _adam(params, lr: float, betas=(0.9, 0.98), eps: float = 1e-8):
    """Adam (Kingma & Ba 2015, Algorithm 1) in a few lines; ``step()`` after ``backward()``.

    Written out because ``torch.optim`` imports TorchDynamo on first use, seconds of start-up
    that a 30-second notebook cannot spare."""
    params = list(params)
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    state = {"t": 0}

    @torch.no_grad()
    def step():
        state["t"] += 1
        b1, b2 = betas
        c1, c2 = 1 - b1 ** state["t"], 1 - b2 ** state["t"]
        for p, mi, vi in zip(params, m, v, strict=True):
            mi.mul_(b1).add_(p.grad, alpha=1 - b1)  # first moment
            vi.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)  # second moment
            p.addcdiv_(mi, (vi / c2).sqrt_().add_(eps), value=-lr / c1)  # bias-corrected update
            p.grad = None

    return step


def train_recall_model(steps: int = 100, seed: int = 0, batch: int = 64, lr: float = 1e-2,
                       **model_kw) -> tuple[TinyAttentionModel, dict]:
    """Seeded Adam training; returns the model (eval mode) and {"loss": [...], "accuracy": {role: acc}}
    with the accuracy of each read-out on 512 fresh sentences. Runs on one thread: a model this
    small is faster so, and the result does not depend on the machine's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)  # initial weights
        g = torch.Generator().manual_seed(seed)  # data
        model = TinyAttentionModel(**model_kw)
        step = _adam(model.parameters(), lr=lr)
        losses = []
        for _ in range(steps):
            tokens, targets = recall_batch(g, batch, model.pos.num_embeddings, model.vocab)
            logits, _ = model(tokens)
            loss = nn.functional.cross_entropy(logits.reshape(-1, model.vocab), targets.reshape(-1),
                                               ignore_index=-100)
            loss.backward()
            step()
            losses.append(loss.item())
        model.eval()
        tokens, targets = recall_batch(torch.Generator().manual_seed(seed + 1), 512,
                                       model.pos.num_embeddings, model.vocab)
        with torch.no_grad():
            pred = model(tokens)[0].argmax(-1)  # (3, B, L)
    finally:
        torch.set_num_threads(threads)
    valid = targets != -100
    acc = {role: ((pred[i] == targets[i]) & valid[i]).sum().item() / valid[i].sum().item()
           for i, role in enumerate(("prev", "prev2", "first"))}
    return model, {"loss": losses, "accuracy": acc}


def head_weights(model: TinyAttentionModel, tokens) -> torch.Tensor:
    """Per-layer, per-head attention weights for one sentence: (layers, H, L, L)."""
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be one sentence, shape (L,), got {tuple(tokens.shape)}")
    with torch.no_grad():
        _, w = model(tokens[None], need_weights=True)  # (layers, 1, H, L, L)
    return w[:, 0]


def head_roles(weights: torch.Tensor) -> list[list[dict]]:
    """For (layers, H, L, L) weights (or (H, L, L)): per head, the mean weight a query puts on
    the previous position, two back, the first position and itself, over the queries where
    these are distinct positions (query index >= 3), and the role whose mean is largest if it is
    above 0.5 ("mixed" otherwise)."""
    w = torch.as_tensor(weights)
    if w.dim() == 3:
        w = w[None]
    if w.dim() != 4 or w.shape[-1] != w.shape[-2] or w.shape[-1] < 4:
        raise ValueError(f"weights must have shape (layers, H, L, L) with L >= 4, got {tuple(w.shape)}")
    L = w.shape[-1]
    i = torch.arange(3, L)  # queries where 0, i-2, i-1, i are four different keys
    out = []
    for layer in w:
        rows = []
        for head in layer:
            score = {role: head[i, (i - off) if off is not None else torch.zeros_like(i)].mean().item()
                     for role, off in ROLES.items()}
            best = max(score, key=score.get)
            rows.append({**score, "role": best if score[best] > 0.5 else "mixed"})
        out.append(rows)
    return out


def example_sentences(n: int = 3, seq_len: int = SEQ_LEN, vocab: int = 16, seed: int = 123) -> list[list[int]]:
    """A few fixed sentences (token ids) for the explorer."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, seq_len), generator=g).tolist()


def _draw(layer: int, head: int, sentence: int, weights_by_sentence, sentences):
    w = weights_by_sentence[sentence]  # (layers, H, L, L)
    words = vocabulary()
    labels = [words[i] for i in sentences[sentence]]
    roles = head_roles(w)[layer]
    if head < 0:  # every head of the layer, side by side (fixed layout: fast to redraw)
        H = w.shape[1]
        fig, axes = plt.subplots(1, H, figsize=(2.5 * H, 3.5), squeeze=False)
        for h, ax in enumerate(axes[0]):
            ax.imshow(w[layer, h].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels if h == 0 else [], fontsize=7)
            ax.set_title(t("heads.head_n", h=h) + "\n" + t("heads.role." + roles[h]["role"]), fontsize=9)
            ax.set_xlabel(t("viz.key"), fontsize=8)
        axes[0, 0].set_ylabel(t("viz.query"))
        fig.suptitle(t("heads.grid_title", n=layer + 1), fontsize=11)
        fig.subplots_adjust(left=0.07, right=0.99, bottom=0.26, top=0.78, wspace=0.08)
        data = w[layer]
    else:
        fig, ax = plt.subplots(figsize=(5.2, 4.4))
        attention_heatmap(w[layer, head], labels, labels, ax=ax, annotate=False, vmax=1.0,
                          title=t("heads.one_title", n=layer + 1, h=head,
                                  role=t("heads.role." + roles[head]["role"])))
        fig.tight_layout()
        data = w[layer, head]
    return fig, {"weights": data, "roles": roles}


def _layout(layer: int, head: int, sentence: int):
    """One kept figure per key (the tick labels are the sentence's words)."""
    return head < 0, sentence


def _animated(fig):
    """What _update changes, redrawn over a kept background (the Explorer blits)."""
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    return ([a for ax in heatmaps for a in (ax.images[0], ax.title)]
            + ([fig._suptitle] if fig._suptitle is not None else []))


def _update(fig, layer: int, head: int, sentence: int, weights_by_sentence, sentences):
    """Move the artists of a figure made by ``_draw`` (same ``_layout`` key) to another state."""
    w = weights_by_sentence[sentence]  # (layers, H, L, L)
    roles = head_roles(w)[layer]
    if head < 0:
        for h, ax in enumerate(fig.axes[: w.shape[1]]):
            ax.images[0].set_data(w[layer, h].numpy())
            ax.title.set_text(t("heads.head_n", h=h) + "\n" + t("heads.role." + roles[h]["role"]))
        fig._suptitle.set_text(t("heads.grid_title", n=layer + 1))
        data = w[layer]
    else:
        ax = fig.axes[0]
        ax.images[0].set_data(w[layer, head].numpy())
        ax.title.set_text(t("heads.one_title", n=layer + 1, h=head, role=t("heads.role." + roles[head]["role"])))
        data = w[layer, head]
    return {"weights": data, "roles": roles}


def heads_explorer(model: TinyAttentionModel, sentences: list[list[int]] | None = None) -> Explorer:
    """Layer and head selectors (and a sentence choice) over a trained model's attention."""
    sentences = sentences or example_sentences(seq_len=model.pos.num_embeddings, vocab=model.vocab)
    weights = [head_weights(model, s) for s in sentences]  # computed once: redraws only plot
    n_layers, n_heads = weights[0].shape[:2]
    words = vocabulary()
    style = {"description_width": "initial"}
    controls = {
        "layer": W.Dropdown(options=[(t("heads.layer_n", n=i + 1), i) for i in range(n_layers)],
                            value=0, description=t("heads.layer"), style=style),
        "head": W.Dropdown(options=[(t("heads.all_heads"), -1)]
                           + [(t("heads.head_n", h=h), h) for h in range(n_heads)],
                           value=-1, description=t("heads.head"), style=style),
        "sentence": W.Dropdown(options=[(" ".join(words[i] for i in s[:5]) + " …", j)
                                        for j, s in enumerate(sentences)],
                               value=0, description=t("heads.sentence"), style=style),
    }
    explorer = Explorer(controls, lambda **v: _draw(weights_by_sentence=weights, sentences=sentences, **v),
                        update=lambda fig, **v: _update(fig, weights_by_sentence=weights, sentences=sentences, **v),
                        layout=_layout, animated=_animated)
    # every figure now (about 0.15 s each): the first switch to one head or another sentence is quick too
    explorer.prepare(*({"head": h, "sentence": j} for h in (-1, 0) for j in range(len(sentences))))
    return explorer


def plot_split_heads(seq_len: int = 4, embed_dim: int = 8, num_heads: int = 2):
    """A picture of split_heads / merge_heads: the feature columns of each head keep their colour."""
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
    dh = embed_dim // num_heads
    def colours(h):  # the course's colour-blind-safe palette
        return PALETTE[h % len(PALETTE)]

    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8),
                             gridspec_kw={"width_ratios": [embed_dim, embed_dim + num_heads, embed_dim]})

    def block(ax, x0, y0, h):
        ax.add_patch(Rectangle((x0, y0), 1, 1, facecolor=colours(h), edgecolor="white", alpha=0.85))

    for ax, key in zip(axes, ("heads.split.x", "heads.split.heads", "heads.split.merge"), strict=True):
        ax.set_title(t(key), fontsize=10)
        ax.set_aspect("equal")
        ax.axis("off")
    for i in range(seq_len):
        for e in range(embed_dim):
            h = e // dh
            y = seq_len - 1 - i
            block(axes[0], e, y, h)  # (L, E)
            block(axes[1], h * (dh + 1) + e % dh, y, h)  # (H, L, Dh): heads side by side
            block(axes[2], e, y, h)  # merged back: (L, H*Dh)
    for h in range(num_heads):
        axes[1].text(h * (dh + 1) + dh / 2, seq_len + 0.3, t("heads.head_n", h=h), ha="center", fontsize=9)
    for ax, width in zip(axes, (embed_dim, num_heads * (dh + 1) - 1, embed_dim), strict=True):
        ax.set_xlim(-0.2, width + 0.2)
        ax.set_ylim(-0.9, seq_len + 1)
    axes[0].text(embed_dim / 2, -0.6, t("heads.split.features"), ha="center", fontsize=8)
    axes[0].text(-0.5, seq_len / 2, t("heads.split.positions"), ha="right", va="center", fontsize=8,
                 rotation=90)
    fig.suptitle(t("heads.split.title"))
    fig.tight_layout()
    return fig
