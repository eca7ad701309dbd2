"""Training speed: claimlens's trainer against a plain TransformerLens-bridge training loop (a transformer spec)
or a plain ``torch.nn`` MLP loop (an MLP spec: embedding, linear layers, the first on the per-example inputs).

Both train the same spec from the same initial weights for the same number of epochs, doing the
same work per epoch (a full-batch step on the training pairs, then train/test loss and accuracy in
float64), side by side in one process. The claimlens side is the real ``Trainer`` including its
checkpoint writes; the bridge side writes nothing (which favours it). The ratio is printed last.

    python bench/bench_training.py                       # default spec, 300 epochs
    python bench/bench_training.py fixtures/paper.toml --epochs 50
    python bench/bench_training.py fixtures/mlp_sum.toml --epochs 3000
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "fixtures" / "default.toml"))
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
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
