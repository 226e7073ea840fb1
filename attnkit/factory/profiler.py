"""AttentionProfiler: latency, peak memory and tokens per second of mechanisms, measured round-robin."""

from __future__ import annotations

import contextlib
import statistics

import torch
from torch import nn

from attnkit.factory.config import AttentionConfig, _positive_int, canonical_name
from attnkit.factory.costs import MB, memory_breakdown
from attnkit.factory.mixers import AttentionFactory
from attnkit.memory import peak_bytes


def _profile_config(item, seq_len: int, d_model: int, n_heads: int) -> AttentionConfig:
    if isinstance(item, AttentionConfig):
        return item
    name = canonical_name(item)
    opts = {"max_seq_len": seq_len} if name in ("linformer", "cosformer") else {}
    return AttentionConfig(attention_type=item, d_model=d_model, n_heads=n_heads, **opts)


class AttentionProfiler:
    """Latency (mean, std, median and quartiles over iterations), peak memory and tokens/s, measured.

    Timing: ``attnkit.timing.round_robin_times`` (warm-up calls excluded; several mechanisms
    timed in turn), on one thread on CPU unless ``single_thread=False``; on CUDA each call ends
    with ``torch.cuda.synchronize``. Memory: one more call, measured apart from the timing by
    ``attnkit.memory.peak_bytes`` (on CPU the peak of torch's allocator through ``torch.profiler``,
    on CUDA ``torch.cuda.max_memory_allocated`` minus what was allocated before): the extra
    memory of a call beyond the parameters and the input, in MB (2**20 bytes).
    """

    @staticmethod
    def profile_attention(attention_type, batch_size: int, seq_len: int, num_iterations: int,
                          d_model: int = 512, n_heads: int = 8, warmup: int = 3, config: AttentionConfig | None = None,
                          backward: bool = False, device="cpu", single_thread: bool = True) -> dict:
        """One mechanism (by name, or ``config``): a dict with avg_latency_ms, std_latency_ms,
        median_latency_ms and the spread of the rounds (min_latency_ms, q1_latency_ms,
        q3_latency_ms, max_latency_ms: quartiles by ``statistics.quantiles``, inclusive), memory_mb,
        tokens_per_s = batch_size * seq_len / avg_latency_ms, formula_mb
        (the formula's activations and scores, ``memory_breakdown`` without the parameters), and
        the settings."""
        item = config if config is not None else attention_type
        res = AttentionProfiler.profile_many([item], batch_size, seq_len, num_iterations, d_model, n_heads,
                                             warmup, backward, device, single_thread)
        return next(iter(res.values()))

    @staticmethod
    def profile_many(items, batch_size: int, seq_len: int, num_iterations: int, d_model: int = 512,
                     n_heads: int = 8, warmup: int = 3, backward: bool = False, device="cpu",
                     single_thread: bool = True) -> dict:
        """``{name: profile}`` for a list of names or configs (or a dict name -> config), timed
        round-robin: one call of each in turn, ``num_iterations`` rounds after ``warmup`` rounds."""
        from attnkit.timing import one_thread, round_robin_times

        for name, value, minimum in (("batch_size", batch_size, 1), ("seq_len", seq_len, 1),
                                     ("num_iterations", num_iterations, 1), ("warmup", warmup, 0)):
            _positive_int(name, value, allow_none=False, minimum=minimum)
        named = items if isinstance(items, dict) else None
        if named is None:
            if isinstance(items, (str, AttentionConfig)) or not items:
                raise TypeError(f"items must be a non-empty list of names or AttentionConfigs, got {items!r}")
            named = {}
            for it in items:
                cfg = _profile_config(it, seq_len, d_model, n_heads)
                key = it if isinstance(it, str) else cfg.attention_type
                while key in named:
                    key += "'"
                named[key] = cfg
        device = torch.device(device)
        cfgs = {k: _profile_config(c, seq_len, d_model, n_heads) for k, c in named.items()}
        gen = torch.Generator().manual_seed(0)
        steps, setups = {}, {}
        for key, cfg in cfgs.items():
            module = AttentionFactory.create_attention(cfg).to(device)
            module.train(backward)
            x = torch.randn(batch_size, seq_len, cfg.d_model, generator=gen).to(device)
            steps[key] = _make_step(module, x, backward, device)
            setups[key] = (module, x)
        use_one = single_thread and device.type == "cpu"
        if use_one:
            with one_thread():
                times = round_robin_times(steps, repeats=num_iterations, warmup=warmup)
        else:
            times = round_robin_times(steps, repeats=num_iterations, warmup=warmup)
        out = {}
        for key, cfg in cfgs.items():
            step = steps[key]
            with one_thread() if use_one else contextlib.nullcontext():
                peak = peak_bytes(step, device)
            method = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "torch.profiler(profile_memory=True)"
            ms = [s * 1e3 for s in times[key]]
            avg = statistics.fmean(ms)
            q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0],) * 3
            formula = memory_breakdown(cfg, seq_len, batch_size, 4, "training" if backward else "forward")
            out[key] = {
                "attention_type": cfg.attention_type, "avg_latency_ms": avg,
                "std_latency_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
                "median_latency_ms": statistics.median(ms), "min_latency_ms": min(ms), "q1_latency_ms": q1,
                "q3_latency_ms": q3, "max_latency_ms": max(ms), "memory_mb": peak / MB,
                "tokens_per_s": batch_size * seq_len / (avg / 1e3),
                "formula_mb": (formula["total"] - formula["params"]) / MB,
                "batch_size": batch_size, "seq_len": seq_len, "num_iterations": num_iterations,
                "warmup": warmup, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "causal": cfg.causal,
                "backward": backward, "device": str(device), "threads": 1 if use_one else torch.get_num_threads(),
                "memory_method": method,
            }
        return out


def _make_step(module: nn.Module, x: torch.Tensor, backward: bool, device):
    sync = device.type == "cuda"

    def step():
        if backward:
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()
        else:
            with torch.no_grad():
                module(x)
        if sync:
            torch.cuda.synchronize(device)

    return step
