"""Staged hints and forbidden built-ins of every checker of chapters 01-07, in both languages.

For each checker: a wrong answer's first failure prints the nudge (not the formula); the same
case failing again prints the stronger hint; show_hint(exercise) prints the formula; a function
that calls the built-in the exercise asks for is told so (status "forbidden")."""

from __future__ import annotations

import importlib

import pytest

import attnkit.exercises as X
from attnkit.exercises import ch01, ch02, ch03, ch04, ch05, ch06, ch07, show_hint
from attnkit.i18n import set_language, t

# (checker, exercise id, one name it forbids, or None where no built-in solves it)
CHECKERS = [
    (ch01.check_attention, "ch01.ex1", "torch.nn.functional.scaled_dot_product_attention"),
    (ch01.check_causal_mask, "ch01.ex2", "attnkit.core.causal_mask"),
    (ch01.check_masked_attention, "ch01.ex3", "attnkit.core.scaled_dot_product_attention"),
    (ch02.check_dot_variance, "ch02.ex1", None),
    (ch02.check_unit_variance_scale, "ch02.ex2", None),
    (ch02.check_first_saturated_dk, "ch02.ex3", None),
    (ch03.check_stable_softmax, "ch03.ex1", "attnkit.softmax.softmax"),
    (ch03.check_masked_softmax, "ch03.ex2", "attnkit.softmax.softmax"),
    (ch03.check_merge_states, "ch03.ex3", "attnkit.softmax.merge"),
    (ch03.check_softmax_jacobian, "ch03.ex4", "attnkit.softmax.softmax_jacobian"),
    (ch04.check_split_heads, "ch04.ex1", "attnkit.mha.split_heads"),
    (ch04.check_merge_heads, "ch04.ex2", "attnkit.mha.merge_heads"),
    (ch04.check_mha, "ch04.ex3", "torch.nn.functional.scaled_dot_product_attention"),
    (ch04.check_count_params, "ch04.ex4", "attnkit.mha.mha_param_count"),
    (ch05.check_repeat_kv, "ch05.ex1", "attnkit.gqa.grouped.repeat_kv"),
    (ch05.check_kv_cache_bytes, "ch05.ex2", "attnkit.gqa.budget.kv_cache_bytes"),
    (ch05.check_decode_step, "ch05.ex3", None),
    (ch06.check_rotate_pair, "ch06.ex1", "attnkit.rope.rotate_pair"),
    (ch06.check_apply_rope, "ch06.ex2", "attnkit.rope.apply_rope"),
    (ch06.check_alibi_slopes, "ch06.ex3", "attnkit.rope.alibi_slopes"),
    (ch06.check_ntk_base, "ch06.ex4", "attnkit.rope.ntk_scaled_base"),
    (ch07.check_merge, "ch07.ex1", "attnkit.softmax.merge_partials"),
    (ch07.check_tile_skipped, "ch07.ex2", "attnkit.flash.causal_tile_kind"),
    (ch07.check_io_flash, "ch07.ex3", "attnkit.flash.io_flash"),
    # the stretch exercises (their forbidden names, where a call with the check's own arguments
    # shows the refusal; the autograd ones, and ch01.ex4, which takes a module class rather than a
    # function, are tested in each chapter's own file)
    (ch02.check_score_variance, "ch02.ex4", None),
    (ch03.check_log_softmax_backward, "ch03.ex5", None),
    (ch04.check_torch_mha, "ch04.ex5", "torch.nn.functional.multi_head_attention_forward"),
    (ch05.check_max_sequences, "ch05.ex4", "attnkit.gqa.budget.max_batch_size"),
    (ch06.check_permute_for_half_split, "ch06.ex5", "attnkit.rope.permute_qk_weight"),
    (ch07.check_flash_backward, "ch07.ex4", None),
]
IDS = [ex for _, ex, _ in CHECKERS]


@pytest.fixture(params=["en", "zh"])
def lang(request):
    set_language(request.param)
    yield request.param
    set_language("en")


def _wrong(*args, **kwargs):
    return "wrong"  # fails the first case of every checker


@pytest.mark.parametrize(("check", "ex", "forbidden"), CHECKERS, ids=IDS)
def test_hints_are_staged(check, ex, forbidden, lang, capsys):
    nudge, stronger, formula = t(f"{ex}.nudge"), t(f"{ex}.stronger"), t(f"{ex}.formula")
    assert len({nudge, stronger, formula}) == 3
    X._STAGE.pop(ex, None)  # a fresh start, whatever earlier tests did

    assert check(_wrong) is False
    first = capsys.readouterr().out
    assert X.OUTCOMES[ex]["status"] == "failed" and X.OUTCOMES[ex]["case"] == 1
    assert nudge in first and stronger not in first and formula not in first

    assert check(_wrong) is False
    second = capsys.readouterr().out
    assert stronger in second and formula not in second
    assert f'show_hint("{ex}")' in second

    show_hint(ex)
    listing = capsys.readouterr().out
    assert nudge in listing and stronger in listing and formula in listing


@pytest.mark.parametrize(("check", "ex", "forbidden"), [c for c in CHECKERS if c[2]],
                         ids=[ex for _, ex, f in CHECKERS if f])
def test_forbidden_builtin_is_refused(check, ex, forbidden, lang, capsys):
    mod_name, attr = forbidden.rsplit(".", 1)
    mod = importlib.import_module(mod_name)

    def calls_builtin(*args, **kwargs):
        return getattr(mod, attr)(*args, **kwargs)

    assert check(calls_builtin) is False
    out = capsys.readouterr().out
    assert X.OUTCOMES[ex]["status"] == "forbidden"
    assert forbidden in out and "❌" in out


@pytest.mark.parametrize(("check", "ex", "forbidden"), CHECKERS, ids=IDS)
def test_old_single_hint_key_is_gone(check, ex, forbidden):
    with pytest.raises(KeyError):
        t(f"{ex}.hint")
