"""Side-by-side runs of the paper recipe (issue 15, item 6): which recipe difference makes ``fixtures/paper.toml``
grok earlier than the source (claims_catalogue, end of Revision 2)? Findings: docs/paper_recipe.md.

Each variant starts from the same initial weights (``init_params`` of the spec's seed) and runs a copy of the
trainer's loop (full-batch AdamW, the LambdaLR warm-up, the same split; ``claimlens.training.Trainer``), checked
against the trainer on a small spec by ``tests/test_training.py::test_recipe_study_baseline_is_the_trainer``. One
thing changes at a time:

* the loss: cross entropy on ``float64`` logits (claimlens's trainer, ``cross_entropy_f64``) or on ``float32``
  logits (the source's code, progress-measures-paper ``helpers.py``, commit 23d2c64: its comment says float64 but
  it calls ``F.log_softmax(logits.to(torch.float32))``);
* the output classes: ``p`` (claimlens) or ``p + 1`` (the source trains on all outputs, the ``=`` column of
  ``W_U`` included; its analysis drops that column). The extra column is drawn from its own generator, so the
  other ``p`` columns start identical in every variant.

Variant names are those of p = 113: ``f64-113`` (claimlens), ``f32-113``, ``f64-114``, ``f32-114`` (the source's
code). Every ``--every`` epochs the train and test loss are measured on the ``p`` answer classes in float64 (the
analysis's G-CE, whatever loss the variant trains on), and a variant stops once its test loss falls below
``--stop-below`` (or at ``--max-epochs``). Printed per variant: the test-loss peak and its epoch; ``t2``, the first
measured epoch after the peak with test loss below a tenth of it (the rule of
:func:`claimlens.core.series.detect_phases`, with the peak of the whole curve in place of the peak after t1); the first
epoch after the peak with test loss < 1; and the first with test accuracy ≥ 0.99 (none if the variant stopped
before that). ``--json`` writes the curves. The source's mainline curve (digitised,
``claimlens/reference/nanda2022``) peaks at 25.9 near epoch 1 340, falls below a tenth of that at about 9 600 and
below 1 at about 9 900.

    python scripts/paper_recipe_study.py                       # the four variants, seed 0 (~20 min on 2 cores)
    python scripts/paper_recipe_study.py --variants f32-114 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from claimlens.config import RunSpec, TransformerConfig
from claimlens.core.losses import cross_entropy_f64
from claimlens.errors import SpecError
from claimlens.models import forward, frozen_params, init_params
from claimlens.tasks import ModularAddition
from claimlens.training import lr_factor

# name → (loss dtype, output classes beyond the p answers: 0, or 1 for the '=' column); named for p = 113
VARIANTS = {"f64-113": ("float64", 0), "f32-113": ("float32", 0), "f64-114": ("float64", 1), "f32-114": ("float32", 1)}


ROOT = Path(__file__).resolve().parents[1]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Mean cross entropy ``[N, C], [N] -> []`` with the log-softmax in ``dtype``: float64 is the trainer's own
    ``cross_entropy_f64``; float32 is the source's ``cross_entropy_high_precision`` as its code runs."""
    if dtype == torch.float64:
        return cross_entropy_f64(logits, labels)
    logprobs = torch.log_softmax(logits.to(dtype), dim=-1)
    return -logprobs.gather(-1, labels[:, None]).mean()


def run_variant(spec: RunSpec, name: str, *, max_epochs: int, stop_below: float, every: int) -> dict:
    """Train ``spec`` as variant ``name`` (a key of ``VARIANTS``) for at most ``max_epochs`` epochs.

    Returns ``variant``, ``loss_dtype``, ``classes`` (output classes trained on), ``seed``, ``seconds`` (wall
    time), the settings (``spec``, ``max_epochs``, ``every``, ``stop_below``), ``stopped`` (``"stop_below"`` or
    ``"max_epochs"``) and ``last_epoch``, ``curve`` (one row per measured epoch: ``epoch``, ``train_loss`` and ``test_loss`` in nats on the
    ``p`` answer classes in float64 — not the loss trained on —, ``test_acc``, ``sum_sq`` = Σθ² of the trained
    parameters) and the :func:`summary` of the curve."""
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
    stopped = "max_epochs"
    t0 = time.perf_counter()
    for epoch in range(max_epochs + 1):
        logits = forward(params, x_train, cfg).logits  # [n_train, classes]
        loss = cross_entropy(logits, y_train, dtype)
        if epoch % every == 0 or epoch == max_epochs:  # the last epoch is always measured
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
                stopped = "stop_below"
                break
        if epoch == max_epochs:
            break
        optimizer.param_groups[0]["lr"] = tc.lr * lr_factor(epoch, tc.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return {"variant": name, "loss_dtype": loss_dtype, "classes": classes, "seed": spec.train.seed,
            "spec": spec.name, "max_epochs": max_epochs, "every": every, "stop_below": stop_below,
            "stopped": stopped, "last_epoch": curve[-1]["epoch"],
            "seconds": round(time.perf_counter() - t0, 1), "curve": curve, **summary(curve)}


def summary(curve: list[dict]) -> dict:
    """``peak_test_loss`` and ``peak_epoch``; ``t2``, ``test_loss_below_1`` (first epochs after the peak with test
    loss below a tenth of it, below 1) and ``test_acc_099``; None where the curve never gets there."""
    peak = max(curve, key=lambda r: r["test_loss"])

    def first(pred):
        return next((r["epoch"] for r in curve if pred(r)), None)

    return {"peak_test_loss": round(peak["test_loss"], 2), "peak_epoch": peak["epoch"],
            "t2": first(lambda r: r["test_loss"] < peak["test_loss"] / 10 and r["epoch"] > peak["epoch"]),
            "test_loss_below_1": first(lambda r: r["test_loss"] < 1 and r["epoch"] > peak["epoch"]),
            "test_acc_099": first(lambda r: r["test_acc"] >= 0.99)}


def main(argv: list[str] | None = None) -> int:
    """Run the variants one after the other and print a line for each; exit status 2 on a bad argument."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "fixtures" / "paper.toml",
                        help="the recipe (default: the project's fixtures/paper.toml)")
    parser.add_argument("--seed", type=int, default=None, help="train.seed (the initialisation); the spec's unless given")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="which variants, in this order (default: all four)")
    parser.add_argument("--max-epochs", type=int, default=12_000, help="the most epochs a variant trains")
    parser.add_argument("--stop-below", type=float, default=0.5, help="stop a variant once its test loss is below")
    parser.add_argument("--every", type=int, default=100, help="epochs between measurements (≥ 1)")
    parser.add_argument("--json", type=Path, default=None, help="write every variant's curve here")
    args = parser.parse_args(argv)
    if args.every < 1 or args.max_epochs < 0:
        parser.error(f"--every must be ≥ 1 and --max-epochs ≥ 0 (got {args.every}, {args.max_epochs})")
    if args.seed is not None and not 0 <= args.seed < 2**62:
        parser.error(f"--seed must be in [0, 2**62) (got {args.seed})")
    if args.json is not None:
        try:  # before any training: a run of minutes must not end in a write error
            with open(args.json, "a"):
                pass
        except OSError as exc:
            parser.error(f"--json {args.json}: cannot write there ({exc.strerror})")
    try:
        spec = RunSpec.from_toml(args.spec)
        if args.seed is not None:
            spec = _with_seed(spec, args.seed)
    except SpecError as exc:
        parser.error(str(exc))
    # the task and model kinds first: the other checks read fields only modular addition and the transformer have
    refused = [why for bad, why in (
        (spec.task.is_sequences, "task.kind is not modular addition"),
        (not isinstance(spec.model, TransformerConfig), f"model.kind is {spec.model.kind!r}, not 'transformer'"),
    ) if bad]
    if not refused:
        refused = [why for bad, why in (
            (not spec.model.equals_token, "model.equals_token is false (the 114-class variants add an '=' output)"),
            (spec.model.attn_rate != 1, f"model.attn_rate is {spec.model.attn_rate}, not the paper's 1"),
            (bool(spec.train.batch_size), "train.batch_size is set (the paper trains on the full batch)"),
            (spec.train.optimizer != "adamw", f"train.optimizer is {spec.train.optimizer!r}, not 'adamw'"),
        ) if bad]
    if refused:
        parser.error(f"{args.spec}: the study follows the paper's recipe and this spec differs: {'; '.join(refused)}")
    if not 0 < args.stop_below < math.log(spec.task.p):  # at or above a uniform guess's loss it would stop at once
        parser.error(f"--stop-below must be a test loss in (0, ln p = {math.log(spec.task.p):.2f}) nats "
                     f"(got {args.stop_below})")
    results = []
    for name in args.variants:
        results.append(run_variant(spec, name, max_epochs=args.max_epochs, stop_below=args.stop_below,
                                   every=args.every))
        r = results[-1]
        why = "test loss below --stop-below" if r["stopped"] == "stop_below" else "--max-epochs reached"
        print(f"{name:8s} seed {r['seed']}: stopped at epoch {r['last_epoch']} ({why}); highest test loss "
              f"{r['peak_test_loss']} at {r['peak_epoch']}; t2 (test loss < peak / 10) {_at(r['t2'])}; "
              f"test loss < 1 {_at(r['test_loss_below_1'])}; test acc ≥ 0.99 {_at(r['test_acc_099'])} "
              f"({r['seconds']:.0f} s)", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


def _at(epoch: int | None) -> str:
    return f"at {epoch}" if epoch is not None else "not reached"


def _with_seed(spec: RunSpec, seed: int) -> RunSpec:
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=seed)).validate()


if __name__ == "__main__":
    raise SystemExit(main())
