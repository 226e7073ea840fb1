"""Chapter 11's full sweep, which the notebook cannot afford live: the MQAR race and the profiler table.

    nice .venv/bin/python benchmarks/bench_factory.py                 # everything, writes figures/bench_factory.json
    .venv/bin/python benchmarks/bench_factory.py --part race --seeds 0 1 2
    .venv/bin/python benchmarks/bench_factory.py --part profile --lengths 512 1024
    .venv/bin/python benchmarks/bench_factory.py --part profile --mechanisms retnet gla --resume   # add two

**The race** (multi-query associative recall, ``attnkit.mqar``; Arora et al. 2023): a 2-layer
``attnkit.factory.TinyLM`` per mechanism -- softmax (``full``), a causal sliding window of 8
(``local``), linear attention (elu+1), cosFormer, and a mixed stack (window then linear, a
Based-like hybrid) -- each layer a short causal convolution and the mixer, no MLP, one head,
AdamW, one thread, fresh seeded batches per step (``attnkit.mqar.train_mqar``). Accuracy at
the query positions of a held-out batch, against the width (at the chapter's number of pairs)
and against the number of pairs (at the chapter's width), for several seeds and two learning
rates (``LRS``; as in Zoology, each setting is reported at the learning rate with the best mean:
one rate does not suit every width); printed as mean and spread (min-max) per mechanism, with
the state a layer keeps to predict the next token
(``attnkit.mqar.decode_state_bytes``: the KV cache of softmax attention, the fixed-size state of
linear attention). The chapter's live race is one point of this grid (``SHARED``), at the same
seed: a test retrains it and compares with the file.

**The profiler table**: ``AttentionProfiler.profile_many`` (round-robin, one thread, warm-up
excluded) for every mechanism of ``AttentionFactory.available()`` at N = 512 .. 8192, batch 1,
d_model 256, 4 heads, forward only, non-causal; peak memory measured the same way for every
mechanism (torch.profiler's allocator events) beside the selector's formula. A mechanism whose
formula memory at N is above ``--mem-limit-mb``, or whose last call took more than
``--max-call-s`` (so the next, longer N would take about four times as long), is skipped at
that N with the reason printed and stored. The causal-only mechanisms (``CAUSAL_ONLY``: the
recurrences with forgetting) are profiled causal. ``--mechanisms`` profiles some of them only;
with ``--resume``, the rows of the other mechanisms are kept from the existing file (same settings
and lengths only) and its profile stamp goes to ``kept_from``: those rows were timed in another
run, on another load.

The results, with the command and the machine, go to ``figures/bench_factory.json`` (rewritten
after every run, so an interrupted sweep keeps what it measured); chapter 11 loads and plots it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path

import torch
from timing import one_thread, round_robin_times

from attnkit.factory import (
    CAUSAL_ONLY,
    AttentionConfig,
    AttentionFactory,
    AttentionProfiler,
    memory_breakdown,
)
from attnkit.mqar import chance_accuracy, train_mqar

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "figures" / "bench_factory.json"
FORMAT = "attnkit.bench_factory/1"

# the race: one name per mechanism, its layers (one entry per layer, or one name for both)
MECHANISMS = {"softmax": "full", "window": "local", "linear": "linear", "cosformer": "cosformer",
              "window+linear": ["local", "linear"]}
# the task and the training budget of every run; the chapter's live race is SHARED
TASK = {"vocab_size": 32, "seq_len": 32, "steps": 150, "batch": 32, "lr": 3e-3, "layers": 2, "n_heads": 1,
        "window_size": 8, "conv_kernel": 4}
SHARED = {"width": 64, "num_pairs": 8}
WIDTHS = (32, 64, 128)
PAIRS = (4, 8)
LRS = (1e-3, 3e-3)  # as Zoology does, each setting is reported at its best learning rate (TASK's lr is one of them)
# the profiler table
LENGTHS = (512, 1024, 2048, 4096, 8192)
PROFILE = {"batch_size": 1, "d_model": 256, "n_heads": 4, "causal": False, "backward": False}

RACE_KEYS = ("mechanism", "types", "width", "num_pairs", "seed", "lr", "accuracy", "final_loss", "state_bytes",
             "params", "seconds")
PROFILE_KEYS = ("attention_type", "seq_len", "avg_latency_ms", "std_latency_ms", "median_latency_ms", "memory_mb",
                "formula_mb", "tokens_per_s")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": 1, "loadavg_at_start": load}


def race_settings() -> dict:
    """The grid: (width, num_pairs) points, every mechanism at each."""
    points = [(w, SHARED["num_pairs"]) for w in WIDTHS] + [(SHARED["width"], k) for k in PAIRS
                                                           if k != SHARED["num_pairs"]]
    return {"task": dict(TASK), "shared": dict(SHARED), "widths": list(WIDTHS), "pairs": list(PAIRS), "lrs": list(LRS),
            "points": [list(p) for p in points], "mechanisms": {k: v for k, v in MECHANISMS.items()},
            "chance": chance_accuracy(TASK["vocab_size"])}


def race_run(mechanism: str, width: int, num_pairs: int, seed: int, lr: float = TASK["lr"]) -> dict:
    """One model of the race, as a row of the data file."""
    r = train_mqar(MECHANISMS[mechanism], width=width, num_pairs=num_pairs, seed=seed, **(TASK | {"lr": lr}))
    return {"mechanism": mechanism, "types": r["settings"]["types"], "width": width, "num_pairs": num_pairs,
            "seed": seed, "lr": lr, "accuracy": r["accuracy"], "final_loss": r["losses"][-1], "state_bytes": r["state_bytes"],
            "params": r["params"], "seconds": r["seconds"]}


def summarize(runs: list[dict]) -> list[dict]:
    """Mean, min and max accuracy over the seeds of each (mechanism, width, num_pairs, lr)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["mechanism"], r["width"], r["num_pairs"], r["lr"]), []).append(r)
    out = []
    for (mech, width, pairs, lr), rs in groups.items():
        acc = [r["accuracy"] for r in rs]
        out.append({"mechanism": mech, "width": width, "num_pairs": pairs, "lr": lr, "seeds": [r["seed"] for r in rs],
                    "mean": statistics.fmean(acc), "min": min(acc), "max": max(acc),
                    "state_bytes": rs[0]["state_bytes"], "seconds": statistics.fmean(r["seconds"] for r in rs)})
    return out


def best_lr(summary: list[dict]) -> list[dict]:
    """Per (mechanism, width, num_pairs), the summary row of the learning rate with the best mean."""
    best: dict[tuple, dict] = {}
    for s in summary:
        key = (s["mechanism"], s["width"], s["num_pairs"])
        if key not in best or s["mean"] > best[key]["mean"]:
            best[key] = s
    return list(best.values())


def profile_configs(n: int) -> dict:
    """name -> AttentionConfig of every mechanism, with the table's settings, at length n."""
    out = {}
    for name in AttentionFactory.available():
        opts = {"max_seq_len": n} if name in ("linformer", "cosformer") else {}
        out[name] = AttentionConfig(attention_type=name, d_model=PROFILE["d_model"], n_heads=PROFILE["n_heads"],
                                    causal=PROFILE["causal"] or name in CAUSAL_ONLY, **opts)  # recurrences: causal only
    return out


def formula_mb(cfg: AttentionConfig, n: int) -> float:
    b = memory_breakdown(cfg, n, PROFILE["batch_size"], 4, "forward")
    return (b["total"] - b["params"]) / 2**20


def validate(data: dict) -> None:
    """Raise ValueError unless ``data`` has the layout this script writes (the chapter and a test rely on it)."""
    def need(obj, keys, where):
        missing = [k for k in keys if k not in obj]
        if missing:
            raise ValueError(f"{where} lacks {missing}")

    need(data, ("format", "race", "profile"), "the data file")
    if data["format"] != FORMAT:
        raise ValueError(f"format must be {FORMAT!r}, got {data['format']!r}")
    for part in ("race", "profile"):
        need(data[part], ("command", "machine", "date", "seconds"), part)
        need(data[part]["machine"], ("cpu", "cores", "torch", "threads"), f"{part}.machine")
    need(data["race"], ("settings", "runs", "summary", "best"), "race")
    need(data["race"]["settings"], ("task", "shared", "widths", "pairs", "lrs", "mechanisms", "chance"),
         "race.settings")
    for i, r in enumerate(data["race"]["runs"]):
        need(r, RACE_KEYS, f"race.runs[{i}]")
        if not 0.0 <= r["accuracy"] <= 1.0:
            raise ValueError(f"race.runs[{i}].accuracy must be in [0, 1], got {r['accuracy']}")
    need(data["profile"], ("settings", "lengths", "rows"), "profile")
    for i, r in enumerate(data["profile"]["rows"]):
        need(r, ("attention_type", "seq_len"), f"profile.rows[{i}]")
        if "skipped" not in r:
            need(r, PROFILE_KEYS, f"profile.rows[{i}]")


def write(data: dict, path: Path) -> None:
    validate(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def print_race(summary: list[dict], chance: float) -> None:
    print(f"\nrecall accuracy at the queries (mean over seeds, [min, max]) at the best learning rate of each "
          f"setting; chance {chance:.3f}")
    points = sorted({(s["width"], s["num_pairs"]) for s in summary})
    print(f"{'mechanism':<15}" + "".join(f"{f'w={w}, K={k}':>22}" for w, k in points))
    by = {(s["mechanism"], s["width"], s["num_pairs"]): s for s in summary}
    for mech in MECHANISMS:
        cells = []
        for w, k in points:
            s = by.get((mech, w, k))
            cells.append(f"{s['mean']:.2f} [{s['min']:.2f}, {s['max']:.2f}] {s['lr']:g}" if s else "-")
        print(f"{mech:<15}" + "".join(f"{c:>28}" for c in cells))


def run_race(data: dict, seeds, path: Path, done: list[dict] = ()) -> None:
    """Train every (setting, mechanism, seed) of the grid; ``done``: rows of an earlier run of the
    same task (``--resume``), kept instead of retrained."""
    settings = data["race"]["settings"]
    todo = [(w, k, m, s, lr) for lr in settings["lrs"] for s in seeds for (w, k) in settings["points"]
            for m in MECHANISMS]
    kept = {(r["width"], r["num_pairs"], r["mechanism"], r["seed"], r.get("lr", TASK["lr"])): r | {"lr": r.get("lr", TASK["lr"])}
            for r in done}
    print(f"race: {len(todo)} models ({len(MECHANISMS)} mechanisms x {len(settings['points'])} settings x "
          f"{len(seeds)} seeds x {len(settings['lrs'])} learning rates), task {settings['task']}", flush=True)
    for i, (w, k, m, s, lr) in enumerate(todo, 1):
        row = kept.get((w, k, m, s, lr)) or race_run(m, w, k, s, lr)
        data["race"]["runs"].append(row)
        data["race"]["summary"] = summarize(data["race"]["runs"])
        data["race"]["best"] = best_lr(data["race"]["summary"])
        write(data, path)
        print(f"  [{i}/{len(todo)}] {m:<14} width {w:>3} pairs {k} seed {s} lr {lr:g}: accuracy {row['accuracy']:.3f}, "
              f"state {row['state_bytes']:,} B, {row['seconds']:.1f} s", flush=True)
    print_race(data["race"]["best"], settings["chance"])


def run_profile(data: dict, lengths, iterations: int, mem_limit_mb: float, max_call_s: float, path: Path,
                mechanisms=None) -> None:
    rows = data["profile"]["rows"]
    slow: dict[str, str] = {}  # mechanism -> why it is skipped from now on
    print(f"\nprofiler: {PROFILE}, {iterations} rounds after 1 warm-up round, lengths {list(lengths)}", flush=True)
    for n in lengths:
        cfgs = {k: c for k, c in profile_configs(n).items() if mechanisms is None or k in mechanisms}
        run = {}
        for name, cfg in cfgs.items():
            need = formula_mb(cfg, n)
            if name in slow:
                reason = slow[name]
            elif need > mem_limit_mb:
                reason = f"formula memory {need:.0f} MB > --mem-limit-mb {mem_limit_mb:g}"
            else:
                run[name] = cfg
                continue
            rows.append({"attention_type": name, "seq_len": n, "skipped": reason, "formula_mb": need})
            print(f"  N = {n}: {name} skipped: {reason}", flush=True)
        if run:
            res = AttentionProfiler.profile_many(run, PROFILE["batch_size"], n, iterations, warmup=1,
                                                 backward=PROFILE["backward"])
            for name, r in res.items():
                rows.append({k: r[k] for k in PROFILE_KEYS} | {"attention_type": name})
                if r["median_latency_ms"] / 1e3 > max_call_s:
                    slow[name] = (f"one call took {r['median_latency_ms'] / 1e3:.1f} s at N = {n} > --max-call-s "
                                  f"{max_call_s:g} (about 4x per doubling of N for the quadratic ones)")
        write(data, path)
        print(f"  N = {n}: {len(run)} mechanisms profiled", flush=True)
    print_profile(rows, lengths)


def print_profile(rows, lengths) -> None:
    by = {(r["attention_type"], r["seq_len"]): r for r in rows}
    names = list(dict.fromkeys(r["attention_type"] for r in rows))
    for title, key, fmt in (("latency (ms, mean over rounds)", "avg_latency_ms", ".2f"),
                            ("peak memory measured (MB)", "memory_mb", ".1f"),
                            ("memory by the selector's formula (MB)", "formula_mb", ".1f"),
                            ("tokens / s", "tokens_per_s", ",.0f")):
        print(f"\n{title}")
        print(f"{'mechanism':<14}" + "".join(f"{n:>12}" for n in lengths))
        for name in names:
            cells = []
            for n in lengths:
                r = by.get((name, n))
                v = None if r is None or ("skipped" in r and key != "formula_mb") else r.get(key)
                cells.append(f"{'skipped' if v is None else format(v, fmt):>12}")
            print(f"{name:<14}" + "".join(cells))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "race", "profile"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--mem-limit-mb", type=float, default=6000.0)
    p.add_argument("--max-call-s", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--mechanisms", nargs="+", default=None, metavar="NAME",
                   help="profile these mechanisms only (names of AttentionFactory.available())")
    p.add_argument("--resume", action="store_true",
                   help="keep the race runs of the existing file that have the same task and mechanisms, and its "
                        "profile rows of the mechanisms not profiled now if the profile settings and lengths are the same")
    args = p.parse_args(argv)
    unknown = sorted(set(args.mechanisms or ()) - set(AttentionFactory.available()))
    if unknown:
        p.error(f"--mechanisms: unknown {unknown}; expected names of {AttentionFactory.available()}")
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = "nice .venv/bin/python benchmarks/bench_factory.py" + ("" if not argv_used else " " + shlex.join(argv_used))
    old = json.loads(args.out.read_text()) if args.out.exists() else None
    stamp = {"command": command, "machine": machine(),
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": None}
    data = {"format": FORMAT,
            "race": stamp | {"settings": race_settings(), "runs": [], "summary": [], "best": []},
            "profile": stamp | {"settings": dict(PROFILE) | {"iterations": args.iterations, "warmup": 1,
                                                            "mem_limit_mb": args.mem_limit_mb,
                                                            "max_call_s": args.max_call_s},
                                "lengths": list(args.lengths), "rows": []}}
    if old is not None and old.get("format") == FORMAT and args.part != "all":  # keep the part not rerun
        keep = "profile" if args.part == "race" else "race"
        data[keep] = old[keep]
    print(f"{stamp['machine']}\n{command}", flush=True)
    done = []
    if args.resume and old is not None and old.get("format") == FORMAT and args.part != "profile":
        same = all(old["race"]["settings"][k] == data["race"]["settings"][k] for k in ("task", "mechanisms"))
        done = old["race"]["runs"] if same else []
        print(f"--resume: {len(done)} runs of {args.out} kept" if same else "--resume: another task, nothing kept")
        if same:  # say where the kept runs came from (a fresh run of the same grid gives the same numbers)
            data["race"]["kept_from"] = [old["race"]["command"]] + old["race"].get("kept_from", [])
    if args.resume and args.mechanisms and old is not None and old.get("format") == FORMAT and args.part != "race":
        same = all(old["profile"][k] == data["profile"][k] for k in ("settings", "lengths"))
        kept = [r for r in old["profile"]["rows"] if r["attention_type"] not in args.mechanisms] if same else []
        print(f"--resume: {len(kept)} profile rows of {args.out} kept" if same
              else "--resume: other profile settings or lengths, no profile row kept")
        if same:  # timings depend on the machine and its load: keep the whole stamp of the run that made them
            data["profile"]["rows"] = kept
            older = old["profile"].get("kept_from", [])  # each: a stamp and the mechanisms it measured
            by_older = {m for st in older for m in st["mechanisms"]}
            stamp_old = {k: old["profile"][k] for k in ("command", "machine", "date", "seconds")}
            data["profile"]["kept_from"] = [stamp_old | {"mechanisms": [m for m in dict.fromkeys(
                r["attention_type"] for r in kept) if m not in by_older]}] + older
    parts = {"race": lambda: run_race(data, args.seeds, args.out, done),
             "profile": lambda: run_profile(data, args.lengths, args.iterations, args.mem_limit_mb, args.max_call_s,
                                            args.out, args.mechanisms)}
    for part, run in parts.items():
        if args.part in ("all", part):
            with one_thread():
                data[part]["seconds"] = round_robin_times({part: run}, repeats=1, warmup=0)[part][0]
            write(data, args.out)
            print(f"\n{part}: {data[part]['seconds'] / 60:.1f} min; wrote {args.out}", flush=True)

if __name__ == "__main__":
    main()
