"""Chinese in figures renders with the font attnkit ships, on a machine with no system CJK font."""

import os
import subprocess
import sys
import textwrap
import warnings

import matplotlib
import matplotlib.pyplot as plt
from fontTools.ttLib import TTFont
from matplotlib import font_manager

from attnkit import i18n, viz

# A child process whose matplotlib sees no system font at all (a fresh font cache, and the
# system font search emptied), so only matplotlib's own DejaVu and attnkit's bundled font exist.
NO_SYSTEM_FONTS = textwrap.dedent("""
    import warnings
    warnings.simplefilter("error")          # a 'Glyph ... missing' warning fails the run
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib.font_manager import FontProperties
    fm = font_manager.fontManager            # forget every font that is not matplotlib's own
    own = matplotlib.get_data_path()
    fm.ttflist = [f for f in fm.ttflist if f.fname.startswith(own)]
    fm.afmlist = [f for f in fm.afmlist if f.fname.startswith(own)]
    font_manager.FontManager._findfont_cached.cache_clear()
    assert not any("CJK" in f.name or "Hei" in f.name or "Song" in f.name for f in fm.ttflist)
    import matplotlib.pyplot as plt
    from attnkit import i18n, viz
    i18n.set_language("zh")
    from attnkit.widgets.attention import attention_explorer
    e = attention_explorer()                 # heatmap with Chinese tokens, title, labels
    fig, ax = plt.subplots()
    ax.set_title(i18n.t("viz.weight") + " −1.5")
    fig.savefig("/dev/null", format="png")
    print(fm.findfont(FontProperties(family=viz.CJK_FAMILY), fallback_to_default=False))
""")

def test_chinese_figures_render_without_any_system_font():
    env = dict(os.environ)
    run = subprocess.run([sys.executable, "-c", NO_SYSTEM_FONTS], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Glyph" not in run.stderr
    assert run.stdout.strip().endswith(viz.FONT_PATH.name)


def test_the_bundled_font_is_the_one_used_and_is_freely_licensed():
    path = font_manager.findfont(font_manager.FontProperties(family=viz.CJK_FAMILY), fallback_to_default=False)
    assert os.path.samefile(path, viz.FONT_PATH)
    files = viz.font_files()
    assert os.path.samefile(files[-1], viz.FONT_PATH), files
    assert files[0].startswith(matplotlib.get_data_path()), files
    license_text = (viz.FONT_PATH.parent / "OFL-1.1.txt").read_text()
    assert "SIL OPEN FONT LICENSE" in license_text and "Version 1.1" in license_text
    names = {r.toUnicode() for r in TTFont(viz.FONT_PATH)["name"].names if r.nameID in (1, 4)}
    assert any("Noto Sans CJK SC" in n for n in names), names


# A child process that draws a Chinese figure and prints the files matplotlib used for it and a
# hash of the PNG. DECOY (a copy of the font, under its real family name, in another folder)
# plays a system CJK font: registered in the font cache before attnkit starts ("stale": the cache
# was built while the system font existed), or installed after attnkit was imported ("after").
SCENARIO = textwrap.dedent("""
    import hashlib, io, os, sys, warnings
    warnings.simplefilter("error")
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import font_manager
    mode, decoy = sys.argv[1], sys.argv[2]
    fm = font_manager.fontManager
    def install_decoy():
        fm.addfont(decoy)
        fm.ttflist.insert(0, fm.ttflist.pop())   # system fonts come first in a cache file
        font_manager.FontManager._findfont_cached.cache_clear()
    if mode == "write-stale-cache":
        install_decoy()
        font_manager.json_dump(fm, os.path.join(
            matplotlib.get_cachedir(), f"fontlist-v{font_manager.FontManager.__version__}.json"))
        sys.exit(0)
    if mode == "stale":
        assert any(f.fname == decoy for f in fm.ttflist), "the stale cache was not read"
    import matplotlib.pyplot as plt
    from attnkit import i18n, viz
    if mode == "after":
        install_decoy()
    i18n.set_language("zh")
    fig, ax = plt.subplots(figsize=(3, 2))
    viz.attention_heatmap([[0.25, 0.75], [1.0, 0.0]], ["小猫", "垫子"], ["小猫", "垫子"],
                          ax=ax, title="注意力权重 −1.5")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    print("|".join(viz.font_files()))
    print(hashlib.sha256(buf.getvalue()).hexdigest())
""")


def _scenario(mode: str, decoy: str, cfg: str) -> tuple[list[str], str]:
    env = dict(os.environ, MPLCONFIGDIR=cfg)
    run = subprocess.run([sys.executable, "-c", SCENARIO, mode, decoy], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Glyph" not in run.stderr
    out = run.stdout.split()
    return (out[0].split("|"), out[1]) if out else ([], "")


def test_system_cjk_fonts_and_font_caches_cannot_change_a_figure(tmp_path):
    decoy_dir = tmp_path / "system-fonts"
    decoy_dir.mkdir()
    decoy = decoy_dir / "NotoSansCJK-Regular.otf"
    decoy.write_bytes(viz.FONT_PATH.read_bytes())
    results = {}
    for mode in ("fresh", "after", "stale"):
        cfg = tmp_path / f"mpl-{mode}"
        cfg.mkdir()
        if mode == "stale":
            _scenario("write-stale-cache", str(decoy), str(cfg))
        results[mode] = _scenario(mode, str(decoy), str(cfg))
    for mode, (files, _) in results.items():
        assert os.path.samefile(files[-1], viz.FONT_PATH), (mode, files)
        assert not any(os.path.exists(f) and os.path.samefile(f, decoy) for f in files), (mode, files)
    hashes = {mode: h for mode, (_, h) in results.items()}
    assert len(set(hashes.values())) == 1, hashes
    # and with the real system fonts of this machine (fonts-noto-cjk where the browser set-up
    # installed it), in a fresh cache
    files, h = _scenario("fresh", str(decoy), str(tmp_path / "mpl-system"))
    assert os.path.samefile(files[-1], viz.FONT_PATH) and h == hashes["fresh"], files


def test_every_character_of_the_chinese_catalog_is_in_the_font():
    import importlib
    import pkgutil

    import attnkit

    for mod in pkgutil.walk_packages(attnkit.__path__, "attnkit."):
        importlib.import_module(mod.name)
    cmap = TTFont(viz.FONT_PATH).getBestCmap()
    dejavu = TTFont(font_manager.findfont("DejaVu Sans")).getBestCmap()
    # exercise and question feedback ("ex.*", "q.*") is printed, never drawn: its emoji need no font of ours
    text = "".join(v["zh"] for k, v in i18n.catalog().items() if not k.startswith(("ex.", "q.")))
    missing = sorted({ch for ch in text if ord(ch) not in cmap and ord(ch) not in dejavu and not ch.isspace()})
    assert not missing, f"characters no bundled font can draw: {missing}"


def test_drawing_chinese_labels_warns_about_no_glyph():
    i18n.set_language("zh")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ax = viz.attention_heatmap([[0.5, 0.5], [1.0, 0.0]], ["小猫", "垫子"], ["小猫", "垫子"], title="注意力权重")
            viz.figure_png(ax.figure)
            plt.close(ax.figure)
    finally:
        i18n.set_language("en")
