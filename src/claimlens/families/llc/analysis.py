"""The local learning coefficient over the checkpoints of a run (claims_catalogue G-LLC, §3.2), cached on disk
(in the analysis cache, keyed by run, configuration and sampled epochs).

One SGLD configuration for the whole run (estimates are comparable only at equal ε, γ, nβ), sampled at
up to ``max_checkpoints`` checkpoints spread evenly over the run (always the first and the last), on the
training pairs only. Every estimate keeps its per-chain values, per-draw loss traces, MALA acceptance and
the problems :func:`claimlens.families.llc.metrics.diagnose` found.

Defaults per model kind come from calibrating on the built-in runs (README, "Learning coefficient"):
the transformer with ``ε = 1e-4, γ = 300`` and the MLP with ``ε = 1e-3, γ = 100``, both at devinterp's
default ``nβ = B/ln B`` for minibatches of ``B = 128``. A cached series is diagnosed again on loading.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from claimlens.core.cache import AnalysisCache
from claimlens.core.sampling import sampled_epochs
from claimlens.core.series import Series
from claimlens.families.llc.metrics import LLCResult, SGLDConfig, diagnose, estimate_llc
from claimlens.models import forward, frozen_params
from claimlens.models.stacked import loss_and_grad_fn

LLC_VERSION = 3  # 3: one noise draw per step for all chains (2: per tensor; 1 was not reproducible)
CACHE = AnalysisCache("llc", LLC_VERSION)

DEFAULT_CONFIGS = {
    "transformer": SGLDConfig(epsilon=1e-4, gamma=300.0, num_chains=4, num_draws=400, num_burnin=300,
                              batch_size=128, seed=0),
    "mlp": SGLDConfig(epsilon=1e-3, gamma=100.0, num_chains=4, num_draws=200, num_burnin=100, batch_size=128,
                      seed=0),
}


def default_config(run) -> SGLDConfig:
    """The SGLD configuration for the run's model kind (the modular-addition transformer and MLP)."""
    if run.spec.model.kind not in DEFAULT_CONFIGS:
        from claimlens.errors import RunError

        raise RunError(f"run {run.name!r} is an {run.spec.model.kind} model: the learning coefficient is estimated "
                       f"for the modular-addition models ({', '.join(sorted(DEFAULT_CONFIGS))}) only")
    return DEFAULT_CONFIGS[run.spec.model.kind]


@dataclass
class LLCEstimates:
    """λ̂ per sampled checkpoint of one run, with everything the health checks need.

    Shapes (``n`` sampled checkpoints, ``c`` chains, ``d`` draws): ``mean``, ``std``, ``init_loss [n]``;
    ``per_chain``, ``acceptance [n, c]``; ``traces [n, c, d]``. ``series()`` gives the per-epoch curves as
    :class:`claimlens.core.series.Series`."""

    epochs: list[int]
    mean: torch.Tensor  # [n] float64
    std: torch.Tensor  # [n] across chains
    per_chain: torch.Tensor  # [n, chains]
    init_loss: torch.Tensor  # [n] full-batch train loss at the checkpoint
    acceptance: torch.Tensor  # [n, chains]
    traces: torch.Tensor  # [n, chains, draws]
    problems: list[list[str]]  # per checkpoint
    config: dict
    from_cache: bool = False

    @property
    def healthy(self) -> list[bool]:
        return [not p for p in self.problems]

    def series(self, name: str = "llc", what: str = "mean") -> Series:
        """``what`` (``mean``, ``std``, ``init_loss``, ``acceptance`` averaged over chains) over the sampled
        epochs, as a series named ``name``."""
        values = {"mean": self.mean, "std": self.std, "init_loss": self.init_loss,
                  "acceptance": self.acceptance.mean(1)}[what]
        return Series.of(name, self.epochs, values)


def train_loss_fn(run):
    """``loss(params, rows)``: float64 CE of the model on training rows ``rows``; frozen biases held fixed.

    Returns the function and the frozen tensors it closes over (not sampled)."""
    model, task = run.spec.model, run.task
    x, y = task.tokens[task.train_idx], task.labels[task.train_idx]
    frozen_names = frozen_params(model, run.spec.modulus)

    def make(frozen: dict[str, torch.Tensor]):
        def loss(params, rows):
            logits = forward({**params, **frozen}, x[rows], model).logits
            return torch.nn.functional.cross_entropy(logits.double(), y[rows])

        return loss

    return make, frozen_names, len(y)


def train_loss_and_grad(run, frozen: dict[str, torch.Tensor], chains: int):
    """The written-out engine (:mod:`claimlens.models.stacked`) on the run's training rows, with the frozen
    tensors broadcast over the chains."""
    task = run.task
    engine = loss_and_grad_fn(run.spec.model, task.tokens[task.train_idx], task.labels[task.train_idx])
    fixed = {k: v.to(torch.float32).unsqueeze(0).expand(chains, *v.shape) for k, v in frozen.items()}

    def loss_and_grad(w, rows, out):
        return engine({**w, **fixed}, rows, out)

    return loss_and_grad


def estimate_at(run, epoch: int, config: SGLDConfig, *, engine: str = "stacked", stop=None) -> LLCResult:
    """λ̂ at one checkpoint. ``engine``: ``"stacked"`` (the written-out gradient of
    :mod:`claimlens.models.stacked`, the default) or ``"autograd"`` (``torch.func.vmap`` over the plain forward,
    the reference); at one seed they give the same traces to float rounding. ``stop``: see
    :func:`claimlens.families.llc.metrics.estimate_llc`."""
    if engine not in ("stacked", "autograd"):
        raise ValueError(f"unknown LLC engine {engine!r}; use 'stacked' or 'autograd'")
    make, frozen_names, n = train_loss_fn(run)
    params = run.checkpoint(epoch)
    frozen = {k: v for k, v in params.items() if k in frozen_names}
    sampled = {k: v for k, v in params.items() if k not in frozen_names}
    fast = train_loss_and_grad(run, frozen, config.num_chains) if engine == "stacked" else None
    result = estimate_llc(make(frozen), sampled, n, config, where=f"run {run.name!r} epoch {epoch}",
                          loss_and_grad=fast, stop=stop)
    result.config["frozen"] = sorted(frozen_names)  # held fixed, not sampled: part of the configuration
    return result


def cache_config(config: SGLDConfig) -> dict:
    """The configuration as the cache key holds it: every field, except ``convention`` at its default
    (``"claimlens"``), which is left out so that the entries cached before the field existed keep their keys."""
    fields = asdict(config)
    if fields["convention"] == SGLDConfig.convention:
        del fields["convention"]
    return fields


def llc_over_run(run, config: SGLDConfig | None = None, *, max_checkpoints: int = 32, cache: bool = True,
                 progress: bool = False, workers: int | None = None) -> LLCEstimates:
    """λ̂ at up to ``max_checkpoints`` checkpoints of ``run`` with one SGLD configuration, ``workers`` of them
    at a time (:func:`estimate_many`). Every sampled checkpoint is read and validated first: a bad one raises
    :class:`claimlens.errors.CheckpointError` naming it before any sampling."""
    config = config or default_config(run)
    epochs = sampled_epochs(run, max_checkpoints)
    args = {"config": cache_config(config), "epochs": epochs}
    if cache:
        loaded = CACHE.load(run, args)
        if loaded is not None:
            estimates = _from_cache(*loaded, run.name)
            if estimates is not None:
                return estimates
    for epoch in epochs:  # every sampled checkpoint readable and finite before minutes of sampling, not after
        run.checkpoint(epoch)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = f"LLC {run.name}" + (" (orthogonal to the gradient)" if config.orth_grad else "")
        bar = tqdm(total=len(epochs), desc=label, unit="ckpt")
    try:
        results = estimate_many(run, epochs, config, workers=workers, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    out = LLCEstimates(
        epochs=list(epochs),
        mean=torch.tensor([r.mean for r in results], dtype=torch.float64),
        std=torch.tensor([r.std for r in results], dtype=torch.float64),
        per_chain=torch.stack([r.per_chain.double() for r in results]),
        init_loss=torch.tensor([r.init_loss for r in results], dtype=torch.float64),
        acceptance=torch.stack([r.acceptance.double() for r in results]),
        traces=torch.stack([r.traces.float() for r in results]),
        problems=[r.problems for r in results],
        config=results[0].config if results else {**asdict(config)},
    )
    if cache:
        tensors = {"mean": out.mean, "std": out.std, "per_chain": out.per_chain, "init_loss": out.init_loss,
                   "acceptance": out.acceptance, "traces": out.traces, "epochs": torch.tensor(out.epochs)}
        CACHE.save(run, args, tensors, {"problems": json.dumps(out.problems), "config": json.dumps(out.config)})
    return out


def estimate_many(run, epochs: list[int], config: SGLDConfig, *, workers: int | None = None, bar=None
                  ) -> list[LLCResult]:
    """:func:`estimate_at` at every epoch of ``epochs``, in that order, ``workers`` checkpoints at a time.

    The workers are threads; the machine's intra-op threads are shared among them
    (``torch.get_num_threads() // workers`` each, at least 1; the count is restored afterwards, also on an
    error or an interrupt). ``workers`` defaults to 2 where torch has at least 2 threads, else 1. Each estimate
    is the one :func:`estimate_at` gives alone (its own minibatch and noise generators); only the summation
    order inside a matrix product may differ, at float rounding. Why: on 2 cores a gradient pass runs 1.6× faster
    on two threads than on one, a whole step (noise, update, small element-wise passes) about 1.3×, so two
    checkpoints on one core each finish about 1.5× sooner (``bench/bench_llc.py`` measures both). ``bar``: a tqdm
    bar advanced per estimate. Raises ``ValueError`` for ``workers < 1``, and the first failed estimate's error
    (or the interrupt) once the running ones have stopped: they are told to, and end within one SGLD step.

    The thread count is process-wide: two ``estimate_many`` calls running at once in one process may restore
    each other's count wrongly."""
    threads = torch.get_num_threads()
    workers = (2 if threads >= 2 else 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    workers = min(workers, len(epochs))
    if workers <= 1:
        results = []
        for e in epochs:
            results.append(estimate_at(run, e, config))
            if bar is not None:
                bar.update()
        return results
    return _concurrently(run, epochs, config, workers, max(1, threads // workers), bar)


def _concurrently(run, epochs: list[int], config: SGLDConfig, workers: int, threads_each: int, bar
                  ) -> list[LLCResult]:
    """:func:`estimate_many`'s threaded path: results in the order of ``epochs``, whatever order they finish in."""
    import threading
    from concurrent.futures import ThreadPoolExecutor, as_completed

    before = torch.get_num_threads()
    stop = threading.Event()
    torch.set_num_threads(threads_each)  # read by each new worker thread when it first runs a parallel op
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llc") as pool:
            futures = {pool.submit(estimate_at, run, e, config, stop=stop): i for i, e in enumerate(epochs)}
            results: list[LLCResult | None] = [None] * len(epochs)
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    if bar is not None:
                        bar.update()
            except BaseException:
                stop.set()  # the running estimates end within a step; the waiting ones never start
                for future in futures:
                    future.cancel()
                raise
    finally:
        torch.set_num_threads(before)
    return results


def _from_cache(t: dict[str, torch.Tensor], meta: dict[str, str], run_name: str) -> LLCEstimates | None:
    """The cached estimates, or None if the entry is damaged (then they are recomputed, never trusted).

    The sampling problems are diagnosed again from the stored traces, so a cached series is judged by the
    current rules."""
    try:
        s = LLCEstimates(t["epochs"].tolist(), t["mean"], t["std"], t["per_chain"], t["init_loss"], t["acceptance"],
                      t["traces"], [], json.loads(meta["config"]), from_cache=True)
    except Exception:
        return None
    s.problems = [diagnose(LLCResult(float(s.mean[i]), float(s.std[i]), s.per_chain[i], float(s.init_loss[i]),
                                     s.traces[i], s.acceptance[i], s.config), where=f"run {run_name!r} epoch {e}")
                  for i, e in enumerate(s.epochs)]
    return s
