"""attnkit.viz: shapes are checked, long axes are thinned, tables line up with Chinese text."""

import matplotlib.pyplot as plt
import pytest
import torch

from attnkit import viz


def test_heatmap_checks_shapes_and_labels():
    with pytest.raises(ValueError, match=r"weights must be 2-D \(q_len, k_len\), got shape \(2, 3, 4\)"):
        viz.attention_heatmap(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="got 2 labels for an axis of length 3"):
        viz.attention_heatmap(torch.rand(3, 3), x_labels=["a", "b"])
    with pytest.raises(ValueError, match=r"weights must have shape \(heads, q_len, k_len\)"):
        viz.heads_grid(torch.rand(3, 3))


def test_long_axes_show_at_most_sixteen_labels():
    labels = [f"t{i}" for i in range(64)]
    ax = viz.attention_heatmap(torch.rand(64, 64), labels, labels)
    shown = [tick.get_text() for tick in ax.get_xticklabels()]
    assert len(shown) == 16 and shown[:2] == ["t0", "t4"]
    ax = viz.attention_heatmap(torch.rand(5, 5), labels[:5], labels[:5])
    assert [tick.get_text() for tick in ax.get_yticklabels()] == labels[:5]
    plt.close("all")


def test_heads_grid_and_mask_picture_draw_every_head():
    fig = viz.heads_grid(torch.rand(6, 4, 4), ncols=4)
    assert sum(ax.has_data() for ax in fig.axes) == 6
    ax = viz.mask_picture(torch.ones(3, 3, dtype=torch.bool).tril())
    assert ax.images[0].get_array().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert viz.figure_png(fig).startswith(b"\x89PNG")
    plt.close("all")


def test_format_table_aligns_double_width_characters():
    table = viz.format_table(["头", "value"], [["查询", 1], ["k", 22]])
    lines = table.splitlines()
    width = [sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in line) for line in lines]
    assert len(set(width)) == 1, table
    assert lines[1].startswith("----")


def test_format_table_left_aligns_the_columns_asked_for():
    table = viz.format_table(["键 j", "w"], [["0: 我的", 1], ["1: 猫", 22]], left=(0,))
    lines = table.splitlines()
    assert [line[:2] for line in lines[2:]] == ["0:", "1:"]  # labels start in one column
    width = [sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in line) for line in lines]
    assert len(set(width)) == 1, table  # and the next column still lines up
