"""Local learning coefficient (LLC) by SGLD localised at a checkpoint (claims_catalogue G-LLC, G-SGLD, G-MALA).

    λ̂ = nβ · (mean over draws of L_batch(w_t) − L(w*))

with chains drawn from ``exp(−nβ·L(w) − γ/2·‖w − w*‖²)`` by the SGLD step of devinterp (TDI):

    Δw = −(ε/2)·(nβ·∇L_batch(w) + γ·(w − w*)) + √ε·N(0, 1)

``L_batch(w_t)`` is the loss of the forward pass made before the step at draw ``t``; ``L(w*)`` is the
full-batch loss at the checkpoint. All chains advance together: the parameters carry a leading chain
axis and the gradient is ``torch.func.vmap(torch.func.grad_and_value(loss))`` — no Python loop over chains.

``nβ`` defaults to ``n / ln n`` for full-batch sampling (the batch size is ``n``: devinterp's
``default_nbeta`` is ``B / ln B`` for batch size ``B``; the hackathon code uses ``n / ln n`` over the
training set; its grokking example sets 2.0 by hand). Estimates are comparable only at equal ``nβ``, so the
configuration is recorded with every estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import torch
from torch.func import grad_and_value, vmap

LossFn = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


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

    def resolved_nbeta(self, n: int) -> float:
        if self.nbeta is not None:
            return float(self.nbeta)
        b = n if self.batch_size is None else self.batch_size
        return b / math.log(b) if b > 1 else 1.0


@dataclass
class LLCResult:
    mean: float
    std: float  # across chains
    per_chain: torch.Tensor  # [chains]
    init_loss: float
    traces: torch.Tensor  # [chains, draws] batch losses at the draws
    acceptance: torch.Tensor  # [chains] mean MALA acceptance probability (a diagnostic only)
    config: dict
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


def estimate_llc(loss: LossFn, params: Mapping[str, torch.Tensor], n: int, config: SGLDConfig = SGLDConfig(),
                 *, where: str = "checkpoint") -> LLCResult:
    """LLC at ``params`` for ``loss(params, rows)`` = mean loss over data rows ``rows`` (an index tensor).

    ``n`` is the number of data rows. ``where`` names the checkpoint in diagnostic messages.
    """
    C, nbeta, eps, gamma = config.num_chains, config.resolved_nbeta(n), config.epsilon, config.gamma
    gen = torch.Generator().manual_seed(config.seed)
    w0 = {k: v.detach().to(torch.float32) for k, v in params.items()}
    all_rows = torch.arange(n)
    with torch.no_grad():
        init_loss = float(loss(w0, all_rows))
    w = {k: v.unsqueeze(0).repeat(C, *([1] * v.dim())).clone() for k, v in w0.items()}
    step = vmap(grad_and_value(loss), in_dims=(0, 0))

    def batch():
        if config.batch_size is None:
            return all_rows.unsqueeze(0).expand(C, n)
        return torch.stack([torch.randperm(n, generator=gen)[:config.batch_size] for _ in range(C)])

    def energy_and_grad(wt, rows):
        g, L = step(wt, rows)
        sq = sum((wt[k] - w0[k]).pow(2).flatten(1).sum(1) for k in wt)
        U = nbeta * L + gamma / 2 * sq
        gU = {k: nbeta * g[k] + gamma * (wt[k] - w0[k]) for k in wt}
        return L, U, gU

    total = config.num_burnin + config.num_draws
    traces = torch.empty(C, config.num_draws)
    accept = torch.zeros(C)
    rows = batch()
    L, U, gU = energy_and_grad(w, rows)
    for t in range(total):
        if t >= config.num_burnin:
            traces[:, t - config.num_burnin] = L.detach()
        noise = {k: torch.randn(v.shape, generator=gen) for k, v in w.items()}
        new = {k: (w[k] - eps / 2 * gU[k] + math.sqrt(eps) * noise[k]).detach() for k in w}
        L_new, U_new, gU_new = energy_and_grad(new, rows)  # same batch: the acceptance compares like with like
        if t >= config.num_burnin:
            accept += _mala_acceptance(w, new, U, U_new, gU, gU_new, eps) / config.num_draws
        w = new
        rows = batch()
        if config.batch_size is None:
            L, U, gU = L_new, U_new, gU_new
        else:
            L, U, gU = energy_and_grad(w, rows)
    per_chain = nbeta * (traces.double().mean(1) - init_loss)
    result = LLCResult(float(per_chain.mean()), float(per_chain.std()) if C > 1 else 0.0, per_chain, init_loss,
                       traces, accept, {**asdict(config), "nbeta": nbeta, "n": n})
    result.problems = diagnose(result, where=where)
    return result


def _mala_acceptance(w, new, U, U_new, gU, gU_new, eps) -> torch.Tensor:
    """G-MALA: min(1, exp(log q(w | w') − log q(w' | w) + U(w) − U(w'))) per chain (diagnostic only)."""
    fwd = sum((new[k] - w[k] + eps / 2 * gU[k]).pow(2).flatten(1).sum(1) for k in w)
    bwd = sum((w[k] - new[k] + eps / 2 * gU_new[k]).pow(2).flatten(1).sum(1) for k in w)
    log_a = (fwd - bwd) / (2 * eps) + U - U_new
    return torch.exp(torch.clamp(log_a, max=0.0)).detach()


def diagnose(r: LLCResult, *, where: str = "checkpoint") -> list[str]:
    """Sampling problems that make an estimate untrustworthy, each with what to change."""
    problems = []
    traces = r.traces.double()
    bad = ~torch.isfinite(traces)
    if bad.any():
        chain, draw = (int(i) for i in torch.nonzero(bad)[0])
        problems.append(f"{where}: chain {chain} diverged at draw {draw} (non-finite loss); use a smaller epsilon "
                        f"(now {r.config['epsilon']:g}) or a larger gamma (now {r.config['gamma']:g})")
        return problems
    ceiling = 10 * (abs(r.init_loss) + 1)
    if (traces > ceiling).any():
        problems.append(f"{where}: the loss exploded (max {float(traces.max()):.3g}, start {r.init_loss:.3g}); "
                        f"use a smaller epsilon (now {r.config['epsilon']:g})")
    if r.mean < 0:
        problems.append(f"{where}: negative estimate {r.mean:.3g}; the chains found lower loss than the checkpoint "
                        f"(not a local minimum at this temperature): raise gamma (now {r.config['gamma']:g}) or "
                        f"lower epsilon")
    half = traces.shape[1] // 2
    if half >= 2:
        # A drift shared by the chains (second-half minus first-half mean) means the chains are still moving;
        # one chain's own fluctuation does not: compare the mean drift with its standard error across chains.
        drift = r.config["nbeta"] * (traces[:, half:].mean(1) - traces[:, :half].mean(1))
        mean_drift = float(drift.mean())
        se = float(drift.std() / math.sqrt(drift.numel())) if drift.numel() > 1 else 0.0
        if abs(mean_drift) > max(3 * se, 0.1 * max(abs(r.mean), 1.0)):
            problems.append(f"{where}: the chains are not stationary (second-half minus first-half mean, times nβ: "
                            f"{mean_drift:+.3g} ± {se:.2g} against an estimate of {r.mean:.3g}); use more burn-in "
                            f"(now {r.config['num_burnin']}) or more draws")
    if r.per_chain.numel() > 1 and r.std > 0.5 * max(abs(r.mean), 1e-12):
        problems.append(f"{where}: chains disagree (std {r.std:.3g} against mean {r.mean:.3g}); run longer chains")
    acc = float(r.acceptance.mean())
    if acc < 0.5:
        problems.append(f"{where}: mean MALA acceptance {acc:.2f} (healthy ≈ 0.9): the step is too large; "
                        f"use a smaller epsilon (now {r.config['epsilon']:g})")
    return problems
