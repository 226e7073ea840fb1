"""Chapter 03's online-softmax schematic: the states it prints are attnkit's online softmax (each
chunk's max and sum, the running state after each merge), labels in both languages, bad
arguments named."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from attnkit import softmax as S  # noqa: E402
from attnkit.i18n import set_language, t  # noqa: E402
from attnkit.schematics.online_softmax import online_softmax_schematic, online_states  # noqa: E402


def texts(fig):
    return [x.get_text() for ax in fig.axes for x in ax.texts] + [ax.get_title() for ax in fig.axes]


@pytest.mark.parametrize("scores, c", [([2.3, 9.1, 0.5], 1), ([2.3, 9.1, 0.5, 4.0, 7.5, 1.0, 9.6, 3.2], 3),
                                       ([-5.0, 5.0, 0.0, 1.0], 4), ([1.0, 1.0], 1)])
def test_states_are_attnkits_online_softmax(scores, c):
    x = torch.tensor(scores, dtype=torch.float64)
    states = online_states(scores, c)
    assert len(states) == math.ceil(len(scores) / c)
    for i, (m_b, l_b, m, l) in enumerate(states):
        chunk, seen = x[i * c:(i + 1) * c], x[:(i + 1) * c]
        part, whole = S.softmax_state(chunk), S.softmax_state(seen)
        assert m_b == pytest.approx(part.m.item()) and l_b == pytest.approx(part.l.item())
        assert m == pytest.approx(whole.m.item()) and l == pytest.approx(whole.l.item())
    m, l = states[-1][2:]
    p = [math.exp(s - m) / l for s in scores]                  # the final normalisation
    torch.testing.assert_close(torch.tensor(p, dtype=torch.float64), torch.softmax(x, -1))


def test_the_figure_shows_every_chunk_and_state():
    scores = [2.3, 9.1, 0.5, 4.0, 7.5, 1.0, 9.6, 3.2]
    words = texts(online_softmax_schematic(scores, 3))
    assert [w for w in words if w.startswith("chunk ")] == ["chunk 0", "chunk 1", "chunk 2"]
    for s in scores:
        assert f"{s:g}" in words
    for m_b, l_b, m, l in online_states(scores, 3):
        assert f"m_b = {m_b:g}\nℓ_b = {l_b:.3f}" in words and f"m = {m:g}\nℓ = {l:.3f}" in words
    assert words.count(t("schematics.online.rescale")) == 2     # one rescale between consecutive states
    assert t("schematics.online.title", n=8, c=3) in words


def test_labels_follow_the_language():
    set_language("zh")
    words = texts(online_softmax_schematic())
    assert "第 0 块" in words and "分数 x" in words and not any(w.startswith("chunk ") for w in words)


@pytest.mark.parametrize("scores, c, name", [
    ([], 1, "scores"), ([1.0, float("nan")], 1, "scores"), ("abc", 1, "scores"), ([0.0] * 17, 1, "scores"),
    ([1.0, 2.0], 0, "chunk_size"), ([1.0, 2.0], 3, "chunk_size"), ([1.0, 2.0], 1.5, "chunk_size"),
])
def test_bad_arguments_are_named(scores, c, name):
    with pytest.raises(ValueError, match=name):
        online_softmax_schematic(scores, c)
