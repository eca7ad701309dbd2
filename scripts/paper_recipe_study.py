"""Side-by-side runs of the paper recipe (issue 15, item 6): which recipe difference makes ``fixtures/paper.toml``
grok earlier than the source (claims_catalogue, end of Revision 2)?

Each variant starts from the same initial weights (``init_params`` of the spec's seed) and trains with the
trainer's own loop (full-batch AdamW, LambdaLR warm-up, the same split), changing one thing at a time:

* ``loss``: cross entropy on ``float64`` logits (claimlens's trainer) or ``float32`` (the source's ``helpers.py``:
  ``F.log_softmax(logits.to(torch.float32))``, whose comment says float64 but whose code casts to float32);
* ``classes``: 113 output classes (claimlens) or 114 (the source trains on all ``p + 1`` outputs, the ``=`` column
  of ``W_U`` included; its analysis drops that column). The 114th column is drawn from its own generator, so
  the first 113 columns start identical in every variant.

Every 100 epochs the test loss is measured on the 113 answer classes in float64 (the analysis's G-CE), and a
variant stops once its test loss falls below ``--stop-below`` (or at ``--max-epochs``). Printed per variant: the
peak test loss and its epoch, and the first checkpoint epochs after it with test loss below a tenth of the peak (``t2``
of :func:`claimlens.series.detect_phases`, which measures the peak from t1), with test loss < 1, and with test
accuracy ≥ 0.99;
``--json`` writes the curves. The source's mainline curve (digitised, ``claimlens/reference/nanda2022``) peaks
at 25.9 near epoch 1 340, is 22.2 at 4 400, falls below a tenth of its peak at about 9 650 and below 1 at about
9 900.

    python scripts/paper_recipe_study.py                       # four variants, seed 0 (~30 min on 2 cores)
    python scripts/paper_recipe_study.py --variants f32-114 --seed 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from claimlens.config import RunSpec
from claimlens.models import forward, frozen_params, init_params
from claimlens.tasks import ModularAddition
from claimlens.training import lr_factor

# name → (loss dtype, output classes beyond the p answers: 0, or 1 for the '=' column); named for p = 113
VARIANTS = {"f64-113": ("float64", 0), "f32-113": ("float32", 0), "f64-114": ("float64", 1), "f32-114": ("float32", 1)}


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    logprobs = torch.log_softmax(logits.to(dtype), dim=-1)
    return -logprobs.gather(-1, labels[:, None]).mean()


def run_variant(spec: RunSpec, name: str, *, max_epochs: int, stop_below: float, every: int) -> dict:
    loss_dtype, extra_classes = VARIANTS[name]
    dtype = torch.float32 if loss_dtype == "float32" else torch.float64
    p, cfg = spec.task.p, spec.model
    classes = p + extra_classes
    task = ModularAddition.from_config(spec.task)
    x_train, y_train = task.tokens[task.train_idx], task.labels[task.train_idx]
    x_test, y_test = task.tokens[task.test_idx], task.labels[task.test_idx]

    params = init_params(cfg, p, spec.train.seed)
    if classes == p + 1:  # the '=' output column, N(0, 1)/√d_vocab like the others, from its own generator
        extra = torch.randn(cfg.d_model, 1, generator=torch.Generator().manual_seed(10_000 + spec.train.seed))
        params["unembed.W_U"] = torch.cat([params["unembed.W_U"], extra / math.sqrt(p + 1)], dim=1)
        params["unembed.b_U"] = torch.zeros(p + 1)
    frozen = frozen_params(cfg, p)
    for k, v in params.items():
        v.requires_grad_(k not in frozen)
    trainable = [params[k] for k in params if k not in frozen]
    tc = spec.train
    optimizer = torch.optim.AdamW(trainable, lr=tc.lr * lr_factor(0, tc.warmup_steps), betas=tuple(tc.betas),
                                  weight_decay=tc.weight_decay)
    curve: list[dict] = []
    t0 = time.perf_counter()
    for epoch in range(max_epochs + 1):
        logits = forward(params, x_train, cfg).logits  # [n_train, classes]
        loss = cross_entropy(logits, y_train, dtype)
        if epoch % every == 0:
            with torch.no_grad():
                test_logits = forward(params, x_test, cfg).logits[:, :p].double()
                row = {"epoch": epoch, "train_loss": cross_entropy(logits[:, :p], y_train, torch.float64).item(),
                       "test_loss": cross_entropy(test_logits, y_test, torch.float64).item(),
                       "test_acc": (test_logits.argmax(-1) == y_test).double().mean().item(),
                       "sum_sq": sum(float(v.detach().pow(2).sum()) for k, v in params.items() if k not in frozen)}
            curve.append(row)
            if epoch % 1000 == 0:
                print(f"  {name} epoch {epoch}: train {row['train_loss']:.2e} test {row['test_loss']:.3g} "
                      f"acc {row['test_acc']:.3f} Σθ² {row['sum_sq']:.0f} ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
            if row["test_loss"] < stop_below:
                break
        optimizer.param_groups[0]["lr"] = tc.lr * lr_factor(epoch, tc.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"variant": name, "loss_dtype": loss_dtype, "classes": classes, "seed": spec.train.seed,
            "seconds": round(time.perf_counter() - t0, 1), "curve": curve, **summary(curve)}


def summary(curve: list[dict]) -> dict:
    peak = max(curve, key=lambda r: r["test_loss"])

    def first(pred):
        return next((r["epoch"] for r in curve if pred(r)), None)

    return {"peak_test_loss": round(peak["test_loss"], 2), "peak_epoch": peak["epoch"],
            "t2": first(lambda r: r["test_loss"] < peak["test_loss"] / 10 and r["epoch"] > peak["epoch"]),
            "test_loss_below_1": first(lambda r: r["test_loss"] < 1 and r["epoch"] > peak["epoch"]),
            "test_acc_099": first(lambda r: r["test_acc"] >= 0.99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="fixtures/paper.toml")
    parser.add_argument("--seed", type=int, default=None, help="the spec's train.seed unless given")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-epochs", type=int, default=12_000)
    parser.add_argument("--stop-below", type=float, default=0.5, help="stop a variant once its test loss is below")
    parser.add_argument("--every", type=int, default=100, help="epochs between measurements")
    parser.add_argument("--json", type=Path, default=None, help="write every variant's curve here")
    args = parser.parse_args(argv)
    spec = RunSpec.from_toml(args.spec)
    if spec.model.kind != "transformer" or spec.train.batch_size or spec.task.is_sequences or spec.train.optimizer != "adamw":
        parser.error(f"{args.spec}: the study follows the paper's loop (full-batch AdamW, a 1-layer transformer on "
                     f"modular addition); this spec is not one")
    if args.seed is not None:
        spec = _with_seed(spec, args.seed)
    results = []
    for name in args.variants:
        results.append(run_variant(spec, name, max_epochs=args.max_epochs, stop_below=args.stop_below,
                                   every=args.every))
        r = results[-1]
        print(f"{name:8s} seed {r['seed']}: peak test loss {r['peak_test_loss']} at {r['peak_epoch']}, "
              f"t2 (test loss < peak / 10) at {r['t2']}, test loss < 1 at {r['test_loss_below_1']}, test acc ≥ 0.99 at {r['test_acc_099']} "
              f"({r['seconds']:.0f} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


def _with_seed(spec: RunSpec, seed: int) -> RunSpec:
    import dataclasses
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=seed))


if __name__ == "__main__":
    raise SystemExit(main())
