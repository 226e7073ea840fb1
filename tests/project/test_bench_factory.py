"""figures/bench_factory.json, which chapter 11 plots: it is what benchmarks/bench_factory.py writes
(the script run in miniature writes the same layout), its summaries are its runs', it covers the
script's grid, and the chapter's live race agrees with it at the shared setting (same settings,
same seed: the same accuracy, to the two decimals the chapter prints)."""

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


def test_committed_file_has_the_scripts_layout():
    bf.validate(DATA)
    for part in ("race", "profile"):
        assert DATA[part]["command"].startswith("nice .venv/bin/python benchmarks/bench_factory.py")
        assert DATA[part]["seconds"] is not None  # the part ran to its end


def test_the_script_in_miniature_writes_the_same_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(bf, "TASK", bf.TASK | {"steps": 2, "batch": 4, "vocab_size": 16, "seq_len": 16})
    monkeypatch.setattr(bf, "SHARED", {"width": 16, "num_pairs": 2})
    monkeypatch.setattr(bf, "WIDTHS", (16,))
    monkeypatch.setattr(bf, "PAIRS", (2, 3))
    monkeypatch.setattr(bf, "LRS", (3e-3,))
    monkeypatch.setattr(bf, "MECHANISMS", {"softmax": "full", "window+linear": ["local", "linear"]})
    real = bf.profile_configs
    monkeypatch.setattr(bf, "profile_configs", lambda n: {k: v for k, v in real(n).items() if k in ("full", "linear")})
    out = tmp_path / "bench.json"
    bf.main(["--seeds", "0", "--lengths", "64", "--iterations", "1", "--out", str(out)])
    small = json.loads(out.read_text())
    bf.validate(small)
    assert small.keys() == DATA.keys()
    for part in ("race", "profile"):
        assert small[part].keys() - {"kept_from"} == DATA[part].keys() - {"kept_from"}
    assert small["race"]["runs"][0].keys() == DATA["race"]["runs"][0].keys()
    assert small["race"]["best"][0].keys() == DATA["race"]["best"][0].keys()
    measured = [r for r in DATA["profile"]["rows"] if "skipped" not in r]
    assert small["profile"]["rows"][0].keys() == measured[0].keys()
    assert len(small["race"]["runs"]) == 2 * 2  # 2 mechanisms x 2 points x 1 seed x 1 lr


def test_summaries_are_the_runs_and_cover_the_grid():
    race = DATA["race"]
    s = race["settings"]
    seeds = sorted({r["seed"] for r in race["runs"]})
    assert len(seeds) >= 3
    keys = {(r["mechanism"], r["width"], r["num_pairs"], r["seed"], r["lr"]) for r in race["runs"]}
    grid = {(m, w, k, seed, lr) for m in s["mechanisms"] for w, k in s["points"] for seed in seeds for lr in s["lrs"]}
    assert keys == grid and len(race["runs"]) == len(grid)
    assert [s["shared"]["width"], s["shared"]["num_pairs"]] in s["points"] and s["task"]["lr"] in s["lrs"]
    for row in race["summary"]:
        acc = [r["accuracy"] for r in race["runs"] if (r["mechanism"], r["width"], r["num_pairs"], r["lr"])
               == (row["mechanism"], row["width"], row["num_pairs"], row["lr"])]
        assert row["mean"] == pytest.approx(statistics.fmean(acc)) and row["min"] == min(acc) and row["max"] == max(acc)
    for row in race["best"]:
        same = [x["mean"] for x in race["summary"] if (x["mechanism"], x["width"], x["num_pairs"])
                == (row["mechanism"], row["width"], row["num_pairs"])]
        assert row["mean"] == max(same)
    # every run's state is the formula's, for its layers at the task's length
    for r in race["runs"][:10]:
        assert r["state_bytes"] > 0 and r["types"] == (s["mechanisms"][r["mechanism"]] if isinstance(
            s["mechanisms"][r["mechanism"]], list) else [s["mechanisms"][r["mechanism"]]] * s["task"]["layers"])


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


@pytest.mark.parametrize("mechanism", ["softmax", "linear"])
def test_the_live_race_agrees_with_the_file(mechanism):
    """The chapter's live race: the same call, here; the same accuracy as the file's run."""
    s = DATA["race"]["settings"]
    task, shared = s["task"], s["shared"]
    r = mqar.train_mqar(s["mechanisms"][mechanism], width=shared["width"], num_pairs=shared["num_pairs"], seed=0,
                        **task)
    stored = [x for x in DATA["race"]["runs"] if x["mechanism"] == mechanism and x["seed"] == 0
              and x["lr"] == task["lr"] and x["width"] == shared["width"] and x["num_pairs"] == shared["num_pairs"]]
    assert len(stored) == 1
    assert abs(round(r["accuracy"], 2) - round(stored[0]["accuracy"], 2)) <= 0.01
    assert r["state_bytes"] == stored[0]["state_bytes"]


def test_resume_with_mechanisms_adds_profile_rows_and_keeps_the_rest(tmp_path, monkeypatch):
    """``--part profile --mechanisms ... --resume``: the other mechanisms' rows and the race section stay as they
    were, the rows of the named ones are measured anew, and the earlier run's stamp is kept beside them."""
    monkeypatch.setattr(bf, "TASK", bf.TASK | {"steps": 2, "batch": 4, "vocab_size": 16, "seq_len": 16})
    monkeypatch.setattr(bf, "SHARED", {"width": 16, "num_pairs": 2})
    monkeypatch.setattr(bf, "WIDTHS", (16,))
    monkeypatch.setattr(bf, "PAIRS", (2,))
    monkeypatch.setattr(bf, "LRS", (3e-3,))
    monkeypatch.setattr(bf, "MECHANISMS", {"softmax": "full"})
    real = bf.profile_configs
    monkeypatch.setattr(bf, "profile_configs", lambda n: {k: v for k, v in real(n).items() if k in ("full", "retnet")})
    out = tmp_path / "bench.json"
    common = ["--lengths", "32", "64", "--iterations", "1", "--out", str(out)]
    bf.main(["--seeds", "0"] + common)
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
