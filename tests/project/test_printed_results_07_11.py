"""Chapters 07-11 print each result of training at a precision, or as a verdict, that perturbed
arithmetic cannot change (chapters/AUTHORING.md, "Printed numbers").

The trained results of these chapters are chapter 10's LoRA runs (section 3's budget table, the
explorer's four runs in section 4, the subspace similarity and singular values, the losses of
the pitfall "forgetting alpha", the fine-tunes of its small pretrained language model in sections
6 and 7) and chapter 11's live MQAR race. Each test reruns the smallest
computation that reproduces what the chapter prints, with the chapter's own functions and
settings, under three perturbations: the initial weights scaled element by element by
1 + 2e-7 or 1 - 2e-7 (a few float32 ulps, more than another CPU's rounding moves them), with
three seeds for the signs. (Both chapters pin their training to one thread, so threads are no
perturbation of theirs; chapter 10's rerun trains 16 of the chapter's 48 runs together, itself
another arithmetic path through the batched matrix products.) Then every rerun must print the
chapter's text, and
``attnkit.numbers.rounding_margin`` must find the nearest rounding boundary farther from their
mean than their spread (for a verdict such as "recall >= 0.9", the threshold farther than the
spread). Chapters 07-09 print no training result: what they sample is computed in float64 or
printed as a bound, and the notebooks' perturbed nbval pass covers it.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

import attnkit.experiments.lora as E
from attnkit.lora import PROJECTIONS, lora_scaling, subspace_similarity
from attnkit.numbers import rounded, rounding_margin
from attnkit.timing import one_thread

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (1, 2, 3)  # of the perturbation's signs


def jitter(tensors: dict, seed: int, eps: float = 2e-7) -> dict:
    """Each float tensor times 1 +- eps, the sign drawn per element from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return {name: w * (1 + eps * (torch.randint(0, 2, w.shape, generator=g) * 2 - 1)) for name, w in tensors.items()}


def assert_prints_the_same(samples: list[dict], expected: dict[str, str], what: str) -> None:
    """Every rerun prints ``expected[name]`` (its decimals are the chapter's), with margin."""
    for name, text in expected.items():
        n = len(text.split(".")[1]) if "." in text else 0
        values = [s[name] for s in samples]
        stable, spread, margin = rounding_margin(values, n)
        printed = sorted({rounded(v, n) for v in values})
        assert printed == [text], f"{what}, {name}: the chapter prints {text}, the reruns {printed} ({values})"
        assert stable, (f"{what}, {name}: spread {spread:.2e} is not below the margin {margin:.2e} to the "
                        f"nearest rounding boundary at {n} decimals ({values}): print fewer decimals")


def test_jitter_moves_every_element_by_about_eps_and_repeats():
    w = {"w": torch.randn(64, 64)}
    a, b = jitter(w, 1), jitter(w, 1)
    rel = (a["w"] / w["w"] - 1).abs()
    assert torch.equal(a["w"], b["w"]) and not torch.equal(a["w"], w["w"])
    assert rel.max().item() < 3e-7 and rel.median().item() > 1e-7


def test_assert_prints_the_same_refuses_a_spread_across_a_rounding_boundary():
    assert_prints_the_same([{"x": 0.1231}, {"x": 0.1232}], {"x": "0.123"}, "ok")
    with pytest.raises(AssertionError, match="reruns"):
        assert_prints_the_same([{"x": 0.1234}, {"x": 0.1236}], {"x": "0.123"}, "boundary")
    with pytest.raises(AssertionError, match="margin"):
        assert_prints_the_same([{"x": 0.12349}, {"x": 0.12340}], {"x": "0.123"}, "thin")


# ---- chapter 10: the LoRA runs ---------------------------------------------------------------

# what chapter 10 prints from its experiment (L.run_budget_experiment(alphas=(1, 16, 256), steps=120))
CH10_RECOVERED = {  # section 3's table and conclusions, section 4's lines: recovered fraction, 3 decimals
    (("q",), 1, 16): "0.053", (("q",), 2, 16): "0.080", (("q",), 4, 16): "0.113", (("q",), 8, 16): "0.126",
    (("v",), 1, 16): "0.469", (("v",), 2, 16): "0.570", (("v",), 4, 16): "0.606", (("v",), 8, 16): "0.651",
    (("q", "v"), 1, 16): "0.521", (("q", "v"), 2, 16): "0.649", (("q", "v"), 4, 16): "0.731",
    (("q", "v"), 8, 16): "0.788", (("q", "v"), 8, 1): "0.756",
    (PROJECTIONS, 1, 16): "0.682", (PROJECTIONS, 2, 16): "0.818", (PROJECTIONS, 2, 256): "0.421",
}
CH10_PEAK = {(PROJECTIONS, 2, 16): "0.0041", (PROJECTIONS, 2, 256): "0.1030",  # section 4: largest held-out loss
             (("q", "v"), 8, 1): "0.0041", (("q", "v"), 8, 16): "0.0041"}
CH10_OTHER = {"full": "0.996", "sim q": "0.47", "sim v": "0.83",  # full fine-tuning; phi(1, 1) learned
              "sv q": "1.25, 1.01, 0.84, 0.49", "sv v": "1.60, 0.77, 0.54, 0.48",  # top singular values, r = 8
              "right": "0.00075", "wrong": "0.00238",  # section 9: merged right / without alpha / r
              "exact q": "0.09", "exact k": "0.03", "exact v": "0.58", "exact o": "0.16"}  # section 4: one exact weight


def _ch10_rerun(seed: int) -> dict:
    """The runs chapter 10 prints, trained together (as the chapter trains its 48, same settings),
    from perturbed pretrained and teacher weights."""
    defaults = {k: p.default for k, p in inspect.signature(E.run_budget_experiment).parameters.items()}
    base, teacher, _ = E.make_teacher_student(heads=defaults["heads"], seed=defaults["seed"])
    base, teacher = jitter(base, seed), jitter(teacher, seed + 100)
    configs = list(CH10_RECOVERED)
    # run i of the chapter's list starts from its own draw (init_lora_pairs): take the chapter's
    chapter_configs = [(tuple(p), r, a) for p in defaults["placements"] for r in defaults["ranks"] for a in (1, 16, 256)]
    a_all, _ = E.init_lora_pairs(chapter_configs, base, defaults["seed"])
    rows = [chapter_configs.index(c) for c in configs]
    a0 = {p: a[rows] for p, a in a_all.items()}
    common = dict(heads=defaults["heads"], steps=120, seed=defaults["seed"], batch=defaults["batch"],
                  eval_every=defaults["eval_every"])
    with one_thread():  # as the chapter, which sets one thread in its first cell
        runs = dict(zip(configs, E.train_lora_runs(base, teacher, configs, lr=defaults["lr"], A0=a0, **common),
                        strict=True))
        full = E.train_full(base, teacher, lr=defaults["full_lr"], **common)
    out = {f"rec {k}": r["recovered"] for k, r in runs.items()}
    out.update({f"peak {k}": max(runs[k]["losses"]) for k in CH10_PEAK})
    out["full"] = full["recovered"]
    r4, r8 = runs[(("q", "v"), 4, 16)], runs[(("q", "v"), 8, 16)]
    for p in ("q", "v"):
        out[f"sim {p}"] = subspace_similarity(r4["A"][p], r8["A"][p])[0, 0].item()
        for i, s in enumerate(torch.linalg.svdvals(r8["delta"][p])[:4].tolist()):
            out[f"sv {p} {i}"] = s
    x_eval = torch.randn(64, 16, 32, generator=torch.Generator().manual_seed(5))  # section 7's cell
    y_eval = E.attention_forward(x_eval, teacher, 4)
    scale = lora_scaling(4, 16)
    for name, div in (("right", 1.0), ("wrong", scale)):
        weights = {**base, **{p: base[p] + dw / div for p, dw in r4["delta"].items()}}
        out[name] = torch.nn.functional.mse_loss(E.attention_forward(x_eval, weights, 4), y_eval).item()
    x_gap = torch.randn(64, 16, 32, generator=torch.Generator().manual_seed(7))  # section 4's cell
    y_gap = E.attention_forward(x_gap, teacher, 4)
    gap = torch.nn.functional.mse_loss(E.attention_forward(x_gap, base, 4), y_gap)
    for p in PROJECTIONS:
        one = torch.nn.functional.mse_loss(E.attention_forward(x_gap, {**base, p: teacher[p]}, 4), y_gap)
        out[f"exact {p}"] = 1 - (one / gap).item()
    return out


def test_chapter_10_lora_results_print_the_same_under_perturbed_arithmetic():
    samples = [_ch10_rerun(seed) for seed in SEEDS]
    expected = {f"rec {k}": v for k, v in CH10_RECOVERED.items()}
    expected.update({f"peak {k}": v for k, v in CH10_PEAK.items()})
    expected.update({k: v for k, v in CH10_OTHER.items() if not k.startswith("sv")})
    for p in ("q", "v"):
        expected.update({f"sv {p} {i}": v for i, v in enumerate(CH10_OTHER[f"sv {p}"].split(", "))})
    assert_prints_the_same(samples, expected, "chapter 10")


# what chapter 10 prints from its small language model (sections 6 and 7): held-out loss in nats per
# character at 2 decimals, perplexity at 1; before fine-tuning, after LoRA on q, v (r = 8) and on
# all six linear layers (r = 2), 60 steps each
CH10_LM = {"before english": "1.63", "before python": "3.62",
           "ppl before english": "5.1", "ppl before python": "37.4",
           "qv english": "1.99", "qv python": "2.44",
           "ppl qv english": "7.3", "ppl qv python": "11.4",
           "all english": "2.20", "all python": "2.26"}


def _ch10_lm_rerun(seed: int) -> dict:
    """Sections 6 and 7 of chapter 10, from the committed pretrained weights perturbed."""
    from attnkit.experiments import charlm as C

    held = {"english": C.split("english")[1], "python": C.split("python")[1]}
    train = C.split("python")[0]
    out = {}
    with one_thread():  # as the chapter
        for name, where, r in (("qv", ("q", "v"), 8), ("all", ("q", "k", "v", "o", "fc1", "fc2"), 2)):
            lm = C.load_pretrained()
            lm.load_state_dict(jitter(lm.state_dict(), seed))
            if name == "qv":
                out.update({f"before {k}": C.evaluate(lm, ids) for k, ids in held.items()})
            torch.manual_seed(0)  # the LoRA A matrices, as the chapter draws them
            C.add_lora(lm, where=where, r=r, lora_alpha=16)
            C.train(lm, train, steps=60, lr=1e-2, batch=8, seed=0)
            out.update({f"{name} {k}": C.evaluate(lm, ids) for k, ids in held.items()})
    out.update({f"ppl {k}": math.exp(v) for k, v in list(out.items())})
    return out


def test_chapter_10_language_model_results_print_the_same_under_perturbed_arithmetic():
    samples = [_ch10_lm_rerun(seed) for seed in SEEDS]
    assert_prints_the_same(samples, CH10_LM, "chapter 10, the small language model")


# ---- chapter 11: the live MQAR race ----------------------------------------------------------


def test_chapter_11_race_verdicts_hold_under_perturbed_arithmetic(monkeypatch):
    """Section 4 prints whether softmax and linear attention solve the race's setting (recall >=
    0.9): softmax True, linear False. Rerun with perturbed initial weights, each recall stays on
    its side of 0.9 by more than the spread of the reruns."""
    import attnkit.factory as factory
    from attnkit import mqar

    race = json.loads((ROOT / "figures" / "bench_factory.json").read_text())["race"]
    live, mechanisms = race["settings"]["live"], race["settings"]["mechanisms"]
    task = {k: v for k, v in live.items() if k != "mechanisms"}
    seed_box = {}

    class PerturbedTinyLM(factory.TinyLM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with torch.no_grad():
                for name, w in jitter(dict(self.named_parameters()), seed_box["seed"]).items():
                    self.get_parameter(name).copy_(w)

    monkeypatch.setattr(factory, "TinyLM", PerturbedTinyLM)  # train_mqar builds its model from attnkit.factory
    for name, solves in (("softmax", True), ("linear", False)):
        recalls = []
        for seed in SEEDS:
            seed_box["seed"] = seed
            recalls.append(mqar.train_mqar(mechanisms[name], seed=0, **task)["accuracy"])
        spread = max(recalls) - min(recalls)
        assert all((r >= 0.9) == solves for r in recalls), (name, recalls)
        assert abs(sum(recalls) / len(recalls) - 0.9) > spread, (name, recalls)
