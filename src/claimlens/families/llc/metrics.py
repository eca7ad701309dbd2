"""Local learning coefficient (LLC) by SGLD localised at a checkpoint (claims_catalogue G-LLC, G-SGLD, G-MALA).

    λ̂ = nβ · (mean over draws of L_batch(w_t) − L(w*))

with chains drawn from ``exp(−nβ·L(w) − γ/2·‖w − w*‖²)`` by the SGLD step of devinterp (TDI):

    Δw = −(ε/2)·(nβ·∇L_batch(w) + γ·(w − w*)) + √ε·N(0, 1)

``L_batch(w_t)`` is the loss of the forward pass made before the step at draw ``t``. Two conventions
(``SGLDConfig.convention``) for the minibatches and ``L(w*)``, the step being the same:

- ``"claimlens"`` (the default): every chain draws a fresh minibatch of ``B`` distinct rows at every step,
  independently of the other chains and of the earlier steps, and ``L(w*)`` is the loss over all ``n`` rows;
- ``"devinterp"``: devinterp 2's ``sample`` with its defaults (``shuffle=True``, ``epoch_mode="cycle"``,
  ``match_sampling_input_ids_across_chains=True``, ``num_init_loss_batches=32``): the rows are shuffled once
  (the shuffle of a ``DataLoader`` seeded with ``seed``), cut into ``⌊n/B⌋`` whole minibatches (the last
  ``n mod B`` rows are never used) that are replayed in the same order, the same minibatch for every chain at
  a step; ``L(w*)`` is the mean loss of the first 32 minibatches of that sequence.

With the same minibatches and the same normal draws, this sampler and devinterp's give the same loss trace
to float rounding (``tests/test_llc.py``). Full batch, the two conventions are the same.

All chains advance together: the parameters carry a leading chain axis, in one flat buffer with the gradients
and the noise, and the gradient of every chain comes from one call of an engine — the model's written-out loss
and gradient (:mod:`claimlens.models.stacked`, passed as ``loss_and_grad``) or, the reference,
``torch.func.vmap(torch.func.grad_and_value(loss))``; no Python loop over chains.

``nβ`` defaults to ``n / ln n`` for full-batch sampling (the batch size is ``n``: devinterp's
``default_nbeta`` is ``B / ln B`` for batch size ``B``; the hackathon code uses ``n / ln n`` over the
training set; its grokking example sets 2.0 by hand). Estimates are comparable only at equal ``nβ``, so the
configuration is recorded with every estimate.

``orth_grad`` (NV's ``restrict_to_orth_grad``): after every step the displacement ``w − w*`` loses its
component along the unit full-batch gradient at ``w*`` (fixed at the start), so that a sampler started
at a point that is not a minimum (a checkpoint mid-training) does not slide down the slope.

Shapes (jaxtyping, checked under the test-suite; ``docs/shapes.md``): ``n_chains`` (the docstrings' ``C``),
``n_draws``, ``n_rows`` (data rows of a minibatch, ``B``), ``numel`` (the flat buffer of every chain's parameters).
"""

import math
import threading
import typing
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float, Int, Shaped
from torch import Tensor
from torch.func import grad_and_value, vmap

# loss(params, rows): the mean loss over the data rows ``rows`` (an index tensor)
LossFn = Callable[[Mapping[str, Float[Tensor, "..."]], Int[Tensor, " n_rows"]], Float[Tensor, ""]]
NOISE_SEED_OFFSET = 1_000_003  # the noise generator's seed is the configuration's seed plus this
DEVINTERP_INIT_LOSS_BATCHES = 32  # devinterp 2's ``num_init_loss_batches`` default
CONVENTIONS = ("claimlens", "devinterp")


@dataclass(frozen=True)
class SGLDConfig:
    epsilon: float = 1e-4  # step size ε
    gamma: float = 100.0  # localisation strength γ
    nbeta: float | None = None  # inverse temperature nβ (None: n / ln n)
    num_chains: int = 4
    num_draws: int = 200
    num_burnin: int = 50
    batch_size: int | None = None  # None: full batch
    seed: int = 0
    orth_grad: bool = False  # NV's restrict_to_orth_grad: no movement along the full-batch gradient at w*
    acceptance_every: int = 4  # minibatch mode: MALA acceptance (a diagnostic) measured on every k-th draw
    convention: str = "claimlens"  # how minibatches and L(w*) are drawn: "claimlens" or "devinterp" (CONVENTIONS)

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown LLC convention {self.convention!r}; use one of {', '.join(CONVENTIONS)}")

    def effective_batch(self, n: int) -> int:
        """The minibatch actually drawn from ``n`` rows: ``min(batch_size, n)`` (all ``n`` for full batch)."""
        return n if self.batch_size is None else min(self.batch_size, n)

    def resolved_nbeta(self, n: int) -> float:
        """``nbeta`` if set, else ``B / ln B`` for the effective minibatch ``B`` (devinterp's default): a training
        set smaller than the nominal batch gets the ``nβ`` of the batch it really draws."""
        if self.nbeta is not None:
            return float(self.nbeta)
        b = self.effective_batch(n)
        return b / math.log(b) if b > 1 else 1.0


@dataclass
class LLCResult:
    mean: float
    std: float  # across chains
    per_chain: Float[Tensor, " n_chains"]
    init_loss: float
    traces: Float[Tensor, "n_chains n_draws"]  # batch losses at the draws
    acceptance: Float[Tensor, " n_chains"]  # mean MALA acceptance probability (a diagnostic only)
    config: dict
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


# loss_and_grad(w, rows, out): every chain's loss on its rows, its gradient written into ``out``
LossAndGrad = Callable[[Mapping[str, Float[Tensor, "n_chains ..."]], Int[Tensor, "n_chains n_rows"],
                        Mapping[str, Float[Tensor, "n_chains ..."]]], Float[Tensor, " n_chains"]]


@typing.no_type_check  # called several times per SGLD step: unchecked, even in the test-suite (docs/shapes.md)
class _Layout:
    """``C`` copies of named tensors in one flat float32 buffer, parameter-major: the block of each name is a
    contiguous ``[C, *shape]``, so every name has a contiguous view and the SGLD update, the noise and the
    localisation are single passes over the whole buffer."""

    def __init__(self, shapes: Mapping[str, torch.Size], chains: int):
        self.names = sorted(shapes)
        self.shapes = {k: tuple(shapes[k]) for k in self.names}
        self.chains = chains
        self.sizes = [chains * math.prod(self.shapes[k]) for k in self.names]
        self.numel = sum(self.sizes)

    def views(self, flat: Float[Tensor, " numel"]) -> dict[str, Float[Tensor, "n_chains *shape"]]:
        """Name → ``[C, *shape]`` view of ``flat [numel]``."""
        blocks = torch.split(flat, self.sizes)
        return {k: b.view(self.chains, *self.shapes[k]) for k, b in zip(self.names, blocks)}

    def stack(self, single: Mapping[str, Shaped[Tensor, "..."]]) -> Float[Tensor, " numel"]:
        """``flat [numel]`` holding ``single[name]`` (one copy, ``[*shape]``) once per chain."""
        return torch.cat([single[k].detach().to(torch.float32).reshape(1, -1).expand(self.chains, -1).reshape(-1)
                          for k in self.names])

    def per_chain(self, flat: Float[Tensor, " numel"]) -> Float[Tensor, " n_chains"]:
        """Sum over each chain's entries of ``flat [numel]`` → ``[C]`` (float64)."""
        return sum(b.view(self.chains, -1).double().sum(1) for b in torch.split(flat, self.sizes))


@typing.no_type_check  # once per SGLD step: unchecked, even in the test-suite
class _Noise:
    """The standard-normal draws of the SGLD steps, ``[numel]`` per step. Drawing them is a quarter of a step's
    cost on a CPU and PyTorch's generator is serial, so the buffer is split in two halves, each with a generator
    of its own (seeded ``seed + NOISE_SEED_OFFSET`` and one more); with more than one intra-op thread they are
    drawn at once on two threads, with one (several estimates running side by side) one after the other. The
    sequence depends only on the seed, never on the timing or the threads."""

    def __init__(self, numel: int, seed: int):
        self.buffer = torch.empty(numel)
        half = numel // 2
        self.halves = (self.buffer[:half], self.buffer[half:])
        self.gens = tuple(torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET + i) for i in range(2))
        self.pool = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgld-noise")
                     if torch.get_num_threads() > 1 else None)

    def next(self) -> Float[Tensor, " numel"]:
        """This step's draw; valid until the next call."""
        if self.pool is None:
            for half, gen in zip(self.halves, self.gens):
                torch.randn(half.shape, generator=gen, out=half)
            return self.buffer
        other = self.pool.submit(torch.randn, self.halves[1].shape, generator=self.gens[1], out=self.halves[1])
        torch.randn(self.halves[0].shape, generator=self.gens[0], out=self.halves[0])
        other.result()
        return self.buffer

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


@typing.no_type_check  # no shapes in its signature; its engine runs once per SGLD step: unchecked
def autograd_loss_and_grad(loss: LossFn) -> LossAndGrad:
    """The reference engine: ``vmap(grad_and_value(loss))`` over the chain axis, written into ``out``."""
    step = vmap(grad_and_value(loss), in_dims=(0, 0))

    def loss_and_grad(w, rows, out):
        g, L = step(dict(w), rows)
        for k, buf in out.items():
            buf.copy_(g[k])
        return L.double()

    return loss_and_grad


class Stopped(Exception):
    """An estimate ended early because its ``stop`` event was set (another estimate of the batch failed, or the
    user interrupted): no result."""


# Unchecked even in the test-suite: the hook would check the helpers defined inside it on every SGLD step (+13% on a
# small model); what it returns is checked (LLCResult, diagnose).
@typing.no_type_check
def estimate_llc(loss: LossFn, params: Mapping[str, Float[Tensor, "..."]], n: int, config: SGLDConfig = SGLDConfig(),
                 *, where: str = "checkpoint", loss_and_grad: LossAndGrad | None = None,
                 stop: threading.Event | None = None) -> LLCResult:
    """LLC at ``params`` for ``loss(params, rows)`` = mean loss over data rows ``rows`` (an index tensor).

    ``n`` is the number of data rows. ``where`` names the checkpoint in diagnostic messages.
    ``loss_and_grad(w, rows, out) -> [C]`` computes every chain's loss on its rows ``rows [C, B]`` and writes
    the gradient into ``out[name] [C, *shape]`` (e.g. :func:`claimlens.models.stacked.loss_and_grad_fn`);
    without it the gradient is ``torch.func.vmap(grad_and_value(loss))`` (the reference engine). Both engines
    draw the same minibatches and the same noise: at one seed their traces agree to float rounding.
    ``stop``: a :class:`threading.Event` read before every step; once it is set the estimate raises
    :class:`Stopped` (so that a batch of estimates on threads ends within a step of an error or an interrupt).
    """
    C, nbeta, eps, gamma = config.num_chains, config.resolved_nbeta(n), config.epsilon, config.gamma
    gen = torch.Generator().manual_seed(config.seed)
    # Sorted names: the noise drawn for each tensor must not depend on the order the mapping came in
    # (safetensors loads a file's tensors in a different order each time).
    w0 = {k: params[k].detach().to(torch.float32) for k in sorted(params)}
    layout = _Layout({k: v.shape for k, v in w0.items()}, C)
    engine = loss_and_grad or autograd_loss_and_grad(loss)
    all_rows = torch.arange(n)
    B = config.effective_batch(n)
    cycle = None
    if config.convention == "devinterp" and config.batch_size is not None:
        # devinterp 2 (slt/sampling.py, slt/sampler.py): one seeded shuffle cut into ⌊n/B⌋ whole batches (the
        # remainder never seen), replayed in that order (itertools.cycle) and the same for every chain; L(w*)
        # is the mean loss of the first 32 batches of that sequence.
        # The shuffle is the DataLoader's at this seed: its iterator draws a base seed from the generator first.
        torch.empty((), dtype=torch.int64).random_(generator=gen)
        cycle = torch.randperm(n, generator=gen)[:n // B * B].view(n // B, B)
    with torch.no_grad():
        if cycle is None:
            init_loss = float(loss(w0, all_rows))
        else:
            init_loss = sum(float(loss(w0, cycle[i % len(cycle)]))
                            for i in range(DEVINTERP_INIT_LOSS_BATCHES)) / DEVINTERP_INIT_LOSS_BATCHES
    w0_flat = layout.stack(w0)
    normal = None
    if config.orth_grad:
        g0, _ = grad_and_value(loss)(w0, all_rows)
        norm = torch.sqrt(sum(g.double().pow(2).sum() for g in g0.values())).item()
        if norm > 0:
            normal = {k: (g / norm).to(torch.float32).reshape(-1) for k, g in g0.items()}  # one copy, not per chain
            offset = sum(float(w0[k].reshape(-1) @ normal[k]) for k in normal)  # w*·n, the same for every chain
    drawn = 0

    def batch():
        nonlocal drawn
        if config.batch_size is None:
            return all_rows.unsqueeze(0).expand(C, n)
        if cycle is not None:
            drawn += 1
            return cycle[(drawn - 1) % len(cycle)].unsqueeze(0).expand(C, B)
        return torch.stack([torch.randperm(n, generator=gen)[:B] for _ in range(C)])

    # One SGLD step, w' = w − ε/2·(nβ·∇L(w) + γ(w − w*)) + √ε·η, as one pass: a·w + (b·w* + √ε·η) + c·∇L(w).
    a, b, c, s = 1 - eps * gamma / 2, eps * gamma / 2, -eps * nbeta / 2, math.sqrt(eps)
    b_w0 = w0_flat * b

    def gradient(flat, rows, grad_flat):
        return engine(layout.views(flat), rows, layout.views(grad_flat))

    def energy(flat, L, grad_flat):
        """(U [C], ∇U flat) from the loss and its gradient: U = nβ·L + γ/2·‖w − w*‖²."""
        d = flat - w0_flat
        return nbeta * L + gamma / 2 * layout.per_chain(d * d), grad_flat * nbeta + d * gamma

    total = config.num_burnin + config.num_draws
    traces = torch.empty(C, config.num_draws)
    accept = torch.zeros(C, dtype=torch.float64)
    n_measured = 0
    w, new = w0_flat.clone(), torch.empty_like(w0_flat)
    g, g_new = torch.empty_like(w0_flat), torch.empty_like(w0_flat)
    noise = _Noise(layout.numel, config.seed)
    rows = batch()
    L = gradient(w, rows, g)
    try:
        for t in range(total):
            if stop is not None and stop.is_set():
                raise Stopped(f"{where}: stopped after {t} of {total} steps")
            if t >= config.num_burnin:
                traces[:, t - config.num_burnin] = L.float()
            torch.add(b_w0, noise.next(), alpha=s, out=new)
            new.add_(w, alpha=a).add_(g, alpha=c)
            if normal is not None:
                # w' ← w' − ((w' − w*)·n) n per chain: one product and one rank-1 update per tensor
                blocks = {k: v.view(C, -1) for k, v in layout.views(new).items()}
                along = sum(blocks[k] @ normal[k] for k in normal) - offset  # [C]
                for k, block in blocks.items():
                    block.addr_(along, normal[k], alpha=-1)
            # Full batch: the proposal's energy is the next step's energy, so the acceptance is free. Minibatch:
            # it costs a second pass on the same batch (like must be compared with like), so it is measured on
            # every ``acceptance_every``-th draw only.
            measure = t >= config.num_burnin and (
                config.batch_size is None or (t - config.num_burnin) % config.acceptance_every == 0)
            if measure or config.batch_size is None:
                L_new = gradient(new, rows, g_new)
            if measure:
                U, gU = energy(w, L, g)
                U_new, gU_new = energy(new, L_new, g_new)
                accept += _mala_acceptance(layout.views(w), layout.views(new), U, U_new, layout.views(gU),
                                           layout.views(gU_new), eps).double()
                n_measured += 1
            w, new = new, w
            if config.batch_size is None:
                L, g, g_new = L_new, g_new, g
            else:
                rows = batch()
                L = gradient(w, rows, g)
    finally:
        noise.close()
    accept = accept / max(n_measured, 1)
    per_chain = nbeta * (traces.double().mean(1) - init_loss)
    result = LLCResult(float(per_chain.mean()), float(per_chain.std()) if C > 1 else 0.0, per_chain, init_loss,
                       traces, accept.float(), {**asdict(config), "nbeta": nbeta, "n": n,
                                                "effective_batch_size": config.effective_batch(n)})
    result.problems = diagnose(result, where=where)
    return result


def _line(y: Float[Tensor, " n"]) -> tuple[float, Float[Tensor, " n"]]:
    """Least-squares slope of ``y`` against 0, 1, …, and the residuals."""
    x = torch.arange(len(y), dtype=torch.float64)
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / xc.pow(2).sum())
    return slope, y - y.mean() - slope * xc


def integrated_autocorr_time(y: Float[Tensor, " n_draws"]) -> float:
    """τ = 1 + 2 Σ_k ρ_k, summed while the autocorrelation ρ_k ≥ 0.05 (lags up to a quarter of the series)."""
    y = y.double() - y.double().mean()
    var = float(y.pow(2).mean())
    if var == 0:
        return 1.0
    tau = 1.0
    for k in range(1, len(y) // 4):
        rho = float((y[:-k] * y[k:]).mean()) / var
        if rho < 0.05:
            break
        tau += 2 * rho
    return tau


def _trend(traces: Float[Tensor, "n_chains n_draws"], window: int) -> tuple[float, float, float]:
    """(change of the line fitted to the chain-mean trace over the last ``window`` draws, std of the losses in
    that window, standard error of that change).

    The standard error is the least-squares one inflated by the integrated autocorrelation time of the whole
    (detrended) chain-mean trace: SGLD draws are autocorrelated, and a line through a short window of a
    stationary but slowly wandering trace moves by more than half its spread about as often as not.
    """
    tau = integrated_autocorr_time(_line(traces.mean(0))[1])
    y = traces[:, -window:].mean(0)
    slope, resid = _line(y)
    sxx = float((torch.arange(window, dtype=torch.float64) - (window - 1) / 2).pow(2).sum())
    se = (window - 1) * float(resid.std()) * math.sqrt(tau / sxx)
    return abs(slope) * (window - 1), float(traces[:, -window:].std()), max(se, 1e-300)


@typing.no_type_check  # once per measured SGLD step: unchecked, even in the test-suite
def _mala_acceptance(w, new, U, U_new, gU, gU_new, eps) -> Float[Tensor, " n_chains"]:
    """G-MALA: min(1, exp(log q(w | w') − log q(w' | w) + U(w) − U(w'))) per chain (diagnostic only)."""
    fwd = sum((new[k] - w[k] + eps / 2 * gU[k]).pow(2).flatten(1).sum(1) for k in w)
    bwd = sum((w[k] - new[k] + eps / 2 * gU_new[k]).pow(2).flatten(1).sum(1) for k in w)
    log_a = (fwd - bwd) / (2 * eps) + U - U_new
    a = torch.exp(torch.clamp(log_a, max=0.0))
    # A non-finite energy (or gradient) is a divergence, not a rejection: keep it visible as NaN for diagnose().
    finite = torch.isfinite(U) & torch.isfinite(U_new) & torch.isfinite(fwd) & torch.isfinite(bwd)
    return torch.where(finite, a, torch.full_like(a, float("nan"))).detach()


def diagnose(r: LLCResult, *, where: str = "checkpoint") -> list[str]:
    """Sampling problems that make an estimate untrustworthy, each naming the checkpoint and what to change.

    The rules of claims_catalogue ``llc_sampling_is_healthy``: no non-finite or exploding loss; λ̂ > 0; the
    20-draw running mean of each chain's loss below the checkpoint's loss for ≤ 10% of draws; the trace has
    flattened (a straight line fitted to the chain-mean trace over the last 20% of draws changes by ≤ 0.5 ×
    the standard deviation of the loss values in that window); mean MALA acceptance in [0.5, 0.99]. And
    one of the issue's: the chains agree (their spread ≤ half the estimate).

    One deviation, measured: the flatness rule flags a change only when it is also significant, more than 3
    standard errors given the trace's autocorrelation (:func:`_trend`). Without that, on 2000 draws at
    the converged final checkpoint of the default run (chain-mean autocorrelation time 28 draws) the rule
    flagged 32 of 81 windows of 400 draws, and 22 of 51 windows of 1000, although the trace is stationary;
    with it, none of them (README, "Learning coefficient").
    """
    problems = []
    cfg = r.config
    traces = r.traces.double()
    bad = ~torch.isfinite(traces)
    if bad.any():
        chain, draw = (int(i) for i in torch.nonzero(bad)[0])
        problems.append(f"{where}: chain {chain} diverged at draw {draw} (non-finite loss); use a smaller epsilon "
                        f"(now {cfg['epsilon']:g}) or a larger gamma (now {cfg['gamma']:g})")
        return problems
    acceptance = r.acceptance.double()
    if not bool(torch.isfinite(acceptance).all()):
        chains = [int(i) for i in torch.nonzero(~torch.isfinite(acceptance)).flatten()]
        problems.append(f"{where}: chain{'s' if len(chains) > 1 else ''} {', '.join(map(str, chains))} diverged: "
                        f"the MALA acceptance is not finite (a proposal's energy or gradient was NaN or infinite); "
                        f"use a smaller epsilon (now {cfg['epsilon']:g}) or a larger gamma (now {cfg['gamma']:g})")
        return problems
    if not math.isfinite(r.mean) or not bool(torch.isfinite(r.per_chain).all()):
        problems.append(f"{where}: the estimate is not finite ({r.mean}); the chains diverged")
        return problems
    ceiling = 10 * (abs(r.init_loss) + 1)
    if (traces > ceiling).any():
        problems.append(f"{where}: the loss exploded (max {float(traces.max()):.3g}, start {r.init_loss:.3g}); "
                        f"use a smaller epsilon (now {cfg['epsilon']:g})")
    if r.mean <= 0:
        problems.append(f"{where}: estimate {r.mean:.3g} ≤ 0: the chains found lower loss than the checkpoint "
                        f"(not a local minimum at this temperature); raise gamma (now {cfg['gamma']:g}) or "
                        f"lower epsilon")
    D = traces.shape[1]
    if D >= 20:
        running = traces.unfold(1, 20, 1).mean(-1)  # [chains, D - 19]
        below = float((running < r.init_loss).double().mean())
        if below > 0.1:
            problems.append(f"{where}: the 20-draw running mean of the loss is below the checkpoint's loss for "
                            f"{below:.0%} of draws (allowed 10%): the chains drift to lower loss; raise gamma "
                            f"(now {cfg['gamma']:g})")
    if D >= 10:
        window = max(round(0.2 * D), 3)
        change, spread, se = _trend(traces, window)
        if change > 0.5 * spread and change > 3 * se:
            problems.append(f"{where}: the loss trace has not flattened (a line fitted to the last {window} draws "
                            f"moves {change:.3g}, more than half the loss spread {spread:.3g} and {change / se:.1f} "
                            f"standard errors); use more burn-in (now {cfg['num_burnin']}) or more draws "
                            f"(now {cfg['num_draws']})")
    if r.per_chain.numel() > 1 and r.std > 0.5 * max(abs(r.mean), 1e-12):
        problems.append(f"{where}: chains disagree (std {r.std:.3g} against mean {r.mean:.3g}); run longer chains")
    acc = float(r.acceptance.mean())
    if acc < 0.5:
        problems.append(f"{where}: mean MALA acceptance {acc:.2f} (healthy ≈ 0.9): the step is too large; "
                        f"use a smaller epsilon (now {cfg['epsilon']:g})")
    elif acc > 0.99:
        problems.append(f"{where}: mean MALA acceptance {acc:.3f} (healthy ≈ 0.9): the step is so small that the "
                        f"chains barely move; use a larger epsilon (now {cfg['epsilon']:g})")
    return problems
