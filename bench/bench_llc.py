"""The LLC estimator side by side with the devinterp library: same checkpoints, same hyperparameters.

    pip install -e '.[bench]'        # devinterp is an optional extra, for this benchmark only
    python bench/bench_llc.py        # a few checkpoints of the built-in default run
    python bench/bench_llc.py --all  # also: the time for the LLC at every checkpoint of the default run

For each checkpoint both estimators run SGLD with the same ε, γ, nβ, chains, burn-in, draws and
minibatch size on the training pairs, and λ̂ is computed by the same definition,
``nβ · (mean minibatch loss over the draws after burn-in − loss at the checkpoint)``: from devinterp's
per-step ``loss_trace`` with the burn-in steps dropped (devinterp's own ``llc_mean`` averages over the
burn-in too) and its ``init_loss``. claimlens runs twice: at its default convention (each chain draws a fresh
random minibatch at every step; the loss at the checkpoint over the whole training set) and at
``SGLDConfig(convention="devinterp")`` (devinterp's: one seeded shuffle cut into whole minibatches, replayed in
order and shared by the chains; the loss at the checkpoint the mean of the first 32 of those minibatches). The
SGLD step itself is the same: with the same minibatches and the same normal draws the two samplers' loss traces
agree to float rounding (``tests/test_llc.py``). claimlens advances all chains at once, with the gradient written
out by hand (:mod:`claimlens.models.stacked`); devinterp runs them one after the other. Printed: the estimates
with their spread across chains (σ), their relative difference, the wall times of claimlens, of its autograd
reference engine (``torch.func.vmap``, the same draws: its traces agree to float rounding) and of devinterp, the
time per gradient pass against the matrix-product FLOP bound at this machine's measured matmul rate, the same
checkpoints two at a time as ``llc_over_run`` samples them (its throughput against one at a time and against
devinterp, which has no such mode), the speed ratio of one estimate at a time, and, last, the agreement at
devinterp's convention: the largest difference over the checkpoints between claimlens's λ̂ and devinterp's, in
chain σ (the two estimates' per-chain standard deviations pooled, ``√((σ_claimlens² + σ_devinterp²) / 2)``: the
unit of "chain standard deviations" in which the difference was first reported) and in percent of devinterp's.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import tempfile
import time
from dataclasses import replace
from typing import NamedTuple

import torch


def matmul_peak(seconds: float = 1.0) -> float:
    """This machine's float32 matmul rate in FLOP/s, on products of the sampler's sizes ([512, 128] × [128, 512])."""
    a, b = torch.randn(512, 128), torch.randn(128, 512)
    for _ in range(20):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 512 * 128 * 512 * n / (time.perf_counter() - t0)


def step_flops(run, cfg) -> float:
    """Matrix-product FLOPs of one gradient pass of every chain in :mod:`claimlens.models.stacked`: three times
    the forward's products (the backward needs two products per forward product)."""
    model, p = run.spec.model, run.spec.task.p
    B = cfg.effective_batch(len(run.task.train_idx))
    if model.kind == "transformer":
        x = run.task.tokens[run.task.train_idx]
        rows = sum(len(torch.unique(x[:, j])) for j in range(x.shape[1]))  # table rows (position, token)
        D, A, M = model.d_model, model.n_heads * model.d_head, model.d_mlp
        forward = 2 * (rows * D * 2 * A + D * A + B * A * D + 2 * B * D * M + B * D * p)
    else:
        widths = [model.d_embed * (2 if model.combine == "concat" else 1), *model.hidden, p]
        forward = 2 * B * sum(a * b for a, b in itertools.pairwise(widths))
    return 3 * forward * cfg.num_chains


class DevinterpEstimate(NamedTuple):
    mean: float  # λ̂, the mean over chains
    std: float  # across chains
    per_chain: torch.Tensor  # [chains] float64
    init_loss: float
    seconds: float


def devinterp_llc(run, epoch: int, cfg, n_train: int) -> DevinterpEstimate:
    """λ̂ by devinterp 2.x at ``epoch`` with ``cfg``'s hyperparameters (``cfg.seed`` is its ``init_seed``)."""
    import devinterp.slt.sampler as dv_sampler
    from datasets import Dataset
    from devinterp.slt.llc import llc as dv_llc
    from tqdm.auto import trange

    dv_sampler.trange = functools.partial(trange, disable=True)  # one bar per chain would bury the table

    from claimlens.models import forward, frozen_params

    spec = run.spec
    params = run.checkpoint(epoch)
    frozen = frozen_params(spec.model)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.names = {}
            for name, value in params.items():
                key = name.replace(".", "__")
                self.names[name] = key
                if name in frozen:
                    self.register_buffer(key, value.clone())
                else:
                    self.register_parameter(key, torch.nn.Parameter(value.clone()))

        def forward(self, input_ids):
            p = {name: getattr(self, key) for name, key in self.names.items()}
            return forward(p, input_ids[:, :-1], spec.model).logits

    def loss_fn(model, input_ids):
        # devinterp 2 wants a per-token loss [batch, seq − 1] and averages it; the model predicts one token
        # per example, so that example's loss fills its row (the mean is the per-example mean).
        logits = model(input_ids)
        loss = torch.nn.functional.cross_entropy(logits.double(), input_ids[:, -1], reduction="none")
        return loss.unsqueeze(1).expand(-1, input_ids.shape[1] - 1)

    task = run.task
    x, y = task.tokens[task.train_idx], task.labels[task.train_idx]
    rows = torch.cat([x, y.unsqueeze(1)], dim=1).tolist()
    dataset = Dataset.from_dict({"input_ids": rows}).with_format("torch")
    model = Wrapped()
    with tempfile.TemporaryDirectory() as tmp:  # devinterp writes its samples to disk (zarr); this one is removed
        t0 = time.perf_counter()
        out = dv_llc(model, dataset, {}, lr=cfg.epsilon, n_beta=cfg.resolved_nbeta(n_train),
                     localization=cfg.gamma, num_chains=cfg.num_chains, num_draws=cfg.num_draws,
                     num_burnin_steps=cfg.num_burnin, batch_size=cfg.batch_size, init_seed=cfg.seed, device="cpu",
                     loss_fn=loss_fn, output_path=os.path.join(tmp, "samples.zarr"))
        seconds = time.perf_counter() - t0
        out = out.load()
    trace = torch.as_tensor(out["loss_trace"].values)
    if trace.shape[1] == cfg.num_burnin + cfg.num_draws:  # the trace includes the burn-in steps: drop them
        trace = trace[:, cfg.num_burnin:]
    assert trace.shape[1] == cfg.num_draws, f"unexpected devinterp loss trace of shape {tuple(trace.shape)}"
    init_loss = float(out["init_loss"].values)
    per_chain = cfg.resolved_nbeta(n_train) * (trace.double().mean(1) - init_loss)
    return DevinterpEstimate(float(per_chain.mean()), float(per_chain.std()) if len(per_chain) > 1 else 0.0,
                             per_chain, init_loss, seconds)


def chain_sigma(a: float, b: float) -> float:
    """The pooled per-chain standard deviation of two estimates with the same number of chains."""
    return math.sqrt((a * a + b * b) / 2)


def main() -> None:
    from claimlens.builtin import builtin_run
    from claimlens.families.llc.analysis import default_config, estimate_at, estimate_many, llc_over_run, sampled_epochs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="default", help="built-in run name (default: default)")
    ap.add_argument("--checkpoints", type=int, default=2, help="checkpoints compared (spread over the run)")
    ap.add_argument("--agreement-chains", type=int, default=16,
                    help="chains of each estimate in the agreement at devinterp's convention (default: 16)")
    ap.add_argument("--all", action="store_true", help="also time the LLC at every checkpoint of the run")
    args = ap.parse_args()

    run = builtin_run(args.run)
    cfg = default_config(run)
    n_train = len(run.task.train_idx)
    print(f"run {run.name!r}: SGLD ε={cfg.epsilon:g} γ={cfg.gamma:g} nβ={cfg.resolved_nbeta(n_train):.4g} "
          f"{cfg.num_chains} chains × ({cfg.num_burnin} burn-in + {cfg.num_draws} draws), batch {cfg.batch_size}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'epoch':>6} {'claimlens':>10} {'devinterp':>10} {'rel diff':>9} {'t_cl s':>7} {'t_ref s':>7} "
          f"{'t_dv s':>7} {'ratio':>6}")
    ratios, diffs, ours_times, ref_times, dv_times, singles = [], [], [], [], [], []
    agreement = []  # (difference in chain σ, relative difference) at devinterp's convention, per checkpoint
    at_devinterp = replace(cfg, convention="devinterp")
    compared = sampled_epochs(run, args.checkpoints + 2)[1:-1] if args.checkpoints > 1 else [run.epochs[-1]]
    for epoch in compared:
        t0 = time.perf_counter()
        ours = estimate_at(run, epoch, cfg)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = estimate_at(run, epoch, cfg, engine="autograd")
        t_ref = time.perf_counter() - t0
        theirs = devinterp_llc(run, epoch, cfg, n_train)
        t_theirs = theirs.seconds
        rel = abs(ours.mean - theirs.mean) / abs(theirs.mean)
        ratios.append(t_theirs / t_ours)
        dv_times.append(t_theirs)
        singles.append(ours)
        diffs.append(rel)
        ours_times.append(t_ours)
        ref_times.append(t_ref)
        same = float((ours.traces - ref.traces).abs().max())
        print(f"{epoch:>6} {ours.mean:>10.3f} {theirs.mean:>10.3f} {rel:>9.1%} {t_ours:>7.1f} {t_ref:>7.1f} "
              f"{t_theirs:>7.1f} {t_theirs / t_ours:>5.1f}x   (chain σ {ours.std:.3g} and {theirs.std:.3g}; autograd "
              f"engine {ref.mean:.3f}, traces within {same:.1e})")
        # The agreement: both at devinterp's convention, with more chains than the defaults' 4, whose spread is
        # too rough a yardstick (at epoch 1660 four chains once gave σ 0.042 where sixteen give 0.23).
        chains = replace(at_devinterp, num_chains=args.agreement_chains)
        like, other = estimate_at(run, epoch, chains), devinterp_llc(run, epoch, chains, n_train)
        diff = abs(like.mean - other.mean)
        se = math.sqrt((like.std ** 2 + other.std ** 2) / args.agreement_chains)
        agreement.append((diff / chain_sigma(like.std, other.std), diff / abs(other.mean)))
        print(f"{'':>6} {like.mean:>10.3f} {other.mean:>10.3f} {agreement[-1][1]:>9.1%}   at devinterp's convention, "
              f"{args.agreement_chains} chains each (chain σ {like.std:.3g} and {other.std:.3g}; L(w*) "
              f"{like.init_loss:.3g} and {other.init_loss:.3g}): {agreement[-1][0]:.2f} chain σ, "
              f"{diff / se:.2f} standard errors of the difference")
    passes = cfg.num_burnin + cfg.num_draws + -(-cfg.num_draws // cfg.acceptance_every)  # + MALA passes
    flops, peak = step_flops(run, cfg), matmul_peak()
    per_pass = min(ours_times) / passes
    print(f"per gradient pass ({cfg.num_chains} chains × batch {cfg.batch_size}, noise and update included): "
          f"{per_pass * 1e3:.2f} ms; matrix products {flops / 1e6:.0f} MFLOP at the measured {peak / 1e9:.0f} "
          f"GFLOP/s = {flops / peak * 1e3:.2f} ms bound: {per_pass / (flops / peak):.1f}x the bound")
    print(f"written-out engine against the autograd (vmap) engine: "
          f"{sum(ref_times) / sum(ours_times):.2f}x faster")
    pairs = len(compared) // 2 * 2  # an even number: with an odd one the last estimate runs alone on one thread
    if pairs and torch.get_num_threads() > 1:
        # What llc_over_run (and so `pytest claims/`) does: two checkpoints at once, the threads shared.
        t0 = time.perf_counter()
        together = estimate_many(run, compared[:pairs], cfg, workers=2)
        t_together = time.perf_counter() - t0
        t_alone, t_dv = sum(ours_times[:pairs]), sum(dv_times[:pairs])
        same = max(abs(a.mean - b.mean) / abs(b.mean) for a, b in zip(together, singles))
        print(f"two checkpoints at a time (estimate_many, as llc_over_run; {max(1, torch.get_num_threads() // 2)} "
              f"thread each): the first {pairs} checkpoints in {t_together:.1f} s against {t_alone:.1f} s one at a "
              f"time, {t_alone / t_together:.2f}x; devinterp (one at a time, its only mode) over claimlens for these "
              f"{pairs}: {t_dv / t_together:.1f}x; estimates equal to the one-at-a-time ones within {same:.1e} "
              f"(relative)")
    print(f"speed ratio devinterp / claimlens: min {min(ratios):.1f}x, mean {sum(ratios) / len(ratios):.1f}x; "
          f"largest relative difference {max(diffs):.1%}")
    if args.all:
        t0 = time.perf_counter()
        series = llc_over_run(run, replace(cfg), max_checkpoints=len(run.epochs), cache=False, progress=True)
        dt = time.perf_counter() - t0
        print(f"LLC at all {len(series.epochs)} checkpoints of {run.name!r}: {dt:.0f} s "
              f"({dt / len(series.epochs):.1f} s per checkpoint)")
    print(f"llc agreement: largest difference {max(a[0] for a in agreement):.2f} chain σ "
          f"({max(a[1] for a in agreement):.1%})")


if __name__ == "__main__":
    main()
