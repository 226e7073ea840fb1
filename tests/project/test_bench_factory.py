"""figures/bench_factory.json, which chapter 11 plots: it is what benchmarks/bench_factory.py writes
(the script run in miniature writes the same layout), its summaries are its runs', it covers the
script's grid, every run's state is the closed form of its layers, and the chapter's live race
agrees with the file (same settings, same seed: the same accuracy, to the two decimals the chapter
prints, whatever the load: the file records the load of every run)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_factory as bf  # noqa: E402

from attnkit import mqar  # noqa: E402

DATA = json.loads(bf.OUT.read_text())
SCRIPT = ".venv/bin/python benchmarks/bench_factory.py"


def _miniature(monkeypatch, mechanisms=("softmax", "linear", "based")):
    """The script's race at 2 steps of batch 4, one tiny point; the profile at full and one other only."""
    monkeypatch.setattr(bf, "TASK", bf.TASK | {"batch": 4, "vocab_size": 16})
    monkeypatch.setattr(bf, "LIVE", bf.LIVE | {"steps": 2, "batch": 4, "seq_len": 16, "width": 16, "num_pairs": 2,
                                              "vocab_size": 16})
    monkeypatch.setattr(bf, "POINTS", ((16, 16, 2, 2),))
    monkeypatch.setattr(bf, "MECHANISMS", {m: bf.MECHANISMS[m] for m in mechanisms})


def test_committed_file_has_the_scripts_layout():
    bf.validate(DATA)
    for part in ("race", "profile"):
        assert SCRIPT in DATA[part]["command"]
        assert DATA[part]["seconds"] is not None  # the part ran to its end
    assert "--part race" in DATA["race"]["command"] and DATA["race"]["machine"]["loadavg_at_end"]


def test_the_script_in_miniature_writes_the_same_layout(tmp_path, monkeypatch):
    _miniature(monkeypatch)
    real = bf.profile_configs
    monkeypatch.setattr(bf, "profile_configs", lambda n: {k: v for k, v in real(n).items() if k in ("full", "linear")})
    out = tmp_path / "bench.json"
    bf.main(["--seeds", "0", "--workers", "1", "--lengths", "64", "--iterations", "1", "--force", "--out", str(out)])
    small = json.loads(out.read_text())
    bf.validate(small)
    assert small.keys() == DATA.keys()
    for part in ("race", "profile"):
        assert small[part].keys() - {"kept_from"} == DATA[part].keys() - {"kept_from"}
    assert small["race"]["settings"].keys() == DATA["race"]["settings"].keys()
    for where in ("runs", "live_runs", "summary"):
        assert small["race"][where][0].keys() == DATA["race"][where][0].keys()
    measured = [r for r in DATA["profile"]["rows"] if "skipped" not in r]
    assert small["profile"]["rows"][0].keys() == measured[0].keys()
    assert len(small["race"]["runs"]) == 3 and len(small["race"]["live_runs"]) == 2  # 3 mechanisms x 1 point x 1 seed


def test_resume_keeps_the_runs_it_has_and_trains_the_rest(tmp_path, monkeypatch):
    _miniature(monkeypatch, ("softmax", "linear"))
    out = tmp_path / "bench.json"
    bf.main(["--part", "race", "--seeds", "0", "--workers", "1", "--out", str(out)])
    first = json.loads(out.read_text())["race"]
    bf.main(["--part", "race", "--seeds", "0", "1", "--workers", "1", "--resume", "--out", str(out)])
    second = json.loads(out.read_text())["race"]
    def order(runs):
        return sorted(runs, key=lambda r: (r["mechanism"], r["seed"]))

    assert order(r for r in second["runs"] if r["seed"] == 0) == order(first["runs"])  # kept, seconds included
    assert sorted((r["mechanism"], r["seed"]) for r in second["runs"]) == [("linear", 0), ("linear", 1),
                                                                            ("softmax", 0), ("softmax", 1)]
    assert second["live_runs"] == first["live_runs"] and second["kept_from"] == [first["command"]]


def test_writing_one_section_keeps_the_other_as_it_is_on_disk(tmp_path):
    """The race runs for an hour while a profile run may rewrite the file: each writes its own section only."""
    out = tmp_path / "bench.json"
    out.write_text(json.dumps(DATA))
    stale = json.loads(json.dumps(DATA))
    stale["profile"]["rows"] = stale["profile"]["rows"][:1]   # what this process read long ago
    stale["race"]["runs"] = stale["race"]["runs"][:2]         # its new race section
    bf.write(stale, out, "race")
    now = json.loads(out.read_text())
    assert now["profile"] == DATA["profile"] and now["race"]["runs"] == DATA["race"]["runs"][:2]


def _closed_form_state(mechanism: str, L: int, d: int, task: dict) -> int:
    """Bytes of state of the two layers and their convolutions, from the formulas of chapters 05, 08, 09
    and of the recurrences (not through decode_state_bytes)."""
    conv = (task["conv_kernel"] - 1) * d
    per_layer = {"full": 2 * L * d, "local": 2 * min(L, task["window_size"]) * d, "linear": d * (d + 1),
                 "retnet": d * d, "gla": d * d, "deltanet": d * d, "gated_deltanet": d * d}
    spec = task["mechanisms"][mechanism]
    if isinstance(spec, str):
        return 4 * task["layers"] * (per_layer[spec] + conv)
    window, taylor = spec  # Based: a window layer, then Taylor features of heads of 16: (1 + 16 + 256) x (16 + 1) each
    assert window == {"attention_type": "local"} and taylor["feature_map"] == "taylor"
    heads, dh = d // taylor["head_dim"], taylor["head_dim"]
    return 4 * (per_layer["local"] + conv + heads * (1 + dh + dh * dh) * (dh + 1) + conv)


def test_summaries_are_the_runs_and_cover_the_grid():
    race = DATA["race"]
    s = race["settings"]
    assert len(s["seeds"]) >= 3
    keys = {(r["mechanism"], r["seq_len"], r["width"], r["num_pairs"], r["steps"], r["seed"]) for r in race["runs"]}
    grid = {(m, *p, seed) for m in s["mechanisms"] for p in s["points"] for seed in s["seeds"]}
    assert keys == grid and len(race["runs"]) == len(grid)
    assert {(r["mechanism"], r["seed"]) for r in race["live_runs"]} == {(m, 0) for m in s["live"]["mechanisms"]}
    assert len(race["summary"]) == len(s["mechanisms"]) * len(s["points"])
    for row in race["summary"]:
        key = ("mechanism", "seq_len", "width", "num_pairs", "steps")
        acc = [r["accuracy"] for r in race["runs"] if all(r[k] == row[k] for k in key)]
        assert row["median"] == statistics.median(acc) and row["min"] == min(acc) and row["max"] == max(acc)
    task = s["task"] | {"mechanisms": s["mechanisms"]}
    for r in race["runs"]:
        assert r["state_bytes"] == _closed_form_state(r["mechanism"], r["seq_len"], r["width"], task), r
    for L, w, _, _ in s["points"]:  # the sweep's lengths: the KV cache several times the linear state
        assert 2 * L * w >= 3.9 * w * (w + 1)


def test_profile_covers_every_mechanism_and_length():
    from attnkit.factory import AttentionFactory

    prof = DATA["profile"]
    seen = {(r["attention_type"], r["seq_len"]) for r in prof["rows"]}
    assert seen == {(k, n) for k in AttentionFactory.available() for n in prof["lengths"]}
    assert prof["lengths"][0] <= 512 and prof["lengths"][-1] >= 8192
    for r in prof["rows"]:
        if "skipped" in r:
            assert r["skipped"]  # a reason
        else:
            assert r["tokens_per_s"] == pytest.approx(prof["settings"]["batch_size"] * r["seq_len"]
                                                      / (r["avg_latency_ms"] / 1e3))


def test_the_live_race_agrees_with_the_file():
    """The chapter's live race: the same call, here; the same accuracy as the file's run (trained by the
    script beside the sweep, under the load it records: recall does not depend on the load)."""
    s = DATA["race"]["settings"]
    task = {k: v for k, v in s["live"].items() if k != "mechanisms"}
    r = mqar.train_mqar(s["mechanisms"]["linear"], seed=0, **task)
    (stored,) = [x for x in DATA["race"]["live_runs"] if x["mechanism"] == "linear"]
    assert abs(round(r["accuracy"], 2) - round(stored["accuracy"], 2)) <= 0.01
    assert r["state_bytes"] == stored["state_bytes"]


def test_resume_with_mechanisms_adds_profile_rows_and_keeps_the_rest(tmp_path, monkeypatch):
    """``--part profile --mechanisms ... --resume``: the other mechanisms' rows and the race section stay as they
    were, the rows of the named ones are measured anew, and the earlier run's stamp is kept beside them."""
    _miniature(monkeypatch, ("softmax", "linear"))
    real = bf.profile_configs
    monkeypatch.setattr(bf, "profile_configs", lambda n: {k: v for k, v in real(n).items() if k in ("full", "retnet")})
    out = tmp_path / "bench.json"
    common = ["--lengths", "32", "64", "--iterations", "1", "--force", "--out", str(out)]
    bf.main(["--seeds", "0", "--workers", "1"] + common)
    first = json.loads(out.read_text())
    bf.main(["--part", "profile", "--mechanisms", "retnet", "--resume"] + common)
    second = json.loads(out.read_text())
    bf.validate(second)
    assert second["race"] == first["race"]
    assert [r for r in second["profile"]["rows"] if r["attention_type"] == "full"] == \
        [r for r in first["profile"]["rows"] if r["attention_type"] == "full"]
    assert sorted((r["attention_type"], r["seq_len"]) for r in second["profile"]["rows"]) == \
        sorted((k, n) for k in ("full", "retnet") for n in (32, 64))
    assert "--mechanisms retnet" in second["profile"]["command"]
    (kept,) = second["profile"]["kept_from"]
    assert kept["mechanisms"] == ["full"] and kept["command"] == first["profile"]["command"]
    assert kept["date"] == first["profile"]["date"] and kept["machine"] == first["profile"]["machine"]
    with pytest.raises(SystemExit):  # an unknown name: argparse's error, naming --mechanisms
        bf.main(["--part", "profile", "--mechanisms", "nope"] + common)


def test_the_profile_refuses_a_busy_machine_without_force_and_stores_the_spread(tmp_path, monkeypatch, capsys):
    """Above a load average of 1.0 at the start the profile does not run (timings would measure the
    other work too) unless --force; a run stores the median and the quartiles of its rounds."""
    real = bf.profile_configs
    monkeypatch.setattr(bf, "profile_configs", lambda n: {k: v for k, v in real(n).items() if k == "full"})
    out = tmp_path / "bench.json"
    args = ["--part", "profile", "--lengths", "32", "--iterations", "5", "--out", str(out)]
    monkeypatch.setattr(bf, "loadavg", lambda: [2.5, 1.0, 0.5])
    with pytest.raises(SystemExit):
        bf.main(args)
    assert "--force" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(bf, "loadavg", lambda: [0.4, 0.3, 0.2])
    bf.main(args)
    (row,) = json.loads(out.read_text())["profile"]["rows"]
    assert row["min_latency_ms"] <= row["q1_latency_ms"] <= row["median_latency_ms"] <= row["q3_latency_ms"] \
        <= row["max_latency_ms"]
