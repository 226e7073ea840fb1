"""Values between the grader and a learner's kernel, in a format that cannot run code on loading.

The grader sends each exercise's cases to the learner's kernel and gets back only values: JSON,
with tensors as raw bytes (base64) plus dtype and shape, a model as its config and weights. No
pickle anywhere: :func:`decode` builds tensors with ``torch.frombuffer`` from a list of allowed
dtypes, and anything else it does not know comes back as an :class:`Opaque` that no comparison
accepts. It refuses records deeper than :data:`DEPTH` or larger than :data:`LIMIT` bytes.

Kernel side: :func:`answer` (what the grader's probe cell after each restored check cell runs)
calls the learner's function on the cases and displays the results as a :data:`VALUES_MIME`
record. It runs in the learner's process, so a learner can make it display anything; the grader
treats the record as what that process claims and compares it with its own expected values.
"""

from __future__ import annotations

import base64
import json
from typing import Any

VALUES_MIME = "application/vnd.attnkit.values+json"
LIMIT = 64 << 20  # bytes of a record the grader reads
DEPTH = 40
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
          "complex64", "complex128")


class Opaque:
    """A value the format does not carry (shown by its type name; never equal to an answer)."""

    def __init__(self, kind: str, text: str = ""):
        self.kind, self.text = kind, text

    def __repr__(self) -> str:
        return f"<{self.kind}>"


class ValueFormatError(ValueError):
    """A record that is not in the format (too deep, too large, a dtype or tag not allowed)."""


def encode(x: Any, depth: int = 0) -> Any:
    """``x`` as JSON-ready data (tensors as bytes, tuples, lists and dicts tagged)."""
    import torch

    if depth > DEPTH:
        return {"t": "object", "type": "too deep"}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return {"t": "int", "v": str(int(x))} if abs(x) >= 1 << 53 else int(x)
    if isinstance(x, float):
        return float(x) if x == x and abs(x) != float("inf") else {"t": "float", "v": repr(float(x))}
    if type(x).__name__ == "Result" and isinstance(x, tuple) and len(x) == 2:  # attnkit.exercises.Result
        peak = x[1]
        return {"t": "result", "v": encode(x[0], depth + 1), "peak": int(peak),
                "unmeasured": getattr(peak, "what", None) if type(peak).__name__ == "_Unmeasured" else None}
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        if str(t.dtype).removeprefix("torch.") not in DTYPES:
            return {"t": "object", "type": f"tensor of {t.dtype}"}
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""  # 0-d too
        return {"t": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "data": base64.b64encode(raw).decode("ascii")}
    if isinstance(x, (tuple, list)):
        return {"t": type(x).__name__ if type(x) in (tuple, list) else "tuple",
                "v": [encode(v, depth + 1) for v in x]}
    if isinstance(x, dict):
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if type(x).__name__ == "TinyLM":
        import dataclasses

        configs = []
        for i, c in enumerate(x.configs):  # TinyLM stores seed + i; its constructor adds i again
            c = dataclasses.replace(c, seed=c.seed - i)
            configs.append({f.name: encode(getattr(c, f.name)) for f in dataclasses.fields(c) if f.init})
        return {"t": "tinylm", "vocab": int(x.vocab_size), "max_len": x.max_len,
                "positions": x.pos is not None, "configs": configs,
                "weights": {k: encode(v) for k, v in x.state_dict().items()}}
    if hasattr(x, "item") and type(x).__module__ == "numpy":  # numpy scalars: their Python value
        try:
            return encode(x.item(), depth + 1)
        except (TypeError, ValueError):
            pass
    return {"t": "object", "type": f"{type(x).__module__}.{type(x).__qualname__}"[:200]}


def decode(data: Any, depth: int = 0) -> Any:
    """The value :func:`encode` wrote; raises :class:`ValueFormatError` on anything else."""
    import torch

    if depth > DEPTH + 2:
        raise ValueFormatError("nested too deep")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        raise ValueFormatError("an untagged list")
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise ValueFormatError(f"not a tagged value: {type(data).__name__}")
    tag = data["t"]
    if tag == "int":
        return int(str(data["v"])[:400])
    if tag == "float":
        return float(str(data["v"]))
    if tag in ("tuple", "list"):
        items = [decode(v, depth + 1) for v in _list(data.get("v"))]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict":
        out = {}
        for pair in _list(data.get("v")):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueFormatError("a dict entry that is not a pair")
            key = decode(pair[0], depth + 1)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise ValueFormatError("a dict key that cannot be hashed")
            out[key] = decode(pair[1], depth + 1)
        return out
    if tag == "tensor":
        return _tensor(data, torch)
    if tag == "result":
        from attnkit.exercises import Result, _Unmeasured

        peak = int(data.get("peak", 0))
        if data.get("unmeasured"):
            peak = _Unmeasured(0)
            peak.what = str(data["unmeasured"])[:80]
        return Result((decode(data.get("v"), depth + 1), peak))
    if tag == "tinylm":
        return _tinylm(data)
    if tag == "object":
        return Opaque(str(data.get("type", "?"))[:200])
    raise ValueFormatError(f"unknown tag {tag[:40]!r}")


def _list(v) -> list:
    if not isinstance(v, list):
        raise ValueFormatError("expected a list")
    return v


def _tensor(data: dict, torch):
    dtype = data.get("dtype")
    shape = data.get("shape")
    if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueFormatError(f"a tensor with dtype {str(dtype)[:20]!r} and shape {str(shape)[:40]}")
    raw = base64.b64decode(str(data.get("data", "")), validate=True)
    kind = getattr(torch, dtype)
    numel = 1
    for s in shape:
        numel *= s
    size = torch.empty((), dtype=kind).element_size()
    if len(raw) != numel * size:
        raise ValueFormatError(f"{len(raw)} bytes for a tensor of {numel} {dtype} values")
    if numel == 0:
        return torch.empty(shape, dtype=kind)
    if kind is torch.bool:  # any byte but 0 is True (no bool with another bit pattern)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).ne(0).reshape(shape)
    return torch.frombuffer(bytearray(raw), dtype=kind).reshape(shape).clone()


def _tinylm(data: dict):
    import dataclasses

    from attnkit.factory import AttentionConfig, TinyLM

    names = {f.name for f in dataclasses.fields(AttentionConfig) if f.init}
    configs = []
    for c in _list(data.get("configs")):
        if not isinstance(c, dict) or not set(c) <= names:
            raise ValueFormatError("a model config with unknown fields")
        configs.append(AttentionConfig(**{k: decode(v, 1) for k, v in c.items()}))
    model = TinyLM(int(data["vocab"]), configs, max_len=data.get("max_len"), learned_positions=bool(data.get("positions")))
    weights = data.get("weights")
    if not isinstance(weights, dict):
        raise ValueFormatError("model weights that are not a dict")
    model.load_state_dict({str(k): _tensor(v, __import__("torch")) for k, v in weights.items()}, strict=True)
    return model


def loads(text: str | bytes | dict) -> Any:
    """A record (JSON text, or the dict a notebook stores) decoded, within :data:`LIMIT`."""
    if isinstance(text, (str, bytes)):
        if len(text) > LIMIT:
            raise ValueFormatError(f"a record of {len(text)} bytes (at most {LIMIT})")
        text = json.loads(text)
    return decode(text)


# ---- the kernel side ----

def answer(exercise: str, get, cases: str, how: str) -> None:
    """Call the learner's function (``get()``) on ``cases`` (encoded ``[[args, kwargs], ...]``) and
    display the results as a :data:`VALUES_MIME` record (``how``: "call" as it is, "measured" under
    attnkit.exercises.Measured, "prepared" wrapped as the exercise's checker wraps it, "value":
    ``get()`` itself, a question's answer). Each case's exception is sent as its text."""
    from IPython.display import display

    out: dict = {"exercise": exercise, "how": how}
    try:
        fn = get()
        if how == "value":
            out["value"] = encode(fn)
        else:
            if how == "measured":
                from attnkit.exercises import Measured
                fn = Measured(fn)
            elif how == "prepared":
                from attnkit.exercises import registry
                fn = registry((exercise.split(".")[0],))[exercise].prepare(fn)
            results, seen = [], {}
            for raw in json.loads(cases)["v"]:
                key = json.dumps(raw, sort_keys=True)  # the same inputs twice: called once
                if key not in seen:
                    args, kwargs = decode(raw)
                    try:
                        seen[key] = {"ok": encode(fn(*args, **kwargs))}
                    except Exception as err:  # noqa: BLE001  the learner's error, as text
                        seen[key] = {"error": f"{type(err).__name__}: {err}"[:2000]}
                results.append(seen[key])
            out["results"] = results
    except Exception as err:  # noqa: BLE001  no function by that name, say
        out["error"] = f"{type(err).__name__}: {err}"[:2000]
    display({"text/plain": f"[values for the grader: {exercise}]", VALUES_MIME: out}, raw=True)
