"""The full metric set over every checkpoint of a run: claimlens against an ARENA-style loop.

The ARENA-style loop does what the "analysis during training" material does: for each metric, for
each checkpoint, load the state dict into a TransformerLens model (here the TransformerLens 4 bridge),
``run_with_cache`` on all p² inputs when the metric needs activations, and compute that one metric.
claimlens's ``evaluate`` makes one fast forward pass per checkpoint shared by every metric. Both use
the same pure metric functions on the same run and give the same numbers (checked here), side by side
in one process. Also printed: the FLOP-bound time of claimlens's work on this machine (its matmul
FLOPs over a measured float32 matmul peak), so the distance to the limit is visible. Ratio last.

    python bench/bench_metrics.py            # the built-in default run (trained on first use)
    python bench/bench_metrics.py --run RUN  # any transformer run directory
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from claimlens.core import fourier as fo
from claimlens.core.losses import accuracy, cross_entropy_f64
from claimlens.families.grokking import metrics as pm
from claimlens.families.grokking.analysis import evaluate, final_checkpoint, final_key_frequencies
from claimlens.models import bridge_config, build_bridge


def arena_style(run, keys: list[int]) -> dict[str, list]:
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    p, task = run.spec.task.p, run.task
    tokens, labels, tr, te = task.tokens, task.labels, task.train_idx, task.test_idx
    bridge = build_bridge(run.spec.model, p)
    cfg = bridge_config(run.spec.model, p)
    basis = fo.fourier_basis(p)
    candidates = fo.frequencies(p)
    random_dirs = pm.random_grid_directions(p, 2, seed=0)
    final_freq = fo.key_frequencies_from_neurons(final_checkpoint(run).activations.mlp_post, p,
                                                 candidates).details["neuron_freq"]

    def with_cache(fn):
        def metric(sd):
            logits, cache = bridge.run_with_cache(tokens)
            return fn(logits[:, -1].double(), cache)
        return metric

    def weights(fn):
        return lambda sd: fn(sd)

    metrics = {
        "train_loss": with_cache(lambda L, c: cross_entropy_f64(L[tr], labels[tr])),
        "test_loss": with_cache(lambda L, c: cross_entropy_f64(L[te], labels[te])),
        "train_acc": with_cache(lambda L, c: accuracy(L[tr], labels[tr])),
        "test_acc": with_cache(lambda L, c: accuracy(L[te], labels[te])),
        "excluded_loss": with_cache(lambda L, c: pm.excluded_loss(L, labels, tr, keys, p)),
        "excluded_loss_all_keys": with_cache(lambda L, c: pm.excluded_loss_all_keys(L, labels, tr, keys, p)),
        "restricted_loss": with_cache(lambda L, c: torch.stack(
            [pm.restricted_loss(L, labels, r, keys, p) for r in (None, tr, te)]
            + [pm.class_balanced_loss(pm.restricted_logits(L, keys, p), labels, tr, p)])),
        "random_direction_control": with_cache(lambda L, c: pm.direction_ablation_ratio(L, labels, tr, random_dirs)),
        "neuron_key_frequency": with_cache(lambda L, c: torch.tensor(
            [float(k in fo.key_frequencies_from_neurons(c["blocks.0.mlp.hook_post"][:, -1], p, candidates).keys)
             for k in candidates])),
        "quadratic_fraction": with_cache(lambda L, c: pm.quadratic_fraction(c["blocks.0.mlp.hook_post"][:, -1],
                                                                           final_freq, p)),
        "attention_to_position": with_cache(lambda L, c: pm.attention_to_position(c["pattern", 0][:, :, -1]).flatten()),
        "trig_fraction": with_cache(lambda L, c: torch.stack([
            pm.trig_variance_fraction(x, keys, p) for x in
            (L, c["blocks.0.mlp.hook_pre"][:, -1], c["blocks.0.mlp.hook_post"][:, -1])])),
        "sum_sq_weights": weights(lambda sd: torch.tensor(pm.sum_sq_weights(sd)["total"])),
        "embed_fourier_norms": weights(lambda sd: pm.embed_fourier_norms(sd["embed.W_E"], p)),
        "embed_singular_values": weights(lambda sd: pm.embed_singular_values(sd["embed.W_E"], p)),
        "gini_W_E": weights(lambda sd: pm.gini(pm.fourier_row_norms(sd["embed.W_E"], p))),
        "gini_W_L": weights(lambda sd: pm.gini(fo.fft_tokens(
            pm.neuron_logit_map(sd["blocks.0.mlp.W_out"], sd["unembed.W_U"]), basis).norm(dim=-1))),
    }
    out = {}
    with torch.no_grad():
        for name, metric in metrics.items():  # one pass over the checkpoints per metric, as in ARENA
            values = []
            for epoch in run.epochs:
                sd = run.checkpoint(epoch)
                bridge.load_state_dict(convert_tl_checkpoint(sd, cfg), strict=True)
                values.append(metric(sd))
            out[name] = values
    return out


def matmul_peak_gflops(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def claimlens_flops(run, n_keys: int) -> float:
    """Matmul FLOPs of claimlens's evaluation: fast forward + projections + weight metrics + the Fourier
    transform of the neuron activations (float64, counted at the float32 peak: a lower bound)."""
    m, p = run.spec.model, run.spec.task.p
    N, D, M, H, dh = p * p, m.d_model, m.d_mlp, m.n_heads, m.d_head
    V = p + 1
    forward = 2 * (3 * 2 + 1) * V * D * H * dh + N * (2 * 3 * H * dh * 2 + 2 * H * dh * D + 2 * D * M + 2 * M * D + 2 * D * p)
    projections = 2 * (2 * n_keys) * N * (p * (3 + 2 * n_keys) + 2 * M) * 2
    weights = 2 * p * p * D + 2 * M * D * p + 2 * p * p * M
    # the neuron activations' transform along a (G-NFRAC, G-QUAD; fourier.neuron_block_power), then the
    # coefficients the blocks read: row 0 and the 2×2 block of each frequency
    neurons = 2 * p ** 3 * M + 2 * p * p * M + 2 * (p - 1) * 2 * p * M
    return len(run.epochs) * (forward + projections + weights + neurons)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run directory (default: the built-in default run)")
    args = parser.parse_args(argv)
    from claimlens.builtin import builtin_run
    from claimlens.runs.store import Run

    run = Run.open(args.run) if args.run else builtin_run("default")
    keys = final_key_frequencies(run).keys
    print(f"run {run.name}: p={run.spec.task.p}, {len(run.epochs)} checkpoints, key frequencies {keys}; "
          f"torch threads {torch.get_num_threads()}")
    evaluate(run, keys=keys, cache=False)  # warm-up
    start = time.perf_counter()
    ours = evaluate(run, keys=keys, cache=False)
    t_ours = time.perf_counter() - start
    evaluate(run, keys=keys, cache=True)  # fills the cache
    start = time.perf_counter()
    assert evaluate(run, keys=keys, cache=True).from_cache
    t_cached = time.perf_counter() - start
    start = time.perf_counter()
    theirs = arena_style(run, keys)
    t_arena = time.perf_counter() - start
    worst = 0.0
    for name, values in theirs.items():
        ref = torch.stack([torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in values], 1)
        mine = ours[name].data
        err = ((mine - ref).abs() / ref.abs().clamp_min(1e-6)).max().item()
        worst = max(worst, err)
        if err > 1e-3:
            print(f"  WARNING: {name} differs between the two paths (max relative error {err:.2e})")
    peak = matmul_peak_gflops()
    flops = claimlens_flops(run, len(keys))
    bound = flops / (peak * 1e9)
    print(f"both paths agree: max relative difference {worst:.1e} over {len(theirs)} metrics")
    print(f"ARENA-style loop (TransformerLens bridge, one pass per metric): {t_arena:8.2f} s")
    print(f"claimlens evaluate (one fast pass per checkpoint, all metrics): {t_ours:8.2f} s")
    print(f"claimlens evaluate, second call (on-disk cache hit):           {t_cached:8.3f} s")
    print(f"FLOP bound of claimlens's work: {flops / 1e9:.1f} GFLOP at a measured {peak:.0f} GFLOP/s matmul peak "
          f"= {bound:.2f} s; claimlens is {t_ours / bound:.1f}x the bound")
    print(f"ratio (ARENA-style time over claimlens time): {t_arena / t_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
