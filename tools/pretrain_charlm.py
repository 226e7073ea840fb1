"""Pretrain chapter 10's character-level language model (attnkit.experiments.charlm.CharLM).

    nice -n 5 .venv/bin/python tools/pretrain_charlm.py            # train on the committed texts
    nice -n 5 .venv/bin/python tools/pretrain_charlm.py --extract  # first rewrite the texts

The texts live in attnkit/data/charlm/: ``english.txt``, the English prose of chapters 01-09
(the markdown cells tagged lang-en of chapters/src, ``# `` prefixes removed), on which the model
is pretrained, and ``python.txt``, the source of attnkit/core.py, softmax.py and mha.py, which
chapter 10 fine-tunes it on. ``--extract`` regenerates both from the repository (their content
then follows today's chapters); without it the committed texts are used, so a rerun gives the
committed weights again on the same machine (seeded, one thread; a few minutes).
Writes attnkit/data/charlm/charlm.pt (float32 state dict).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnkit.experiments import charlm as C  # noqa: E402

STEPS, LR, BATCH, SEED = 2000, 3e-3, 32, 0


def extract() -> None:
    prose = []
    for path in sorted((ROOT / "chapters" / "src").glob("0[1-9]_*.py")):
        for cell in re.split(r"^# %%", path.read_text(encoding="utf-8"), flags=re.M):
            head, _, body = cell.partition("\n")
            if 'tags=["lang-en"]' in head:
                prose.append("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                       for line in body.strip().splitlines()))
    C.DATA.mkdir(parents=True, exist_ok=True)
    (C.DATA / "english.txt").write_text("\n\n".join(prose) + "\n", encoding="utf-8")
    code = [(ROOT / "attnkit" / name).read_text(encoding="utf-8") for name in ("core.py", "softmax.py", "mha.py")]
    (C.DATA / "python.txt").write_text("\n".join(code), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extract", action="store_true", help="rewrite english.txt and python.txt first")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    if args.extract:
        extract()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    model = C.CharLM(**C.CONFIG)
    train_ids, held = C.split("english")
    code_train, code_held = C.split("python")
    start = time.perf_counter()
    losses = C.train(model, train_ids, args.steps, LR, batch=BATCH, seed=SEED, warmup=100)
    n = sum(p.numel() for p in model.parameters())
    print(f"{n:,} parameters, {args.steps} steps in {time.perf_counter() - start:.0f} s; "
          f"last 100 training losses {sum(losses[-100:]) / 100:.3f}")
    print(f"held-out loss (nats/char): english {C.evaluate(model, held):.3f}, python {C.evaluate(model, code_held):.3f}")
    torch.save(model.state_dict(), C.DATA / "charlm.pt")
    print(f"wrote {C.DATA / 'charlm.pt'}")


if __name__ == "__main__":
    main()
