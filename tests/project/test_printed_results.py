"""Chapters 01-06 print each result of training or sampling at a precision that perturbed
arithmetic cannot change (chapters/AUTHORING.md, "Printed numbers").

Each test recomputes what a chapter's cell prints, with the chapter's own function or the cell's
own lines, three times under perturbed arithmetic: one thread, two threads, and every random
draw (data and initial weights) scaled by 1 + eps or 1 - eps, eps the machine epsilon of the
draw's dtype (1.2e-7 for float32, 2.2e-16 for float64): one rounding step, the size of the
difference another CPU's arithmetic makes. ``attnkit.numbers.rounding_margin`` then asserts
that every rerun prints the same text at the precision the chapter prints, and that the nearest
rounding boundary is farther from their mean than their spread. The precision is read from the
chapter's catalog sentence where the number goes through one, so a test follows its chapter.

(Functions that pin themselves to one thread, such as the training loops of chapters 01 and 04,
give the same result at one and two threads; there the scaled draws are the perturbation.)
"""

from __future__ import annotations

import math
import string
from contextlib import contextmanager

import torch

import attnkit.text.ch01  # noqa: F401  (the chapters' sentences: their precision is the test's)
import attnkit.text.ch02  # noqa: F401
import attnkit.text.ch04  # noqa: F401
import attnkit.text.ch05  # noqa: F401
import attnkit.text.ch06  # noqa: F401
from attnkit.i18n import catalog
from attnkit.numbers import rounded, rounding_margin

# (threads, every random draw scaled by 1 + ulps * machine epsilon of its dtype)
PERTURBATIONS = ((1, 0), (2, 1), (1, -1))


@contextmanager
def perturbed(threads: int, ulps: int):
    """Run with ``threads`` intra-op threads and every float random draw x replaced by
    x * (1 + ulps * torch.finfo(x.dtype).eps)."""
    saved_threads = torch.get_num_threads()
    saved = {name: getattr(torch, name) for name in ("randn", "rand", "randn_like", "rand_like")}
    saved_methods = {name: getattr(torch.Tensor, name) for name in ("normal_", "uniform_")}

    def scale(x: torch.Tensor) -> None:
        if x.is_floating_point():
            with torch.no_grad():
                x.mul_(1.0 + ulps * torch.finfo(x.dtype).eps)

    def scaled_draw(fn):
        def draw(*args, **kwargs):
            out = fn(*args, **kwargs)
            scale(out)
            return out
        return draw

    def scaled_fill(fn):
        def fill(self, *args, **kwargs):
            fn(self, *args, **kwargs)
            scale(self)
            return self
        return fill

    torch.set_num_threads(threads)
    if ulps:
        for name, fn in saved.items():
            setattr(torch, name, scaled_draw(fn))
        for name, fn in saved_methods.items():
            setattr(torch.Tensor, name, scaled_fill(fn))
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        for name, fn in saved.items():
            setattr(torch, name, fn)
        for name, fn in saved_methods.items():
            setattr(torch.Tensor, name, fn)


def reruns(compute) -> list[dict]:
    """``compute()`` (a dict name -> number) once under each perturbation."""
    out = []
    for threads, ulps in PERTURBATIONS:
        with perturbed(threads, ulps):
            out.append(compute())
    return out


def decimals(key: str, field: str) -> int:
    """The precision ``{field:.Nf}`` (or ``.N%``, as N + 2 decimals of the fraction) with which
    catalog sentence ``key`` prints ``field``; the same in both languages."""
    specs = set()
    for text in catalog()[key].values():
        for _, name, spec, _ in string.Formatter().parse(text):
            if name == field:
                specs.add(spec)
    assert len(specs) == 1, f"{key}: {field} is printed as {specs} in the two languages"
    (spec,) = specs
    kind = spec[-1]
    assert kind in "f%", f"{key}: {field} has format {spec!r}, expected .Nf or .N%"
    n = int(spec.split(".")[1][:-1])
    return n + 2 if kind == "%" else n


def assert_stable(samples: list[dict], places: dict[str, int], what: str) -> None:
    """Every name of ``places`` prints the same at its decimals in every sample, with margin."""
    for name, n in places.items():
        values = [s[name] for s in samples]
        stable, spread, margin = rounding_margin(values, n)
        assert stable, (f"{what}, {name}: printed at {n} decimals the reruns give "
                        f"{sorted({rounded(v, n) for v in values})} (values {values}, spread {spread:.2e}, "
                        f"margin to the nearest rounding boundary {margin:.2e}): print fewer decimals")


def test_perturbed_draws_are_perturbed_and_restored():
    torch.manual_seed(0)
    plain = torch.randn(1000)
    with perturbed(2, -1):
        assert torch.get_num_threads() == 2
        torch.manual_seed(0)
        moved = torch.randn(1000)
        moved64 = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        w = torch.empty(1000).uniform_(generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    assert torch.equal(torch.randn(1000), plain)  # restored
    assert not torch.equal(moved, plain) and torch.allclose(moved, plain, rtol=2e-7, atol=0)
    plain64 = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(moved64, plain64) and torch.allclose(moved64, plain64, rtol=4e-16, atol=0)
    assert torch.equal(torch.empty(1000).uniform_(generator=torch.Generator().manual_seed(1))
                       * (1 - torch.finfo(torch.float32).eps), w)


def test_decimals_reads_the_catalog():
    assert decimals("ch01.hand_sum", "total") == 3  # {total:.3f}
    assert decimals("ch01.self_match", "v") == 3  # {v:.1%}: 99.6% is 0.996


# ---- chapter 01 ----

def test_ch01_lookup_task_test_errors():
    """Section 1: the test MSE of the four models trained on the look-up task, and predicting 0."""
    from attnkit.toy import train_fixed_vs_qkv

    names = ("zero", "fixed", "qkv", "tied_qk", "tied_kv")
    samples = reruns(lambda: train_fixed_vs_qkv(n=8, d=16, steps=150, seed=0))
    assert_stable(samples, dict.fromkeys(names, decimals("ch01.test_mse", "v")), "ch01 section 1")


def test_ch01_one_query_by_hand():
    """Section 2: query 1 of "my cat chased mice" worked by hand (random x and projections)."""
    from attnkit.i18n import t

    def compute():
        sentence = t("ch01.qkv_sentence").split()  # the cell's lines
        torch.manual_seed(0)
        x = torch.randn(len(sentence), 8)
        to_q, to_k, to_v = (torch.nn.Linear(8, 4, bias=False) for _ in range(3))
        with torch.no_grad():
            q, k, v = to_q(x), to_k(x), to_v(x)
        s = q[1] @ k.T / math.sqrt(4)
        w = torch.exp(s) / torch.exp(s).sum()
        terms = w[:, None] * v
        out = {f"q_1[{c}]": q[1, c].item() for c in range(4)}
        out |= {f"s_{j}": s[j].item() for j in range(4)} | {f"w_{j}": w[j].item() for j in range(4)}
        out |= {f"w_{j} v_{j}[{c}]": terms[j, c].item() for j in range(4) for c in range(4)}
        out |= {f"out[{c}]": terms.sum(0)[c].item() for c in range(4)} | {"total": w.sum().item()}
        return out

    samples = reruns(compute)
    places = {name: 2 for name in samples[0]}  # .round(2), f"{s[j]:.2f}"
    places |= {f"w_{j}": 3 for j in range(4)} | {"total": decimals("ch01.hand_sum", "total")}
    assert_stable(samples, places, "ch01 section 2, one query by hand")


def test_ch01_explorer_peaks_and_the_minus_1e9_row():
    """Section 6: the largest weight per row of the explorer's sentence at four temperatures;
    pitfalls: the row that -1e9 fills instead of -inf, and the mean of the values beside it."""
    from attnkit.core import causal_mask, scaled_dot_product_attention
    from attnkit.widgets.attention import explorer_attention, sentence_tokens

    def compute():
        out = {}
        for temp in (5.0, 1.0, 0.2, 0.05):  # the cells' lines
            w, _ = explorer_attention(sentence_tokens(), temperature=temp)
            out |= {f"T={temp} row {i}": v for i, v in enumerate(w.max(dim=-1).values.tolist())}
        torch.manual_seed(0)
        q, k, v = torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        dead = causal_mask(6).clone()
        dead[2] = False
        big_negative = torch.zeros(6, 6).masked_fill(~dead, -1e9)
        row = scaled_dot_product_attention(q, k, v, attn_mask=big_negative)[0, 2, :4]
        out |= {f"filled {c}": x for c, x in enumerate(row.tolist())}
        out |= {f"mean {c}": x for c, x in enumerate(v[0].mean(0)[:4].tolist())}
        return out

    samples = reruns(compute)
    places = {name: 4 if name.startswith(("filled", "mean")) else 2 for name in samples[0]}  # tensor print, round(x, 2)
    assert_stable(samples, places, "ch01 explorer peaks and the -1e9 row")


def test_ch01_self_match_fraction():
    from attnkit.toy import self_match_fraction

    samples = reruns(lambda: {"v": self_match_fraction(n=8, d=16, seed=0)})
    assert_stable(samples, {"v": decimals("ch01.self_match", "v")}, "ch01 section 1, without R")


def test_ch01_scaled_and_unscaled_score_statistics():
    """Pitfalls: the std of the scores and the mean largest weight, with and without 1/sqrt(d_k);
    the column sums of a softmax taken along the wrong dim (the next draw of the same cells)."""

    def compute():
        torch.manual_seed(0)  # the cell's lines
        qa, ka = torch.randn(64, 512), torch.randn(64, 512)
        out = {}
        for label, s in (("scaled", 1 / math.sqrt(512)), ("unscaled", 1.0)):
            w = torch.softmax(qa @ ka.T * s, dim=-1)
            out[label + "_std"] = (qa @ ka.T * s).std().item()
            out[label + "_peak"] = w.max(-1).values.mean().item()
        s = torch.randn(3, 3)
        out |= {f"wrong-dim sum {i}": v for i, v in enumerate(torch.softmax(s, dim=-2).sum(-1).tolist())}
        return out

    std, peak = decimals("ch01.scale_stats", "std"), decimals("ch01.scale_stats", "peak")
    places = {"scaled_std": std, "unscaled_std": std, "scaled_peak": peak, "unscaled_peak": peak}
    places |= {f"wrong-dim sum {i}": 3 for i in range(3)}  # .numpy().round(3)
    assert_stable(reruns(compute), places, "ch01 pitfalls, scale statistics")


# ---- chapter 04 ----

def _ch04_recall_model() -> dict:
    """Section 4's training run and everything the chapter prints from the trained model."""
    from attnkit.widgets.heads import (
        example_sentences,
        head_roles,
        head_weights,
        train_recall_model,
    )

    model, info = train_recall_model(steps=100, seed=0)
    weights = head_weights(model, example_sentences()[0])  # (layers, H, L, L)
    out = {"loss_first": info["loss"][0], "loss_last": info["loss"][-1]}
    out |= {f"accuracy {role}": acc for role, acc in info["accuracy"].items()}
    for layer, rows in enumerate(head_roles(weights)):
        for h, row in enumerate(rows):
            out |= {f"layer {layer + 1} head {h} {role}": row[role] for role in ("prev", "prev2", "first", "self")}
    w1 = weights[0]
    out |= {f"peak head {h}": v for h, v in enumerate(w1.amax(-1)[:, 3:].mean(-1).tolist())}
    out["peak of the mean"] = w1.mean(0).amax(-1)[3:].mean().item()
    return out


def test_ch04_recall_model_training_and_head_roles():
    samples = reruns(_ch04_recall_model)
    places = {"loss_first": decimals("ch04.loss", "a"), "loss_last": decimals("ch04.loss", "b"),
              "peak of the mean": decimals("ch04.peak_mean", "v")}
    places |= {name: 3 for name in samples[0] if name.startswith("accuracy")}  # f"{acc:.1%}"
    places |= {name: 2 for name in samples[0] if name.startswith(("layer", "peak head"))}  # f"{r:.2f}", round(v, 2)
    assert_stable(samples, places, "ch04 section 4")


# ---- chapter 02 ----

def _ch02_samples() -> dict:
    """What chapter 02's cells print from random draws, by the cells' own lines."""
    from attnkit import experiments as E
    from attnkit.widgets.scaling import partial_sums

    out = {}
    torch.manual_seed(0)  # section 1: five dot products at three widths
    for d in (4, 64, 1024):
        q, k = torch.randn(5, d), torch.randn(5, d)
        out |= {f"q·k d_k={d} pair {i}": v for i, v in enumerate((q * k).sum(-1).tolist())}
    out |= {f"walk end {i}": v for i, v in enumerate(partial_sums(1024, 5, seed=0)[:, -1].tolist())}
    torch.manual_seed(0)  # section 2: Var(q·k) over 100,000 pairs
    q, k = torch.randn(100_000, 64), torch.randn(100_000, 64)
    dots = (q * k).sum(-1)
    out["Var(q·k)"] = dots.var().item()
    out["Var(q·k/8)"] = (dots / 8).var().item()
    out["E[(q·k)^4] / 10"] = (dots.double() ** 4).mean().item() / 10  # printed to the nearest 10
    for scaled in (False, True):
        v = E.dot_product_variance(64, 100_000, scaled=scaled, seed=0)
        se = E.dot_product_variance_se(64, 100_000, scaled=scaled)
        out[f"se_row {scaled} v"] = v
        out[f"se_row {scaled} z"] = abs(v - E.dot_product_variance_theory(64, scaled=scaled)) / se
    d_ks = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]  # the sweep
    for scaled in (False, True):
        for d, v in zip(d_ks, E.variance_sweep(d_ks, 10_000, scaled=scaled, seed=0)["measured"], strict=True):
            out[f"sweep {scaled} {d}"] = v
    torch.manual_seed(0)  # section 3: one row nudged
    for d in (4, 1024):
        query, keys = torch.randn(d), torch.randn(16, d)
        row = keys @ query
        p = torch.softmax(row, dim=-1)
        nudged = torch.softmax(row + 0.5 * torch.nn.functional.one_hot(row.argsort()[-2], 16), dim=-1)
        out[f"nudge {d} w"], out[f"nudge {d} dp"] = p.max().item(), (nudged - p).abs().sum().item()
    for scaled in (False, True):  # the saturation table
        s = E.saturation_sweep([4, 16, 64, 256, 1024], seq_len=16, n_rows=512, scaled=scaled, seed=0)
        for stat in ("max_weight", "entropy", "jacobian_norm"):
            out |= {f"saturation {scaled} {stat} {i}": v for i, v in enumerate(s[stat])}
    for std in (0.5, 1.0, 2.0, 4.0):  # section 4: the entry std, QK-norm, temperature
        out[f"std {std} plain"] = E.dot_product_variance(64, 10_000, scaled=True, std=std, seed=0)
        out[f"std {std} normed"] = E.dot_product_variance(64, 10_000, scaled=True, std=std, qk_norm=True, seed=0)
        out[f"std {std} tempered"] = E.dot_product_variance(64, 10_000, scaled=True, std=std, temperature=std**2, seed=0)
        out[f"std {std} top plain"] = E.saturation(64, 16, 256, scaled=True, std=std, seed=0)["max_weight"]
        out[f"std {std} top normed"] = E.saturation(64, 16, 256, scaled=True, std=std, qk_norm=True, seed=0)["max_weight"]
    for name, kw in (("right", {}), ("wrong", {"temperature": 8.0})):  # pitfalls: / d_k
        s = E.saturation(64, 16, 512, scaled=True, seed=0, **kw)
        out[f"div {name} w"], out[f"div {name} h"] = s["max_weight"], s["entropy"]
    head_dots = E.dot_products(64, 20_000, seed=0)
    out["Var(q·k/√64)"] = (head_dots / math.sqrt(64)).var().item()
    out["Var(q·k/√512)"] = (head_dots / math.sqrt(512)).var().item()
    return out


def test_ch02_sampling_results():
    samples = reruns(_ch02_samples)
    places = {}
    for name in samples[0]:
        if name.startswith(("q·k", "walk end")):
            places[name] = 1  # round(x, 1)
        elif name == "Var(q·k)":
            places[name] = 2  # f"{dots.var():.2f}"
        elif name == "Var(q·k/8)":
            places[name] = 4  # f"{(dots / math.sqrt(d_k)).var():.4f}"
        elif name == "E[(q·k)^4] / 10":
            places[name] = 0
        elif name.startswith("se_row"):
            places[name] = decimals("ch02.nb.se_row", name[-1])
        elif name.startswith("sweep False"):
            places[name] = 2  # f"{a:.2f}"
        elif name.startswith("nudge") and name.endswith(" w"):
            places[name] = decimals("ch02.nb.nudge", "w")
        elif name.startswith("nudge"):
            places[name] = 2  # f"{dp:.2f}"
        elif name.endswith(" plain") and name.startswith("std"):
            places[name] = 2 - math.floor(math.log10(abs(samples[0][name])))  # f"{plain:.3g}": 3 digits
        elif name.startswith("div"):
            places[name] = decimals("ch02.nb.div_stats", name[-1])
        else:
            places[name] = 3  # the sweep (scaled), saturation and std tables, Var(q·k / √64): f"{v:.3f}"
    assert_stable(samples, places, "ch02")


# ---- chapter 05 ----

def test_ch05_greedy_tokens_of_the_untrained_decoder():
    """Section 5: the 20 tokens an untrained decoder generates greedily (an argmax per step: a
    near tie between two logits would let rounding pick another token)."""
    from attnkit.gqa import TinyDecoder, greedy_generate

    def compute():
        torch.manual_seed(0)  # the cell's lines
        model = TinyDecoder(vocab_size=64, embed_dim=64, num_heads=4, num_kv_heads=2, num_layers=2).eval()
        tokens = greedy_generate(model, torch.tensor([[5, 17, 42, 8, 23, 4]]), 20)
        return {f"token {i}": float(v) for i, v in enumerate(tokens[0, 6:].tolist())}

    samples = reruns(compute)
    assert_stable(samples, dict.fromkeys(samples[0], 0), "ch05 section 5, greedy tokens")
    # and no step is a near tie: the top two logits of every step are far apart (0.007 here)
    torch.manual_seed(0)
    model = TinyDecoder(vocab_size=64, embed_dim=64, num_heads=4, num_kv_heads=2, num_layers=2).eval()
    tokens = greedy_generate(model, torch.tensor([[5, 17, 42, 8, 23, 4]]), 20)
    with torch.no_grad():
        top2 = model(tokens[:, :-1])[0, 5:].topk(2, dim=-1).values  # (20, 2): the logits that chose each token
    assert (top2[:, 0] - top2[:, 1]).min().item() > 1e-3


def test_ch05_absorbed_scores_and_gqa_conversion_errors():
    """Section 7: the true and the (wrongly) absorbed RoPE scores; pitfalls: the relative output
    error of nn.MultiheadAttention converted to GQA with fewer kv heads."""
    from attnkit.gqa import GroupedQueryAttention
    from attnkit.rope import apply_rope, generate_rope_embeddings

    def compute():
        torch.manual_seed(0)  # the cells' lines
        W_uk = torch.randn(8, 16) / math.sqrt(16)
        c = torch.randn(6, 16)
        q_c = torch.randn(1, 8)
        cos, sin = generate_rope_embeddings(6, 8)
        q_rot = apply_rope(q_c, cos, sin, offset=5)
        true_scores = (q_rot @ apply_rope(c @ W_uk.T, cos, sin).T)[0]
        absorbed = ((q_rot @ W_uk) @ c.T)[0]
        out = {f"true {j}": v for j, v in enumerate(true_scores.tolist())}
        out |= {f"absorbed {j}": v for j, v in enumerate(absorbed.tolist())}
        torch.manual_seed(0)
        tmha = torch.nn.MultiheadAttention(64, 8, batch_first=True)
        xb = torch.randn(4, 16, 64)
        with torch.no_grad():
            ref, _ = tmha(xb, xb, xb, need_weights=False)
            for n_g in (8, 4, 2, 1):
                got, _ = GroupedQueryAttention.from_mha(tmha, num_kv_heads=n_g)(xb)
                out[f"error n_g={n_g}"] = ((got - ref).norm() / ref.norm()).item()
        return out

    samples = reruns(compute)
    assert_stable(samples, dict.fromkeys(samples[0], 3), "ch05")  # .round(3), f"{err:.3f}"


# ---- chapter 06 ----

def test_ch06_rope_scores_and_the_convention_gap():
    """Section 3: the float64 RoPE score of one random pair at three positions (6 decimals), and
    section 5: how far the interleaved and half-split conventions' outputs differ (float32)."""
    from attnkit.rope import (
        StandardAttentionWithRoPE,
        apply_rope,
        generate_rope_embeddings,
        rope_relative_scores,
    )

    def compute():
        torch.manual_seed(1)  # the cells' lines
        q, k = torch.randn(2, 64, dtype=torch.float64)
        cos64, sin64 = generate_rope_embeddings(1200, 64, dtype=torch.float64)
        out = {}
        for m, n in [(3, 1), (10, 8), (1000, 998), (8, 10)]:
            qm = apply_rope(q[None], cos64, sin64, offset=m)[0]
            kn = apply_rope(k[None], cos64, sin64, offset=n)[0]
            out[f"score {m} {n}"] = (qm @ kn).item()
        out["closed form"] = rope_relative_scores(q, k, [2])[0].item()
        torch.manual_seed(0)
        inter = StandardAttentionWithRoPE(64, 4).eval()
        half = StandardAttentionWithRoPE(64, 4, interleaved=False).eval()
        half.load_state_dict(inter.state_dict())
        x = torch.randn(2, 12, 64)
        rope16 = generate_rope_embeddings(12, 16)
        with torch.no_grad():
            out["gap"] = (inter(x, x, x, rope16) - half(x, x, x, rope16)).abs().max().item()
        return out

    samples = reruns(compute)
    places = dict.fromkeys(samples[0], decimals("ch06.score_at", "score"))
    places |= {"closed form": decimals("ch06.closed_form", "score"), "gap": decimals("ch06.other_convention", "gap")}
    assert_stable(samples, places, "ch06")
