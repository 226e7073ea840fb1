"""The checks of one notebook in JupyterLab (used by test_lab.py through conftest.py).

The course in a real browser: JupyterLab in headless Chromium, both languages.

For every built chapter notebook (found by glob, so new chapters are covered as they land):
English notebooks in the English interface, Chinese notebooks in the Chinese interface
(zh-CN language pack, selected by pre-seeded settings). Each test opens a copy of the notebook
(outputs stripped, so everything on screen comes from this run), waits for the kernel to be
idle, runs all cells from the Run menu, and asserts:

- the interface is in the expected language (menu labels);
- every code cell ran, and no cell has an error output (in the page and in the saved copy);
- every widget cell of the notebook shows a rendered widget with visible controls and an image;
- moving each slider (keyboard on its handle) changes the image of its widget (PNG bytes);
- the Chinese notebook's headings, widget labels and figure titles are Chinese, drawn without
  missing glyphs (the English ones contain no Chinese).

A screenshot of each notebook after Run All goes to tests/browser/screenshots/.
"""


from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
from labserver import PROBE_MARK, SCREENSHOTS, built_notebooks, make_copy, record_screenshot

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# ui language -> (notebook language, File menu label, Run menu label)
UI = {"en": ("en", "File", "Run"), "zh": ("zh", "文件", "运行")}
# the kernel status word of the status bar ("Python 3 (ipykernel) | Idle")
IDLE_WORD = {"en": "Idle", "zh": "空闲"}



def cases() -> list[tuple[str, Path]]:
    """(interface language, notebook): English notebooks in the English UI, Chinese in Chinese."""
    return [(ui, nb) for ui in UI for nb in built_notebooks(UI[ui][0])]

RUN_TIMEOUT_S = 420  # a chapter runs in under 30 s on 2 cores; this is for a loaded machine

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
WIDGET_OUT = ".jp-OutputArea-output:has(> .jupyter-widgets)"
CELL_OF_OUTPUT = "xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell ')]"  # ipywidgets sets no data-mime-type

JS_STATE = """() => {
  const nb = document.querySelector('%s .jp-Notebook');
  if (!nb) return null;
  const ind = document.querySelector('%s .jp-Notebook-ExecutionIndicator');
  const cells = [...nb.querySelectorAll('.jp-Cell')];
  return {
    status: ind ? ind.getAttribute('data-status') : null,
    n_cells: cells.length,
    prompts: cells.filter(c => c.classList.contains('jp-CodeCell')).map(c => {
      const p = c.querySelector('.jp-InputArea-prompt');
      return p ? p.textContent.trim() : '';
    }),
  };
}""" % (NOTEBOOK, NOTEBOOK)

JS_OUTPUTS = """() => {
  const nb = document.querySelector('%s .jp-Notebook');
  const cells = [...nb.querySelectorAll('.jp-Cell')];
  return cells.map((c, i) => ({
    index: i,
    code: c.classList.contains('jp-CodeCell'),
    stderr: [...c.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
              .map(o => o.textContent),
    widgets: c.querySelectorAll('%s').length,
    text: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
    headings: [...c.querySelectorAll('.jp-MarkdownOutput h1, .jp-MarkdownOutput h2')]
              .map(h => h.textContent.replace(/\\u00b6/g, '').trim()),
  }));
}""" % (NOTEBOOK, WIDGET_OUT)

# PNG bytes of the first <img> in a widget output -> "length:FNV-1a hash" (blob or data URL)
JS_IMAGE_HASH = """async (out) => {
  const img = out.querySelector('img');
  if (!img || !img.src) return null;
  const r = await fetch(img.src);
  const b = new Uint8Array(await r.arrayBuffer());
  let h = 2166136261;
  for (let i = 0; i < b.length; i++) { h ^= b[i]; h = Math.imul(h, 16777619); }
  return b.length + ':' + (h >>> 0).toString(16);
}"""

# Latency of a redraw as the reader sees it: from the moment a control is moved (the clock
# starts here, right before the key press or the selection) to the moment the widget's new
# image is decoded and ready to paint (a MutationObserver sees its src change).
JS_WATCH_IMAGE = """(out) => {
  if (window.__attnkitWatch) window.__attnkitWatch.obs.disconnect();
  const img = out.querySelector('img');
  const w = {t0: performance.now(), src: img ? img.src : null, ms: null};
  w.obs = new MutationObserver(() => {
    const now = out.querySelector('img');
    if (!now || now.src === w.src || w.ms !== null || w.pending) return;
    w.pending = true;
    now.decode().catch(() => {}).then(() => { w.ms = performance.now() - w.t0; w.obs.disconnect(); });
  });
  w.obs.observe(out, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
  window.__attnkitWatch = w;
}"""
JS_LATENCY = "() => window.__attnkitWatch ? window.__attnkitWatch.ms : null"

ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt)\b", re.M)


def _wait(page, fn, what: str, timeout: float, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        page.wait_for_timeout(interval * 1000)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last state: {last!r}")


def _error_texts(page) -> list[tuple[int, str]]:
    """(cell index, end of the traceback) of each error shown in the notebook."""
    try:
        cells = page.evaluate(JS_OUTPUTS)
    except Exception as e:
        return [(-1, f"(could not read the page: {e})")]
    return [(c["index"], s[-1500:]) for c in cells for s in c["stderr"] if ERROR_LINE.search(s)]


def _menu(page, top_label: str, command: str, tries: int = 10):
    """Open a top menu by its label and click the item selected by its data-command.

    The item is disabled (and a click on it does nothing) until the notebook is the current
    widget: wait for it to be enabled, reopening the menu."""
    for _attempt in range(tries):
        page.locator(".lm-MenuBar-item", has_text=top_label).first.click()
        item = page.locator(f'.lm-Menu-item[data-command="{command}"]').first
        item.wait_for(state="visible", timeout=15_000)
        label = item.locator(".lm-Menu-itemLabel").inner_text()
        if "lm-mod-disabled" not in (item.get_attribute("class") or ""):
            item.click()
            return label
        page.keyboard.press("Escape")
        page.wait_for_timeout(1000)
    raise AssertionError(f"menu item {command} stayed disabled ({tries} tries)")


def _image_hash(page, out):
    for _ in range(5):  # the blob URL may be revoked by a redraw between reading and fetching
        try:
            return out.evaluate(JS_IMAGE_HASH)
        except Exception:
            page.wait_for_timeout(200)
    return out.evaluate(JS_IMAGE_HASH)


def _move_slider(page, out, k: int) -> str:
    """Move slider k of a widget output with the keyboard (End, or Home if already at the end);
    return a description of the move."""
    slider = out.locator(".widget-slider").nth(k)
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = handle.get_attribute("aria-valuenow")
    handle.focus()
    out.evaluate(JS_WATCH_IMAGE)
    page.keyboard.press("End")
    page.wait_for_timeout(100)
    after = handle.get_attribute("aria-valuenow")
    if after == before:
        out.evaluate(JS_WATCH_IMAGE)
        page.keyboard.press("Home")
        page.wait_for_timeout(100)
        after = handle.get_attribute("aria-valuenow")
    label = slider.locator(".widget-label").first.inner_text() if slider.locator(
        ".widget-label").count() else f"slider {k}"
    assert after != before, f"slider {label!r} did not move with End/Home (value {before})"
    return f"{label}: {before} -> {after}"


def _change_dropdown(page, out) -> str:
    sel = out.locator(".widget-dropdown select").first
    sel.scroll_into_view_if_needed()
    options = sel.locator("option").evaluate_all("os => os.map(o => o.value)")
    current = sel.input_value()
    other = next(v for v in options if v != current)
    sel.select_option(other)
    return f"dropdown: {current} -> {other}"


def _kernel_ready(page, lab, rel: str, ui: str) -> bool:
    """The kernel is really there and idle: the toolbar indicator, the status bar (in the UI's
    language) and the server's session for this notebook (idle, with the page connected) agree.
    The toolbar alone reads idle while the status bar still says "No Kernel | Initializing";
    Run All then runs into a kernel that is not there yet (a "Select Kernel" dialog, or every
    cell after the first going back to [ ])."""
    s = page.evaluate(JS_STATE) or {}
    if s.get("status") != "idle":
        return False
    bar = " ".join(page.locator("#jp-main-statusbar").all_inner_texts())
    if f"| {IDLE_WORD[ui]}" not in bar:
        return False
    try:
        sessions = lab.api("GET", "/api/sessions") or []
    except Exception:
        return False
    return any(x.get("path") == rel and x.get("kernel")
               and x["kernel"].get("execution_state") == "idle"
               and x["kernel"].get("connections", 0) >= 1 for x in sessions)


def _wait_kernel_ready(page, lab, rel: str, ui: str, timeout: float = 180) -> None:
    streak = {"n": 0}

    def ready():
        streak["n"] = streak["n"] + 1 if _kernel_ready(page, lab, rel, ui) else 0
        return streak["n"] >= 3  # the same for three polls in a row

    try:
        _wait(page, ready, "the kernel to be idle (toolbar, status bar and server agree)", timeout,
              interval=0.3)
    except AssertionError as e:  # a kernel that died at start: say why, from JupyterLab's own log
        raise AssertionError(f"{e}\nJupyterLab's log ends:\n{lab.log_tail()}") from None


def _dismiss_dialogs(page, log) -> None:
    """A dialog blocks the menus; it should not be there: log what it says, then accept it."""
    for dialog in page.locator(".jp-Dialog").all():
        log(f"[browser] unexpected dialog: {dialog.inner_text()!r}; accepting it")
        dialog.locator(".jp-mod-accept").first.click()


def _run_all(page, run_label: str, log) -> str:
    """Run > Run All Cells, again until a prompt shows the cells queued; return its label."""
    for attempt in range(3):
        _dismiss_dialogs(page, log)
        label = _menu(page, run_label, "runmenu:run-all")
        try:  # a prompt shows [*] as soon as its cell is queued: was Run All taken?
            _wait(page, lambda: any("*" in p for p in page.evaluate(JS_STATE)["prompts"]),
                  "Run All to queue the cells", 20, interval=0.1)
            return label
        except AssertionError:
            if attempt == 2:
                raise
            log(f"[browser] Run All was not taken (try {attempt + 1}); again")
    raise AssertionError("unreachable")


def _wait_for_run_all(page, lab, rel: str, n_code: int, t_run: float) -> None:
    """Until every code cell is numbered and the kernel idle; fail at once if Run All stops."""
    last_state: dict = {}
    history: list = []  # (seconds after Run All, kernel status) at each change
    stalled = {"since": None}

    def finished():
        s = page.evaluate(JS_STATE) or {}
        last_state.update(s)
        if not history or history[-1][1] != s.get("status"):
            history.append((round(time.monotonic() - t_run, 1), s.get("status")))
        prompts = s.get("prompts") or []
        if (s.get("status") == "idle" and len(prompts) == n_code
                and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)):
            return s
        # Run All stops at a cell that raises: the rest go back to [ ]. Say so at once.
        if s.get("status") == "idle" and not any("*" in p for p in prompts):
            stalled["since"] = stalled["since"] or time.monotonic()
            if time.monotonic() - stalled["since"] > 5:
                errors = _error_texts(page)
                dialogs = page.locator(".jp-Dialog").all_inner_texts()
                raise AssertionError(
                    f"Run All stopped in {rel}: prompts {prompts}; error outputs: {errors}; "
                    f"dialogs: {dialogs}; kernel status history {history}; "
                    f"Lab's log ends:\n{lab.log_tail(2500)}")
        else:
            stalled["since"] = None
        return None

    try:
        _wait(page, finished, "Run All to finish", RUN_TIMEOUT_S)
    except AssertionError as e:
        if "Run All stopped" in str(e):
            raise
        raise AssertionError(
            f"Run All did not finish in {RUN_TIMEOUT_S} s (every code cell numbered, kernel "
            f"idle): kernel {last_state.get('status')}, prompts {last_state.get('prompts')}; "
            f"error outputs: {_error_texts(page)}") from None


def new_context(browser, ui: str):
    """One browser context per interface language, shared by its notebooks: JupyterLab's
    scripts come from the HTTP cache after the first notebook instead of being fetched and
    compiled again for each one."""
    return browser.new_context(viewport={"width": 1280, "height": 900},
                               locale="zh-CN" if ui == "zh" else "en-US")


JS_OPEN = """async (path) => {
  const app = window.jupyterapp;
  for (const w of Array.from(app.shell.widgets('main'))) w.dispose();  // no save dialog
  await app.commands.execute('docmanager:open', {path});
}"""


def _page(context, lab, rel: str, reuse: dict):
    """The page showing notebook `rel`: the page of the previous notebook when there is one
    (its notebook closed, the new one opened from the application: JupyterLab loads once per
    interface language), else a new page of `context` on a workspace of its own."""
    page = reuse.get("page")
    if page is not None and not page.is_closed():
        reuse["errors"].clear()
        page.evaluate(JS_OPEN, rel)
        return page
    page = context.new_page()
    page.set_default_timeout(60_000)
    reuse.update(page=page, errors=[])
    page.on("pageerror", lambda e: reuse["errors"].append(str(e)))
    # a workspace of its own: nothing else is restored, no other kernel starts
    page.goto(f"{lab.url}/lab/workspaces/t{time.monotonic_ns()}/tree/{rel}")
    return page


def check_notebook(context, lab, ui: str, source: Path, log=print, reuse: dict | None = None) -> dict:
    """Open a copy of `source` in `lab` (interface language `ui`) in a page of `context`,
    Run All, check it; raise AssertionError on the first thing that is wrong. `log` receives
    progress lines. `reuse` (a dict kept by the caller) carries the page from one notebook to
    the next; a failure closes it. Returns the measured slider latencies (ms), by control."""
    lang, file_label, run_label = UI[ui]
    rel = f"{lang}/{source.name}"
    copy = lab.root / rel
    info = make_copy(source, copy)
    latencies: dict[str, float] = {}
    reuse = {} if reuse is None else reuse
    t0 = time.monotonic()
    timings = {}
    page = _page(context, lab, rel, reuse)
    page_errors = reuse["errors"]
    ok = False
    try:
        page.locator(f"{NOTEBOOK} .jp-Notebook").wait_for(timeout=120_000)
        timings["page"] = time.monotonic() - t0
        lab.remember_children()

        # --- the interface language
        first_menu = page.locator(".lm-MenuBar-item").first.inner_text().strip()
        assert first_menu == file_label, f"File menu reads {first_menu!r}, expected {file_label!r}"

        # --- kernel idle, then Run All (from the menu, by data-command)
        _wait_kernel_ready(page, lab, rel, ui)
        timings["open"] = time.monotonic() - t0
        _dismiss_dialogs(page, log)
        # make the notebook the current widget (Run All acts on the current notebook)
        page.locator(f"{NOTEBOOK} .jp-Cell .jp-InputPrompt").first.click()
        run_all_label, t_run = _run_all(page, run_label, log), time.monotonic()
        _wait_for_run_all(page, lab, rel, info["code_cells"], t_run)
        if ui == "zh":
            assert CJK.search(run_all_label), f"Run All reads {run_all_label!r} in the Chinese UI"
        else:
            assert not CJK.search(run_all_label), f"Run All reads {run_all_label!r}"
        timings["run_all"] = time.monotonic() - t_run

        # --- save the copy from the browser and read it back: error outputs, execution counts
        t_save = time.monotonic()
        _menu(page, file_label, "docmanager:save")

        def saved():
            try:
                nb = nbformat.read(copy, as_version=4)
            except Exception:
                return None
            ok = all(c.execution_count for c in nb.cells if c.cell_type == "code")
            return nb if ok else None

        nb = _wait(page, saved, "the notebook to be saved with every cell executed", 60)
        timings["save"] = time.monotonic() - t_save
        file_errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
                       if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not file_errors, f"error outputs in {rel}: {file_errors}"

        cells = page.evaluate(JS_OUTPUTS)
        assert len(cells) == info["n_cells"], "the page shows a different number of cells"
        dom_errors = _error_texts(page)
        assert not dom_errors, f"error output shown in {rel}: {dom_errors}"

        # --- the probe cell: what the explorers' figures say
        probe_text = cells[info["probe_index"]]["text"]
        assert PROBE_MARK in probe_text, f"probe cell printed nothing useful: {probe_text!r}"
        probe = json.loads(probe_text.split(PROBE_MARK, 1)[1].strip().splitlines()[0])

        # --- every widget cell rendered: controls visible, an image with data
        shown = [c["index"] for c in cells if c["widgets"]]
        assert shown == info["widget_cells"], (
            f"widgets shown in cells {shown}, but the built notebook has widget cells "
            f"{info['widget_cells']}")
        outs = page.locator(f"{NOTEBOOK} {WIDGET_OUT}")
        n_out = outs.count()
        assert n_out >= len(info["widget_cells"])
        moves = []
        t_w = time.monotonic()
        for j in range(n_out):
            out = outs.nth(j)
            out.scroll_into_view_if_needed()
            controls = out.locator(".widget-inline-hbox, .widget-button")
            assert controls.count() >= 1, f"widget {j} in {rel} shows no controls: {out.inner_text()!r}"
            for k in range(controls.count()):
                assert controls.nth(k).is_visible(), f"control {k} of widget {j} is not visible"
            img = out.locator("img").first
            img.wait_for(state="visible", timeout=30_000)
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), f"widget {j}: empty image"
            labels = [s.strip() for s in out.locator(".widget-label").all_inner_texts() if s.strip()]
            if lang == "zh":
                if not any(CJK.search(s) for s in labels):
                    cell = out.locator(CELL_OF_OUTPUT).first.inner_text()[:300]
                    raise AssertionError(f"widget {j} labels not Chinese: {labels}; it shows "
                                         f"{out.inner_text()[:300]!r}, in the cell {cell!r}")
            else:
                assert not any(CJK.search(s) for s in labels), f"widget {j} labels: {labels}"

            # --- moving each slider changes the picture (no slider: a dropdown)
            n_sliders = out.locator(".widget-slider").count()
            steps = range(n_sliders) if n_sliders else [None]
            for k in steps:
                before = _image_hash(page, out)
                if k is None:
                    assert out.locator(".widget-dropdown select").count(), (
                        f"widget {j} has neither a slider nor a dropdown to move")
                    out.evaluate(JS_WATCH_IMAGE)
                    what = _change_dropdown(page, out)
                else:
                    what = _move_slider(page, out, k)
                _wait(page, lambda out=out, before=before: _image_hash(page, out) not in (None, before),
                      f"widget {j} ({what}) to redraw its image", 30, interval=0.05)
                ms = _wait(page, lambda: page.evaluate(JS_LATENCY), "the new image to be decoded",
                           10, interval=0.05)
                latencies[f"widget {j}: {what}"] = ms
                moves.append(f"widget {j}: {what} ({ms:.0f} ms to the new image)")
        timings["widgets"] = time.monotonic() - t_w

        # --- language of headings and figures
        headings = [h for c in cells for h in c["headings"]]
        assert headings, f"{rel} has no h1/h2 heading"
        explorers = probe["explorers"]
        assert len(explorers) >= len(info["widget_cells"]), probe
        titles = [s for e in explorers for s in e["titles"]]
        if lang == "zh":
            # a heading may be a bare technical term ("03 · Softmax"), not English prose
            bad = [h for h in headings if not CJK.search(h) and len(LATIN_WORD.findall(h)) >= 3]
            assert not bad, f"headings in English in {rel}: {bad}"
            chinese = [h for h in headings if CJK.search(h)]
            assert len(chinese) * 2 >= len(headings), (
                f"most headings of {rel} are not Chinese: {headings}")
            for e in explorers:
                assert any(CJK.search(s) for s in e["titles"]), f"figure titles not Chinese: {e}"
            glyphs = sorted({g for e in explorers for g in e["glyph_warnings"]})
            glyphs += sorted({m for c in cells for s in c["stderr"]
                              for m in re.findall(r"Glyph \d+ .*? missing from font\(s\) [^.\n]*", s)})
            assert not glyphs, f"Chinese drawn with missing glyphs (boxes) in {rel}: {glyphs[:5]}"
        else:
            bad = [h for h in headings if CJK.search(h)] + [s for s in titles if CJK.search(s)]
            assert not bad, f"Chinese text in the English notebook {rel}: {bad}"

        ok = True
        log(f"\n[browser] {ui}-ui {rel}: {len(cells)} cells, {len(shown)} widget cells, "
              f"moves: {moves}; timings " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    finally:
        try:
            if not page.is_closed():
                shot = SCREENSHOTS / f"{ui}-ui_{lang}_{source.stem}.png"
                t_shot = time.monotonic()
                for each in _screenshot(page, shot):
                    record_screenshot(each)
                log(f"[browser] screenshot ({time.monotonic() - t_shot:.1f} s): {shot}")
        except Exception as e:  # a screenshot must never hide the real failure
            log(f"[browser] no screenshot: {e}")
        if page_errors:
            log(f"[browser] page errors: {page_errors[:5]}")
        t_close = time.monotonic()
        if not ok or "page" not in reuse:
            page.close()
            reuse.pop("page", None)
        lab.shutdown_kernels()
        log(f"[browser] closing took {time.monotonic() - t_close:.1f} s")
        log(f"[browser] {ui}-ui {rel}: {time.monotonic() - t0:.1f} s in all")
    return latencies


def _screenshot(page, path: Path) -> list[Path]:
    """One screen (1280 x 900) showing the first widget after Run All (its controls, image and
    labels), or the top of the notebook when it has none, and one screen showing the first
    exercise feedback (its ✅ ❌ ⏳ drawn with the emoji font): what a reader sees, in small PNGs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    widget = page.locator(f"{NOTEBOOK} {WIDGET_OUT}").first
    if widget.count():
        widget.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    shots = [path]
    feedback = page.locator(f"{NOTEBOOK} .jp-OutputArea-output", has_text="⏳").first
    if feedback.count():
        feedback.scroll_into_view_if_needed()
        page.wait_for_timeout(700)  # the windowed notebook draws the cells it scrolled to
        feedback.scroll_into_view_if_needed()
        shots.append(path.with_name(path.stem + "_exercise.png"))
        page.screenshot(path=str(shots[-1]))
    return shots
