"""Training speed: claimlens's trainer against a plain TransformerLens-bridge training loop (a transformer spec)
or a plain ``torch.nn`` MLP loop (an MLP spec: embedding, linear layers, the first on the per-example inputs).

Both train the same spec from the same initial weights for the same number of epochs, doing the
same work per epoch (a full-batch step on the training pairs, then train/test loss and accuracy in
float64), side by side in one process. The claimlens side is the real ``Trainer`` including its
checkpoint writes; the bridge side writes nothing (which favours it). The ratio is printed last.

    python bench/bench_training.py                       # default spec, 300 epochs
    python bench/bench_training.py fixtures/paper.toml --epochs 50
    python bench/bench_training.py fixtures/mlp_sum.toml --epochs 3000

``--parallel``: every built-in run a plain ``pytest claims/`` trains (``claimlens.plugin.runs.default_session``),
from an empty cache (a temporary ``CLAIMLENS_CACHE_DIR``), first serially in this process, then on the local
process pool (``claimlens.executor``), both at the pool's per-process thread count, so that the runs can be the
same bit for bit (CPU results depend on the thread count); before that, a sweep of ``--dask-members`` tiny members
(20 by default; 0: none) through a Dask LocalCluster against serial. The last line is
``parallel training: serial A s, pool B s, C× (runs identical)`` (identical: every checkpoint's sha256 equal).

    python bench/bench_training.py --parallel                          # the whole set: ~15 min on 2 cores
    python bench/bench_training.py --parallel --only default --only mlp_sum --epochs 300 --dask-members 4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

from claimlens.config import RunSpec
from claimlens.core.losses import cross_entropy_f64
from claimlens.models import build_bridge, frozen_params, init_params
from claimlens.tasks import ModularAddition
from claimlens.training import Trainer, lr_factor

ROOT = Path(__file__).resolve().parents[1]


def bridge_loop(spec: RunSpec, epochs: int) -> float:
    """Seconds for ``epochs + 1`` epochs of the straightforward loop over a TransformerLens 4 bridge."""
    task = ModularAddition.from_config(spec.task)
    params = init_params(spec.model, spec.task.p, spec.train.seed)
    bridge = build_bridge(spec.model, spec.task.p, params)
    bridge.train()
    bias_names = {"q", "k", "v", "o"} if "blocks.0.attn.b_Q" in frozen_params(spec.model) else set()
    trainable = []
    for name, tensor in bridge.named_parameters():
        parts = name.split(".")
        frozen = ("bias" in parts and (any(b in parts for b in bias_names) or parts[0] == "unembed"))
        tensor.requires_grad_(not frozen)
        if not frozen:
            trainable.append(tensor)
    cfg = spec.train
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(trainable, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    tokens, labels = task.tokens, task.labels
    x_train, y_train = tokens[task.train_idx], labels[task.train_idx]
    x_test, y_test = tokens[task.test_idx], labels[task.test_idx]
    start = time.perf_counter()
    for epoch in range(epochs + 1):
        logits = bridge(x_train)[:, -1]
        loss = cross_entropy_f64(logits, y_train)
        with torch.no_grad():
            test_logits = bridge(x_test)[:, -1]
            _ = (loss.item(), cross_entropy_f64(test_logits, y_test).item(),
                 (logits.argmax(-1) == y_train).double().mean().item(),
                 (test_logits.argmax(-1) == y_test).double().mean().item())
        if epoch == epochs:
            break
        optimizer.param_groups[0]["lr"] = cfg.lr * lr_factor(epoch, cfg.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def plain_mlp_loop(spec: RunSpec, epochs: int) -> float:
    """Seconds for ``epochs + 1`` epochs of the straightforward ``torch.nn`` loop over the same MLP (full batch, every
    parameter trained: the work of a full-batch spec without frozen parameters)."""
    if spec.train.batch_size or frozen_params(spec.model, spec.task.p):
        raise SystemExit(f"bench_training: {spec.name!r} trains on minibatches or holds parameters frozen; the plain "
                         f"MLP loop does neither, so the two would not do the same work")
    task = ModularAddition.from_config(spec.task)
    params = init_params(spec.model, spec.task.p, spec.train.seed)
    m = spec.model
    embed = torch.nn.Embedding.from_pretrained(params["embed.W_E"].clone(), freeze=False)
    layers = []
    for i in range(len(m.hidden)):
        lin = torch.nn.Linear(*params[f"mlp.{i}.W"].shape)
        lin.weight.data, lin.bias.data = params[f"mlp.{i}.W"].T.clone(), params[f"mlp.{i}.b"].clone()
        layers += [lin, torch.nn.ReLU() if m.act_fn == "relu" else torch.nn.GELU()]
    unembed = torch.nn.Linear(*params["unembed.W_U"].shape)
    unembed.weight.data, unembed.bias.data = params["unembed.W_U"].T.clone(), params["unembed.b_U"].clone()
    body = torch.nn.Sequential(*layers, unembed)
    module = torch.nn.ModuleList([embed, body])

    def model(x):
        e = embed(x[:, :2])
        return body(e.sum(1) if m.combine == "sum" else e.flatten(1))

    cfg = spec.train
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(module.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    tokens, labels = task.tokens, task.labels
    x_train, y_train = tokens[task.train_idx], labels[task.train_idx]
    x_test, y_test = tokens[task.test_idx], labels[task.test_idx]
    start = time.perf_counter()
    for epoch in range(epochs + 1):
        logits = model(x_train)
        loss = cross_entropy_f64(logits, y_train)
        with torch.no_grad():
            test_logits = model(x_test)
            _ = (loss.item(), cross_entropy_f64(test_logits, y_test).item(),
                 (logits.argmax(-1) == y_train).double().mean().item(),
                 (test_logits.argmax(-1) == y_test).double().mean().item())
        if epoch == epochs:
            break
        optimizer.param_groups[0]["lr"] = cfg.lr * lr_factor(epoch, cfg.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def claimlens_loop(spec: RunSpec, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        Trainer(spec, Path(tmp) / "run", progress=False).train()
        return time.perf_counter() - start


def _shortened(spec: RunSpec, epochs: int | None) -> RunSpec:
    if epochs is None or epochs >= spec.train.epochs:
        return spec
    train = dataclasses.replace(spec.train, epochs=epochs, checkpoint_every=min(spec.train.checkpoint_every, epochs))
    return dataclasses.replace(spec, train=train).validate()


def _timed(jobs, executor, cache: Path):
    """Train ``jobs`` from the empty cache ``cache`` through ``executor``: (seconds, results)."""
    import os

    from claimlens.executor import train_all

    os.environ["CLAIMLENS_CACHE_DIR"] = str(cache)
    trained = train_all(jobs, executor, progress=False)
    if trained.failed:
        raise SystemExit("bench_training: " + "; ".join(f"{r.label}: {r.error}" for r in trained.failed))
    return trained.seconds, trained.results


def _checkpoint_hashes(result) -> list[str]:
    import json

    return [c["sha256"] for c in json.loads((Path(result.path) / "run.json").read_text())["checkpoints"]]


def _compare(serial, other) -> str:
    """'runs identical' when every run's checkpoints have the same sha256, else which differ."""
    differ = [a.label for a, b in zip(serial, other) if _checkpoint_hashes(a) != _checkpoint_hashes(b)]
    return "runs identical" if not differ else f"runs DIFFER: {', '.join(differ)}"


def dask_sweep(members: int, epochs: int, threads: int) -> str:
    """A sweep of ``members`` tiny runs (p = 23, d_model 32; seeds 0 … members−1) through a Dask LocalCluster against
    serial training at ``threads`` threads: the line to print."""
    from claimlens.config import ModularAdditionTask, TrainConfig, TransformerConfig
    from claimlens.executor import DaskExecutor, SerialExecutor, TrainJob

    base = RunSpec(name="tiny", task=ModularAdditionTask(p=23, frac_train=0.5, split_seed=1),
                   model=TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
                   train=TrainConfig(epochs=epochs, checkpoint_every=max(1, epochs // 10), lr=3e-3))
    jobs = [TrainJob(dataclasses.replace(base, name=f"tiny-seed={i}", train=dataclasses.replace(base.train, seed=i)),
                     "cpu") for i in range(members)]
    dask = DaskExecutor(threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        t_serial, serial = _timed(jobs, SerialExecutor(threads=threads), Path(tmp) / "serial")
        t_dask, other = _timed(jobs, dask, Path(tmp) / "dask")
        same = _compare(serial, other)
    return (f"dask sweep: {members} members ({epochs} epochs each), serial {t_serial:.1f} s, LocalCluster of "
            f"{dask.workers} workers {t_dask:.1f} s, {t_serial / t_dask:.2f}x ({same})")


def parallel(only: list[str], epochs: int | None, workers: int, dask_members: int, dask_epochs: int) -> int:
    from claimlens.config import FIXTURES
    from claimlens.executor import PoolExecutor, SerialExecutor, TrainJob, cores
    from claimlens.plugin.runs import default_session

    names = [Path(f).stem for f in default_session() if (FIXTURES / f).is_file()]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise SystemExit(f"bench_training: --only {unknown}: not built-in runs of a plain session ({names})")
    names = [n for n in names if not only or n in only]
    pool = PoolExecutor(workers=workers)
    jobs = [TrainJob(_shortened(RunSpec.from_toml(FIXTURES / f"{n}.toml"), epochs), "cpu") for n in names]
    print(f"{len(jobs)} built-in runs ({', '.join(names)}){f', at most {epochs} epochs each' if epochs else ''}; "
          f"{cores()} cores; serial: this process at {pool.threads} thread{'s' * (pool.threads != 1)}, then "
          f"{pool.describe()}", flush=True)
    dask_line = dask_sweep(dask_members, dask_epochs, pool.threads) if dask_members else None
    if dask_line:
        print(dask_line, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t_serial, serial = _timed(jobs, SerialExecutor(threads=pool.threads), Path(tmp) / "serial")
        t_pool, pooled = _timed(jobs, pool, Path(tmp) / "pool")
        same = _compare(serial, pooled)
    for a, b in zip(serial, pooled):
        print(f"  {a.label:<16} serial {a.seconds:7.1f} s   in the pool {b.seconds:7.1f} s   "
              f"content {a.content_hash[:12]} / {b.content_hash[:12]}")
    print(f"parallel training: serial {t_serial:.1f} s, pool {t_pool:.1f} s, {t_serial / t_pool:.2f}× ({same})")
    return 0 if same == "runs identical" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "fixtures" / "default.toml"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default 300; with --parallel: each run's own, or at most this many)")
    parser.add_argument("--parallel", action="store_true",
                        help="every built-in run from an empty cache, serially and on the process pool")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="with --parallel: only this built-in run (repeatable)")
    parser.add_argument("--workers", type=int, default=0, help="with --parallel: pool processes (default: the cores)")
    parser.add_argument("--dask-members", type=int, default=20,
                        help="with --parallel: members of the tiny sweep trained through a Dask LocalCluster (0: none)")
    parser.add_argument("--dask-epochs", type=int, default=300, help="epochs of each tiny sweep member")
    args = parser.parse_args(argv)
    if args.parallel:
        return parallel(args.only, args.epochs, args.workers, args.dask_members, args.dask_epochs)
    args.epochs = 300 if args.epochs is None else args.epochs
    spec = RunSpec.from_toml(args.spec)
    every = min(spec.train.checkpoint_every, args.epochs)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=args.epochs, checkpoint_every=every))
    m = spec.model
    shape = (f"d_embed={m.d_embed} hidden={list(m.hidden)} combine={m.combine}" if m.kind == "mlp"
             else f"d_model={m.d_model} d_mlp={m.d_mlp}")
    print(f"spec {spec.name}: p={spec.task.p}, frac_train={spec.task.frac_train}, model {m.kind} {shape}; "
          f"{args.epochs + 1} epochs, "
          f"checkpoint every {every}; torch threads {torch.get_num_threads()}")
    reference, name = ((plain_mlp_loop, "plain torch.nn MLP loop") if spec.model.kind == "mlp"
                       else (bridge_loop, "TransformerLens bridge loop"))
    # Warm both paths once (imports, allocator), then time them alternately.
    reference(spec, 3)
    claimlens_loop(dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=3, checkpoint_every=3)), 3)
    t_ref = reference(spec, args.epochs)
    t_ours = claimlens_loop(spec, args.epochs)
    n = args.epochs + 1
    print(f"{name:<27}: {t_ref:7.2f} s  {1000 * t_ref / n:7.1f} ms/epoch  {n / t_ref:7.1f} epochs/s")
    print(f"{'claimlens Trainer':<27}: {t_ours:7.2f} s  {1000 * t_ours / n:7.1f} ms/epoch  {n / t_ours:7.1f} epochs/s")
    print(f"ratio (claimlens epochs/s over the reference's): {t_ref / t_ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
