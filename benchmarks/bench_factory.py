"""Chapter 11's full sweep, which the notebook cannot afford live: the MQAR race and the profiler table.

    nice .venv/bin/python benchmarks/bench_factory.py                 # everything, writes figures/bench_factory.json
    .venv/bin/python benchmarks/bench_factory.py --part race          # the sweep: about an hour on 2 workers
    .venv/bin/python benchmarks/bench_factory.py --part race --resume # after an interruption
    .venv/bin/python benchmarks/bench_factory.py --part profile --lengths 512 1024
    .venv/bin/python benchmarks/bench_factory.py --part profile --mechanisms retnet gla --resume   # add two

**The race** (multi-query associative recall, ``attnkit.mqar``; Arora et al. 2023): a 2-layer
``attnkit.factory.TinyLM`` per mechanism (``MECHANISMS``: softmax ``full``, a causal window of 16
``local``, linear attention (elu+1), Based's hybrid -- a window layer under a linear layer with
the Taylor feature map on heads of 16 dimensions (Arora et al. 2024; their window of 64 at length
2,048 scaled to 16 at 128, no MLP, no gated convolutions) -- and the linear attentions with
forgetting ``retnet``, ``gla``, ``deltanet``, ``gated_deltanet``), each layer a short causal
convolution of kernel 3 and the mixer, no MLP, one head, AdamW, one thread, fresh seeded batches
per step (``attnkit.mqar.train_mqar``). The grid (``POINTS``): length 128 at widths 32 and 64,
where a layer's KV cache 2Ld is 7.8x and 3.9x the linear state d(d + 1), with 8 pairs in a
vocabulary of 64 and 600 steps of batch 32 at lr 3e-3 for every model (softmax solved both by
about step 300 with seed 0), and width 32 with 16 pairs and 1,000 steps (softmax's loss jumped
at about step 500 with seed 0, linear attention's had not left chance at 600); three seeds (``SEEDS``). Stored: every run
(recall at the query positions of a held-out batch, the load average when it ended), the median,
min and max over the seeds, the state a model keeps to predict the next token
(``attnkit.mqar.decode_state_bytes``), the budget (``BUDGET_MIN`` on ``WORKERS`` spawned processes
of one thread; an estimate from quiet-machine step times, ``STEP_S``) and the command and machine,
with the load average at the start and the end. Models run seed by seed (an interrupted sweep
keeps whole seeds; ``--resume`` keeps the runs of the file with the same task and trains the rest).
Recall does not depend on the load: a run is a seeded function of its settings on one thread.
The chapter's live race (``LIVE``: softmax and linear at length 32, where the two states are
about the same size) is trained here too, at seed 0; a test retrains it and compares.

**The profiler table**: ``AttentionProfiler.profile_many`` (round-robin, one thread, warm-up
excluded) for every mechanism of ``AttentionFactory.available()`` at N = 512 .. 8192, batch 1,
d_model 256, 4 heads, forward only, non-causal; peak memory measured the same way for every
mechanism (torch.profiler's allocator events) beside the selector's formula. Latency: the median
of ``--iterations`` rounds (15 by default), with the quartiles and extremes stored as its spread.
The 1-minute load average is recorded at the start and at the end; above 1.0 at the start the
profile refuses to run unless ``--force`` (timings taken beside other work measure that work too).
How long: about (rounds + 4.5) x S, S the sum of one call of every mechanism at every length (the
warm-up round, the memory measurement and building the modules make the 4.5, measured on a 1-round
run); S is about 33 s on a quiet 2-core machine (one-thread CPU times of single calls; math at
N = 8192 alone 5 s), so ``--part profile`` with its 15 rounds takes about 11 minutes there. A
1-round run at load 9-13 took 11.9 minutes (S = 128 s, four calls skipped). A mechanism whose
formula memory at N is above ``--mem-limit-mb``, or whose last call took more than
``--max-call-s`` (so the next, longer N would take about four times as long), is skipped at
that N with the reason printed and stored. The causal-only mechanisms (``CAUSAL_ONLY``: the
recurrences with forgetting) are profiled causal. ``--mechanisms`` profiles some of them only;
with ``--resume``, the rows of the other mechanisms are kept from the existing file (same settings
and lengths only) and its profile stamp goes to ``kept_from``: those rows were timed in another
run, on another load.

The results, with the command and the machine, go to ``figures/bench_factory.json`` (rewritten
after every run, so an interrupted sweep keeps what it measured; each part rewrites its own
section and keeps the other as it is in the file); chapter 11 loads and plots it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fcntl
import json
import multiprocessing
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

# the race's sweep: mechanism -> its layers, one name for both layers or one spec per layer (a name, or a
# dict: attention_type, its options, and head_dim, which sets n_heads = width // head_dim for that layer)
MECHANISMS = {"softmax": "full", "window": "local", "linear": "linear",
              "based": [{"attention_type": "local"},
                        {"attention_type": "linear", "feature_map": "taylor", "head_dim": 16}],
              "retnet": "retnet", "gla": "gla", "deltanet": "deltanet", "gated_deltanet": "gated_deltanet"}
# the task of every model of the sweep; POINTS: (seq_len, width, num_pairs, steps), every mechanism at each
TASK = {"vocab_size": 64, "batch": 32, "lr": 3e-3, "layers": 2, "n_heads": 1, "window_size": 16, "conv_kernel": 3}
POINTS = ((128, 32, 8, 600), (128, 64, 8, 600), (128, 32, 16, 1000))  # 16 pairs: softmax jumped at ~500 steps
SEEDS = (0, 1, 2)
WORKERS = 2
BUDGET_MIN = 70  # the sweep's wall-time budget on WORKERS one-thread processes, minutes
# quiet-machine seconds per training step at (128, 64), one thread (a 40-60 step run each): the estimate
STEP_S = {"softmax": 0.075, "window": 0.05, "linear": 0.057, "based": 0.11, "retnet": 0.06, "gla": 0.22,
          "deltanet": 0.1, "gated_deltanet": 0.115}
# the chapter's live race: two mechanisms at a short length, where the KV cache (2 L d) and the linear
# state (d (d + 1)) are about the same size; trained by this script too (seed 0), a test retrains it
LIVE = {"mechanisms": ["softmax", "linear"], "vocab_size": 32, "seq_len": 32, "num_pairs": 8, "width": 64,
        "steps": 150, "batch": 32, "lr": 3e-3, "layers": 2, "n_heads": 1, "window_size": 8, "conv_kernel": 4}
SOLVED = 0.9  # a setting is solved when the median recall over the seeds reaches this
# the profiler table
LENGTHS = (512, 1024, 2048, 4096, 8192)
PROFILE = {"batch_size": 1, "d_model": 256, "n_heads": 4, "causal": False, "backward": False}

RACE_KEYS = ("mechanism", "types", "seq_len", "width", "num_pairs", "seed", "lr", "steps", "accuracy", "final_loss",
             "state_bytes", "params", "seconds", "loadavg")
PROFILE_KEYS = ("attention_type", "seq_len", "avg_latency_ms", "std_latency_ms", "median_latency_ms", "memory_mb",
                "formula_mb", "tokens_per_s")
SPREAD_KEYS = ("min_latency_ms", "q1_latency_ms", "q3_latency_ms", "max_latency_ms")  # the rounds' spread, stored
MAX_LOAD = 1.0  # the profile refuses to start above this 1-minute load average unless --force
ROUNDS = 15  # timed rounds per mechanism and length (medians and quartiles over them)


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


TRAIN_KEYS = ("vocab_size", "batch", "lr", "layers", "n_heads", "window_size", "conv_kernel")


def race_settings(seeds=SEEDS, workers: int = WORKERS) -> dict:
    """The sweep's grid, its budget and the live race's task, as stored in the data file."""
    models = len(MECHANISMS) * len(POINTS) * len(seeds)
    step_s = sum(STEP_S[m] * (L / 128) * (w / 64 if m == "softmax" else 1)  # rough: softmax grows with width
                 * steps for m in MECHANISMS for L, w, _, steps in POINTS) * len(seeds)
    return {"task": dict(TASK), "points": [list(p) for p in POINTS], "seeds": list(seeds),
            "mechanisms": dict(MECHANISMS), "chance": chance_accuracy(TASK["vocab_size"]), "solved": SOLVED,
            "budget": {"workers": workers, "threads_per_worker": 1, "models": models,
                       "quiet_estimate_min": round(step_s / workers / 60, 1), "limit_min": BUDGET_MIN,
                       "step_s_quiet": dict(STEP_S)},
            "live": dict(LIVE), "live_chance": chance_accuracy(LIVE["vocab_size"])}


def layer_configs(mechanism: str, width: int, seed: int, task: dict = TASK) -> list:
    """One AttentionConfig per layer of a mixed stack (a list in ``MECHANISMS``), with the task's options."""
    out = []
    for spec in MECHANISMS[mechanism]:
        spec = {"attention_type": spec} if isinstance(spec, str) else dict(spec)
        head_dim = spec.pop("head_dim", None)
        opts = {"n_heads": task["n_heads"] if head_dim is None else width // head_dim, "causal": True,
                "window_size": task["window_size"], "conv_kernel": task["conv_kernel"], "mlp_ratio": 0.0,
                "seed": seed}
        out.append(AttentionConfig(d_model=width, **(opts | spec)))
    return out


def race_run(mechanism: str, seq_len: int, width: int, num_pairs: int, steps: int, seed: int,
             task: dict = TASK) -> dict:
    """One model of the race, as a row of the data file. A mechanism that is one name is trained by the
    same call as the chapter's live race; a mixed stack through ``layer_configs``."""
    spec = MECHANISMS[mechanism]
    layers = spec if isinstance(spec, str) else layer_configs(mechanism, width, seed, task)
    r = train_mqar(layers, seq_len=seq_len, width=width, num_pairs=num_pairs, steps=steps, seed=seed,
                   **{k: task[k] for k in TRAIN_KEYS})
    return {"mechanism": mechanism, "types": r["settings"]["types"], "seq_len": seq_len, "width": width,
            "num_pairs": num_pairs, "seed": seed, "lr": task["lr"], "steps": steps,
            "accuracy": r["accuracy"], "final_loss": r["losses"][-1], "state_bytes": r["state_bytes"],
            "params": r["params"], "seconds": r["seconds"], "loadavg": loadavg()}


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def summarize(runs: list[dict]) -> list[dict]:
    """Median, min and max recall over the seeds of each (mechanism, seq_len, width, num_pairs, steps)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["mechanism"], r["seq_len"], r["width"], r["num_pairs"], r["steps"]), []).append(r)
    out = []
    for (mech, L, width, pairs, steps), rs in groups.items():
        acc = [r["accuracy"] for r in rs]
        out.append({"mechanism": mech, "seq_len": L, "width": width, "num_pairs": pairs, "steps": steps,
                    "seeds": sorted(r["seed"] for r in rs),
                    "median": statistics.median(acc), "min": min(acc), "max": max(acc),
                    "state_bytes": rs[0]["state_bytes"], "seconds": statistics.fmean(r["seconds"] for r in rs)})
    return out


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
    need(data["race"], ("settings", "runs", "summary", "live_runs"), "race")
    need(data["race"]["settings"], ("task", "points", "seeds", "mechanisms", "chance", "solved", "budget", "live"),
         "race.settings")
    for where in ("runs", "live_runs"):
        for i, r in enumerate(data["race"][where]):
            need(r, RACE_KEYS, f"race.{where}[{i}]")
            if not 0.0 <= r["accuracy"] <= 1.0:
                raise ValueError(f"race.{where}[{i}].accuracy must be in [0, 1], got {r['accuracy']}")
    need(data["profile"], ("settings", "lengths", "rows"), "profile")
    for i, r in enumerate(data["profile"]["rows"]):
        need(r, ("attention_type", "seq_len"), f"profile.rows[{i}]")
        if "skipped" not in r:
            need(r, PROFILE_KEYS, f"profile.rows[{i}]")


def write(data: dict, path: Path, part: str | None = None) -> None:
    """Write ``data``; with ``part`` ("race" or "profile") only that section: the other is taken from the file
    as it is now (another run of the script may have rewritten it meanwhile), under a lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if part is not None and path.exists():
            now = json.loads(path.read_text())
            if now.get("format") == FORMAT:
                data = {k: (data[k] if k == part else now.get(k, data[k])) for k in data}
        validate(data)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        tmp.replace(path)


def print_race(summary: list[dict], chance: float) -> None:
    print(f"\nrecall at the queries: median over the seeds [min, max], state bytes per model; chance {chance:.3f}")
    points = sorted({(s["seq_len"], s["width"], s["num_pairs"]) for s in summary})
    print(f"{'mechanism':<15}" + "".join(f"{f'L={L}, d={w}, K={k}':>34}" for L, w, k in points))
    by = {(s["mechanism"], s["seq_len"], s["width"], s["num_pairs"]): s for s in summary}
    for mech in MECHANISMS:
        cells = []
        for p in points:
            s = by.get((mech, *p))
            cells.append(f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}] {s['state_bytes']:>7,} B" if s else "-")
        print(f"{mech:<15}" + "".join(f"{c:>34}" for c in cells))


def _pool_map(jobs: list[tuple], workers: int):
    """Yield ``(job, race_run(*job))`` as they finish, on ``workers`` processes (spawned: one thread each)."""
    if workers == 1:
        for job in jobs:
            yield job, race_run(*job)
        return
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(race_run, *job): job for job in jobs}
        for f in concurrent.futures.as_completed(futures):
            yield futures[f], f.result()


def run_race(data: dict, path: Path, done: dict, workers: int) -> None:
    """Train the live race's models and every (seed, point, mechanism) of the sweep, ``workers`` at a time,
    writing the file after each; ``done``: rows of an earlier run of the same task (``--resume``), kept."""
    race, settings = data["race"], data["race"]["settings"]
    live = {k: v for k, v in settings["live"].items() if k != "mechanisms"}
    jobs = [(m, live["seq_len"], live["width"], live["num_pairs"], live["steps"], 0, live)
            for m in settings["live"]["mechanisms"]]
    # seed by seed (an interrupted sweep has whole seeds), the slowest models first within a seed
    sweep = sorted(((m, L, w, k, steps, s, settings["task"]) for s in settings["seeds"]
                    for L, w, k, steps in settings["points"] for m in settings["mechanisms"]),
                   key=lambda j: (j[5], -STEP_S[j[0]] * j[1] * j[4] * (j[2] if j[0] == "softmax" else 64)))
    jobs += sweep
    b = settings["budget"]
    print(f"race: {len(sweep)} models ({len(settings['mechanisms'])} mechanisms x {len(settings['points'])} points "
          f"(seq_len, width, pairs, steps) {settings['points']} x seeds {settings['seeds']}) + {len(jobs) - len(sweep)} of the "
          f"live race; task {settings['task']}; {workers} worker(s), one thread each; budget {b['limit_min']} min, "
          f"quiet-machine estimate {b['quiet_estimate_min']} min", flush=True)
    todo = []
    for job in jobs:
        where = "live_runs" if job[6] == live else "runs"
        row = done.get((where, *job[:6]))
        if row is None:
            todo.append(job)
        else:
            race[where].append(row)
    if len(todo) < len(jobs):
        print(f"--resume: {len(jobs) - len(todo)} models kept, {len(todo)} to train", flush=True)
    for i, (job, row) in enumerate(_pool_map(todo, workers), 1):
        race["live_runs" if job[6] == live else "runs"].append(row)
        race["summary"] = summarize(race["runs"])
        write(data, path, "race")
        print(f"  [{i}/{len(todo)}] {row['mechanism']:<15} L {row['seq_len']:>3} d {row['width']:>3} K {row['num_pairs']:>2} "
              f"seed {row['seed']}: "
              f"recall {row['accuracy']:.3f}, state {row['state_bytes']:,} B, {row['seconds']:.0f} s, "
              f"load {row['loadavg']}", flush=True)
    race["summary"] = summarize(race["runs"])
    print_race(race["summary"], settings["chance"])


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
                rows.append({k: r[k] for k in PROFILE_KEYS + SPREAD_KEYS} | {"attention_type": name})
                if r["median_latency_ms"] / 1e3 > max_call_s:
                    slow[name] = (f"one call took {r['median_latency_ms'] / 1e3:.1f} s at N = {n} > --max-call-s "
                                  f"{max_call_s:g} (about 4x per doubling of N for the quadratic ones)")
        write(data, path, "profile")
        print(f"  N = {n}: {len(run)} mechanisms profiled", flush=True)
    print_profile(rows, lengths)


def print_profile(rows, lengths) -> None:
    by = {(r["attention_type"], r["seq_len"]): r for r in rows}
    names = list(dict.fromkeys(r["attention_type"] for r in rows))
    for title, key, fmt in (("latency (ms, median over rounds)", "median_latency_ms", ".2f"),
                            ("spread of the rounds (interquartile range, % of the median)", "iqr_pct", ".0f"),
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
                if key == "iqr_pct" and r is not None and "q3_latency_ms" in r:
                    v = 100 * (r["q3_latency_ms"] - r["q1_latency_ms"]) / r["median_latency_ms"]
                cells.append(f"{'skipped' if v is None else format(v, fmt):>12}")
            print(f"{name:<14}" + "".join(cells))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("all", "race", "profile"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--workers", type=int, default=WORKERS, help="race: models trained at once (one thread each)")
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--iterations", type=int, default=ROUNDS, help="profile: timed rounds (medians over them)")
    p.add_argument("--force", action="store_true",
                   help=f"profile even when the 1-minute load average at the start is above {MAX_LOAD:g} (the "
                        "timings then reflect the load; the file records it)")
    p.add_argument("--mem-limit-mb", type=float, default=6000.0)
    p.add_argument("--max-call-s", type=float, default=4.0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--mechanisms", nargs="+", default=None, metavar="NAME",
                   help="profile these mechanisms only (names of AttentionFactory.available())")
    p.add_argument("--resume", action="store_true",
                   help="keep the race runs of the existing file that have the same task and mechanisms, and its "
                        "profile rows of the mechanisms not profiled now if the profile settings and lengths are the same")
    args = p.parse_args(argv)
    load = loadavg()
    if args.part in ("all", "profile") and not args.force and load is not None and load[0] > MAX_LOAD:
        p.error(f"the load average is {load} (1, 5, 15 min): above {MAX_LOAD:g}, the timings would measure the "
                "other processes too. Run it on a quiet machine, or pass --force to profile anyway (the file "
                "records the load)")
    unknown = sorted(set(args.mechanisms or ()) - set(AttentionFactory.available()))
    if unknown:
        p.error(f"--mechanisms: unknown {unknown}; expected names of {AttentionFactory.available()}")
    argv_used = sys.argv[1:] if argv is None else list(argv)
    niceness = os.nice(0)  # the priority it ran at, in the command that repeats it
    command = ((f"nice -n {niceness} " if niceness else "") + ".venv/bin/python benchmarks/bench_factory.py"
               + ("" if not argv_used else " " + shlex.join(argv_used)))
    old = json.loads(args.out.read_text()) if args.out.exists() else None
    stamp = {"command": command, "machine": machine(),
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seconds": None}
    data = {"format": FORMAT,
            "race": stamp | {"settings": race_settings(args.seeds, args.workers), "runs": [], "summary": [],
                             "live_runs": []},
            "profile": stamp | {"settings": dict(PROFILE) | {"iterations": args.iterations, "warmup": 1,
                                                            "mem_limit_mb": args.mem_limit_mb,
                                                            "max_call_s": args.max_call_s},
                                "lengths": list(args.lengths), "rows": []}}
    if old is not None and old.get("format") == FORMAT and args.part != "all":  # keep the part not rerun
        keep = "profile" if args.part == "race" else "race"
        data[keep] = old[keep]
    print(f"{stamp['machine']}\n{command}", flush=True)
    done = {}  # ("runs" or "live_runs", mechanism, seq_len, width, num_pairs, steps, seed) -> an earlier run's row
    if args.resume and old is not None and old.get("format") == FORMAT and args.part != "profile":
        def task(settings):  # the points carry num_pairs and steps (the first sweep's task had them)
            return {k: v for k, v in settings.get("task", {}).items() if k not in ("num_pairs", "steps")}

        same = task(old["race"]["settings"]) == task(data["race"]["settings"]) and all(
            old["race"]["settings"].get(k) == data["race"]["settings"][k] for k in ("mechanisms", "live"))
        done = {(where, r["mechanism"], r["seq_len"], r["width"], r["num_pairs"], r["steps"], r["seed"]): r
                for where in ("runs", "live_runs") for r in (old["race"].get(where, []) if same else [])}
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
    parts = {"race": lambda: run_race(data, args.out, done, args.workers),
             "profile": lambda: run_profile(data, args.lengths, args.iterations, args.mem_limit_mb, args.max_call_s,
                                            args.out, args.mechanisms)}
    for part, run in parts.items():
        if args.part in ("all", part):
            with one_thread():
                data[part]["seconds"] = round_robin_times({part: run}, repeats=1, warmup=0)[part][0]
            data[part]["machine"]["loadavg_at_end"] = loadavg()
            write(data, args.out, part)
            print(f"\n{part}: {data[part]['seconds'] / 60:.1f} min; wrote {args.out}", flush=True)

if __name__ == "__main__":
    main()
