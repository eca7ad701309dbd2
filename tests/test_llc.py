"""The LLC estimator on models whose learning coefficient is known, and its diagnostics."""

import dataclasses
import functools
import math

import pytest
import torch

from claimlens.families.llc.metrics import LLCResult, SGLDConfig, diagnose, estimate_llc


def linear_regression(d=10, n=2000, seed=0):
    """A regular model: Gaussian-noise linear regression; LLC = d/2 at the least-squares solution."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = X @ torch.randn(d, generator=gen) + 0.5 * torch.randn(n, generator=gen)
    w_star = torch.linalg.lstsq(X, y[:, None]).solution.flatten()

    def loss(params, rows):
        r = y[rows] - X[rows] @ params["w"]
        return 0.5 * (r * r).mean()

    return loss, {"w": w_star}, n


def quartic(d=4):
    """A singular model: K(w) = Σ w_i⁴ at w* = 0. Under exp(−nβ K), E[nβ Σ w_i⁴] = d/4 exactly (γ → 0),
    so λ = d/4, half the regular d/2."""

    def loss(params, rows):
        return params["w"].pow(4).sum() + 0 * rows.sum()

    return loss, {"w": torch.zeros(d)}, 1000


def test_regular_model_gives_half_the_parameter_count():
    loss, params, n = linear_regression(d=10)
    # ε as large as keeps the discretisation bias small while the MALA acceptance stays in the healthy
    # band (< 0.99): ε = 1e-4 gives acceptance 0.990, 1.5e-4 gives 0.982 and +3.7%, 4e-4 gives +11%.
    cfg = SGLDConfig(epsilon=1.5e-4, gamma=1.0, nbeta=1000.0, num_chains=8, num_draws=2000, num_burnin=500, seed=1)
    r = estimate_llc(loss, params, n, cfg)
    assert abs(r.mean - 5.0) / 5.0 < 0.05, f"LLC {r.mean:.3f} ± {r.std:.3f}, expected d/2 = 5"
    assert r.healthy, r.problems
    assert r.traces.shape == (8, 2000) and r.config["nbeta"] == 1000.0


def test_singular_model_gives_its_known_coefficient():
    loss, params, n = quartic(d=4)
    cfg = SGLDConfig(epsilon=2e-4, gamma=1.0, nbeta=1e4, num_chains=16, num_draws=4000, num_burnin=2000, seed=2)
    r = estimate_llc(loss, params, n, cfg)
    assert abs(r.mean - 1.0) / 1.0 < 0.10, f"LLC {r.mean:.3f} ± {r.std:.3f}, expected d/4 = 1 (regular would be 2)"


def test_chains_are_vectorised_and_seeded():
    loss, params, n = linear_regression(d=3, n=200)
    cfg = SGLDConfig(epsilon=1e-4, gamma=10.0, nbeta=50.0, num_chains=3, num_draws=50, num_burnin=10, seed=5)
    a, b = estimate_llc(loss, params, n, cfg), estimate_llc(loss, params, n, cfg)
    assert torch.equal(a.traces, b.traces)
    assert not torch.equal(a.traces[0], a.traces[1]), "chains draw independent noise"
    mini = estimate_llc(loss, params, n, SGLDConfig(**{**cfg.__dict__, "batch_size": 32}))
    assert mini.config["batch_size"] == 32 and torch.isfinite(mini.traces).all()
    # two tensors, given in either order: the same draws
    two = {"w": params["w"], "v": torch.zeros(2)}

    def loss2(p, rows):
        return loss({"w": p["w"]}, rows) + p["v"].pow(2).sum()

    forward = estimate_llc(loss2, two, n, cfg)
    backward = estimate_llc(loss2, dict(reversed(list(two.items()))), n, cfg)
    assert torch.equal(forward.traces, backward.traces)


def test_default_nbeta_is_n_over_log_n():
    assert SGLDConfig().resolved_nbeta(1000) == pytest.approx(1000 / 6.907755, rel=1e-6)
    assert SGLDConfig(batch_size=128).resolved_nbeta(1000) == pytest.approx(26.38, abs=0.01)


def test_divergence_is_diagnosed_with_what_to_change():
    loss, params, n = linear_regression(d=5)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=1.0, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=30,
                                                 num_burnin=0), where="epoch 400")
    assert not r.healthy
    assert any("epoch 400" in p and "smaller epsilon" in p for p in r.problems), r.problems


def test_a_point_that_is_not_a_minimum_is_diagnosed():
    loss, params, n = linear_regression(d=5)
    away = {"w": params["w"] + 1.0}  # the loss falls when the chains move back towards w*
    r = estimate_llc(loss, away, n, SGLDConfig(epsilon=1e-4, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=200,
                                               num_burnin=50))
    assert any("≤ 0" in p and "raise gamma" in p for p in r.problems), r.problems
    assert any("running mean" in p for p in r.problems), r.problems


def test_too_short_burn_in_with_a_tiny_step_is_diagnosed():
    loss, params, n = linear_regression(d=10)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=2e-6, gamma=1.0, nbeta=1000.0, num_chains=8, num_draws=1000,
                                                 num_burnin=0))
    assert r.mean < 0.7 * 5.0  # still climbing towards d/2 = 5: the estimate is biased low
    # The chains move so slowly (τ of hundreds of draws) that no trend in 1000 draws is significant: the
    # acceptance check is what says so, and what to change.
    assert any("larger epsilon" in p for p in r.problems), r.problems


def test_acceptance_near_one_is_diagnosed():
    loss, params, n = linear_regression(d=5)
    r = estimate_llc(loss, params, n, SGLDConfig(epsilon=1e-7, gamma=1.0, nbeta=1000.0, num_chains=2, num_draws=100,
                                                 num_burnin=0), where="epoch 7")
    assert any("epoch 7" in p and "larger epsilon" in p for p in r.problems), r.problems


def test_orthogonal_restriction_keeps_chains_off_the_slope():
    """Started off the minimum, plain SGLD slides towards lower loss (a negative estimate); with the NV
    restriction the displacement along the starting gradient is removed and far less loss is lost."""
    loss, params, n = linear_regression(d=5)
    grad = torch.func.grad(loss)(params, torch.arange(n))["w"]
    away = {"w": params["w"] + 0.3 * grad / grad.norm()}  # displaced along (minus) the descent direction
    cfg = dict(epsilon=1e-4, gamma=1.0, nbeta=1000.0, num_chains=4, num_draws=300, num_burnin=50)
    plain = estimate_llc(loss, away, n, SGLDConfig(**cfg))
    restricted = estimate_llc(loss, away, n, SGLDConfig(**cfg, orth_grad=True))
    assert plain.mean < 0
    assert restricted.mean > plain.mean + 0.5 * abs(plain.mean), (plain.mean, restricted.mean)
    assert restricted.config["orth_grad"] is True


def ar1(phi: float, shape: tuple[int, int], seed: int, drift: float = 0.0) -> torch.Tensor:
    """AR(1) traces x_t = φ x_{t−1} + e_t (unit-variance stationary), plus ``drift`` per draw."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(*shape, generator=gen, dtype=torch.float64) * (1 - phi ** 2) ** 0.5
    x = torch.empty_like(e)
    x[:, 0] = torch.randn(shape[0], generator=gen, dtype=torch.float64)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x + drift * torch.arange(shape[1], dtype=torch.float64)


def test_integrated_autocorrelation_time_of_an_ar1_process():
    from claimlens.families.llc.metrics import integrated_autocorr_time

    for phi in (0.0, 0.5, 0.9):
        tau = integrated_autocorr_time(ar1(phi, (1, 20000), seed=3)[0])
        assert tau == pytest.approx((1 + phi) / (1 - phi), rel=0.25), (phi, tau)


def _result_with(traces: torch.Tensor):
    from claimlens.families.llc.metrics import LLCResult

    traces = traces + 10.0  # well above the checkpoint's loss of 0
    per_chain = traces.mean(1)
    return LLCResult(float(per_chain.mean()), float(per_chain.std()), per_chain, 0.0, traces,
                     torch.full((traces.shape[0],), 0.9), {"epsilon": 1e-4, "gamma": 100.0, "num_burnin": 0,
                                                          "num_draws": traces.shape[1]})


def test_a_stationary_but_autocorrelated_trace_counts_as_flat():
    """SGLD draws wander slowly (τ ≈ 19 draws here, 28 on the default run): a line through the last 20% of
    a stationary trace often moves by half its spread. Only a significant move is a failure to flatten."""
    from claimlens.families.llc.metrics import diagnose

    flagged = sum(any("not flattened" in p for p in diagnose(_result_with(ar1(0.9, (4, 400), seed=s))))
                  for s in range(40))
    assert flagged <= 2, f"{flagged} of 40 stationary AR(1) traces called not flattened"


def test_a_trace_still_climbing_is_not_flat():
    from claimlens.families.llc.metrics import diagnose

    flagged = sum(any("not flattened" in p for p in diagnose(_result_with(ar1(0.5, (4, 400), seed=s, drift=0.03))))
                  for s in range(20))
    assert flagged >= 18, f"only {flagged} of 20 climbing traces (12 spreads over the run) called not flattened"


def test_llc_over_a_run_is_cached_and_a_damaged_entry_is_recomputed(tiny_mlp_run, tmp_path, monkeypatch):
    from claimlens.families.llc.analysis import llc_over_run

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path))
    cfg = SGLDConfig(epsilon=1e-3, gamma=100.0, num_chains=2, num_draws=40, num_burnin=20, batch_size=32, seed=0)
    first = llc_over_run(tiny_mlp_run, cfg, max_checkpoints=3)
    assert first.epochs[0] == tiny_mlp_run.epochs[0] and first.epochs[-1] == tiny_mlp_run.epochs[-1]
    assert len(first.epochs) == 3 and first.traces.shape == (3, 2, 40) and not first.from_cache
    again = llc_over_run(tiny_mlp_run, cfg, max_checkpoints=3)
    assert again.from_cache and torch.equal(again.mean, first.mean) and again.problems == first.problems
    (entry,) = (tmp_path / "llc").rglob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    redone = llc_over_run(tiny_mlp_run, cfg, max_checkpoints=3)
    assert not redone.from_cache and torch.equal(redone.mean, first.mean)


def test_a_bad_sampled_checkpoint_is_reported_before_any_sampling(tiny_mlp_run, tmp_path, monkeypatch):
    """A run written with NaN weights in its final checkpoint (the manifest's sha256 fits the file): llc_over_run
    names the file before it samples a single checkpoint, not after minutes of sampling the others."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    import claimlens.families.llc.analysis as llc_mod
    from claimlens._io import sha256_file
    from claimlens.errors import CheckpointError
    from claimlens.runs.store import Run

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "run"
    shutil.copytree(tiny_mlp_run.path, path)
    manifest = json.loads((path / "run.json").read_text())
    final = path / manifest["checkpoints"][-1]["file"]
    tensors = load_file(final)
    name = min(tensors)
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, final)
    manifest["checkpoints"][-1]["sha256"] = sha256_file(final)
    (path / "run.json").write_text(json.dumps(manifest))

    def never(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(llc_mod, "estimate_many", never)
    cfg = SGLDConfig(epsilon=1e-3, gamma=100.0, num_chains=2, num_draws=10, num_burnin=5, batch_size=32, seed=0)
    with pytest.raises(CheckpointError, match=rf"epoch {manifest['checkpoints'][-1]['epoch']}.*non-finite"):
        llc_mod.llc_over_run(Run.open(path), cfg, max_checkpoints=3)


def test_checkpoints_sampled_side_by_side_give_the_estimates_of_one_at_a_time(tiny_mlp_run, monkeypatch):
    """llc_over_run's workers: each estimate keeps its own minibatch and noise generators, so running two
    checkpoints at once changes nothing but the summation order inside a product (plain and orthogonal-gradient
    chains); the results keep the order of the checkpoints whatever order they finish in; the intra-op thread
    count (2 here, whatever the machine's) is restored, also when an estimate fails."""
    import time

    import claimlens.families.llc.analysis as llc_mod
    from claimlens.families.llc.analysis import estimate_many, llc_over_run, sampled_epochs

    cfg = SGLDConfig(epsilon=1e-3, gamma=100.0, num_chains=2, num_draws=30, num_burnin=10, batch_size=32, seed=3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        plain = None
        for config in (cfg, dataclasses.replace(cfg, orth_grad=True)):
            alone = llc_over_run(tiny_mlp_run, config, max_checkpoints=4, cache=False, workers=1)
            plain = plain or alone
            together = llc_over_run(tiny_mlp_run, config, max_checkpoints=4, cache=False, workers=2)
            torch.testing.assert_close(together.traces, alone.traces, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(together.mean, alone.mean, rtol=1e-4, atol=1e-6)
            assert len(set(alone.mean.tolist())) == 4  # four different checkpoints: the order is checked
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="workers must be ≥ 1"):
            llc_over_run(tiny_mlp_run, cfg, max_checkpoints=4, cache=False, workers=0)

        real = llc_mod.estimate_at
        epochs = sampled_epochs(tiny_mlp_run, 4)

        def later_first(run, epoch, config, **kw):  # the first checkpoints finish last
            time.sleep(0.05 * (len(epochs) - epochs.index(epoch)))
            return real(run, epoch, config, **kw)

        monkeypatch.setattr(llc_mod, "estimate_at", later_first)
        shuffled = estimate_many(tiny_mlp_run, epochs, cfg, workers=2)
        torch.testing.assert_close(torch.tensor([r.mean for r in shuffled], dtype=torch.float64), plain.mean,
                                   rtol=1e-4, atol=1e-6)

        def failing(run, epoch, config, **kw):
            if epoch == epochs[2]:
                raise RuntimeError("estimate failed")
            return real(run, epoch, config, **kw)

        monkeypatch.setattr(llc_mod, "estimate_at", failing)
        with pytest.raises(RuntimeError, match="estimate failed"):
            llc_over_run(tiny_mlp_run, cfg, max_checkpoints=4, cache=False, workers=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_failed_or_interrupted_batch_of_estimates_stops_the_running_ones(tiny_mlp_run, monkeypatch):
    """When one estimate of estimate_many fails (or the user interrupts), the estimate running beside it is told
    to stop and ends within a step (metrics.llc.Stopped), instead of running to its end; a stop event set before
    the first step stops an estimate before any step."""
    import threading

    import claimlens.families.llc.analysis as llc_mod
    from claimlens.families.llc.analysis import estimate_at, estimate_many, sampled_epochs
    from claimlens.families.llc.metrics import Stopped

    cfg = SGLDConfig(epsilon=1e-3, gamma=100.0, num_chains=2, num_draws=30, num_burnin=10, batch_size=32, seed=3)
    epochs = sampled_epochs(tiny_mlp_run, 2)
    stopped = threading.Event()
    stopped.set()
    with pytest.raises(Stopped, match="stopped after 0 of 40 steps"):
        estimate_at(tiny_mlp_run, epochs[0], cfg, stop=stopped)

    seen: dict[int, object] = {}
    running = threading.Event()

    def fake(run, epoch, config, *, stop=None, **kw):
        if epoch == epochs[0]:  # the long estimate: runs until it is told to stop
            running.set()
            seen["told"] = stop.wait(timeout=30)
            raise Stopped("stopped")
        running.wait(timeout=30)
        raise KeyboardInterrupt  # the user, while the other one runs

    monkeypatch.setattr(llc_mod, "estimate_at", fake)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            estimate_many(tiny_mlp_run, epochs, cfg, workers=2)
        assert seen["told"] is True, "the running estimate was not told to stop"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_noise_does_not_depend_on_the_thread_count():
    from claimlens.families.llc.metrics import _Noise

    threads = torch.get_num_threads()
    draws = []
    try:
        for n in (1, max(threads, 2)):
            torch.set_num_threads(n)
            noise = _Noise(1001, seed=7)
            draws.append(torch.stack([noise.next().clone() for _ in range(3)]))
            noise.close()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1])


# ----------------------------------------------------------------------------- health (E2-09, E2-10)


def test_a_nan_acceptance_is_a_divergence_not_a_healthy_chain():
    """E2-10: NaN compares false with both acceptance bounds; it must be reported, naming the chain."""
    gen = torch.Generator().manual_seed(0)
    traces = 0.05 + 0.005 * torch.randn(4, 400, generator=gen)
    per_chain = 26.4 * (traces.double().mean(1) - 0.01)
    r = LLCResult(float(per_chain.mean()), float(per_chain.std()), per_chain, 0.01, traces,
                  torch.tensor([float("nan"), 0.91, 0.90, 0.92]),
                  {"epsilon": 1e-4, "gamma": 300.0, "num_burnin": 300, "num_draws": 400, "nbeta": 26.4})
    problems = diagnose(r, where="E2-10")
    assert len(problems) == 1 and "chain 0 diverged: the MALA acceptance is not finite" in problems[0]


def test_a_non_finite_energy_gives_a_nan_acceptance():
    from claimlens.families.llc.metrics import _mala_acceptance

    w = {"x": torch.zeros(2, 3)}
    new = {"x": torch.ones(2, 3)}
    U, U_new = torch.tensor([1.0, 1.0]), torch.tensor([float("inf"), 2.0])
    g = {"x": torch.zeros(2, 3)}
    a = _mala_acceptance(w, new, U, U_new, g, g, 1e-2)
    assert math.isnan(float(a[0])) and 0 <= float(a[1]) <= 1


def test_nbeta_follows_the_batch_actually_drawn():
    """A training set smaller than the nominal minibatch must not get the nominal batch's nβ."""
    config = SGLDConfig(batch_size=128)
    assert config.effective_batch(50) == 50 and config.resolved_nbeta(50) == pytest.approx(50 / math.log(50))
    assert config.resolved_nbeta(1000) == pytest.approx(128 / math.log(128))
    r = estimate_llc(lambda w, rows: (w["x"] ** 2).sum() + 0 * rows.sum(), {"x": torch.zeros(2)}, 50,
                     SGLDConfig(batch_size=128, num_chains=2, num_draws=20, num_burnin=5, epsilon=1e-3, gamma=10))
    assert r.config["effective_batch_size"] == 50 and r.config["nbeta"] == pytest.approx(50 / math.log(50))


def test_frozen_parameters_are_held_by_training_and_left_out_of_the_llc(tmp_path):
    """E2-09: a spec that freezes the MLP biases (as the TransformerLens demo does): training keeps them at their
    initial zeros, and the LLC samples only the rest and records the frozen set."""
    from claimlens.families.llc.analysis import estimate_at
    from claimlens.training import Trainer
    from conftest import tiny_spec

    base = tiny_spec(epochs=20, checkpoint_every=10)
    frozen = ("blocks.0.mlp.b_in", "blocks.0.mlp.b_out")
    spec = dataclasses.replace(base, model=dataclasses.replace(base.model, frozen=frozen)).validate()
    assert spec.hash != base.hash and tiny_spec().hash == tiny_spec().hash
    run = Trainer(spec, tmp_path / "frozen", progress=False).train()
    for epoch in run.epochs:
        params = run.checkpoint(epoch)
        assert not params["blocks.0.mlp.b_in"].any() and not params["blocks.0.mlp.b_out"].any()
    assert run.checkpoint(run.epochs[-1])["blocks.0.mlp.W_in"].abs().sum() > 0
    r = estimate_at(run, run.epochs[-1], SGLDConfig(num_chains=2, num_draws=20, num_burnin=5, batch_size=64))
    assert set(frozen) <= set(r.config["frozen"])


def test_an_unknown_frozen_name_is_refused():
    from claimlens.errors import SpecError
    from claimlens.models import frozen_params
    from conftest import tiny_spec

    spec = tiny_spec()
    cfg = dataclasses.replace(spec.model, frozen=("blocks.0.mlp.b_middle",))
    with pytest.raises(SpecError, match=r"model.frozen names \['blocks.0.mlp.b_middle'\]"):
        frozen_params(cfg, 23)


# ----------------------------------------------------------------------------- devinterp's convention


def _rows_engine(values):
    """A loss-and-gradient engine for ``L(w, rows) = mean(values[rows]) + ½‖w‖²`` that records the rows of
    every call; the MALA diagnostic's second pass on the same rows is dropped from the record."""
    seen = []

    def engine(w, rows, out):
        if not seen or not torch.equal(seen[-1], rows):
            seen.append(rows.clone())
        out["w"].copy_(w["w"])
        return values[rows].mean(1) + 0.5 * w["w"].double().pow(2).sum(1)

    def loss(params, rows):
        return values[rows].mean() + 0.5 * params["w"].double().pow(2).sum()

    return loss, engine, seen


def test_devinterp_convention_draws_devinterp_minibatches_and_reference_loss():
    """``convention="devinterp"``: the minibatches of devinterp 2's sampler (one ``DataLoader`` shuffle at the seed,
    whole batches only, replayed in order, the same for every chain) and L(w*) the mean of its first 32
    minibatches; the default draws fresh rows per chain and step and takes L(w*) over all rows."""
    from torch.utils.data import DataLoader

    n, B, C = 50, 8, 3  # 6 whole minibatches; 2 rows never used
    values = torch.arange(n, dtype=torch.float64) ** 2  # each row's loss differs: L(w*) shows which rows it saw
    base = SGLDConfig(epsilon=1e-3, gamma=1.0, nbeta=10.0, num_chains=C, num_draws=20, num_burnin=5,
                      batch_size=B, seed=3)
    loss, engine, seen = _rows_engine(values)
    r = estimate_llc(loss, {"w": torch.zeros(2)}, n, dataclasses.replace(base, convention="devinterp"),
                     loss_and_grad=engine)
    loader = [b.long() for b in DataLoader(torch.arange(n), batch_size=B, shuffle=True, drop_last=True,
                                           generator=torch.Generator().manual_seed(3))]
    assert len(seen) == base.num_burnin + base.num_draws + 1  # the last drawn after the last step, unused
    for t, rows in enumerate(seen):
        assert rows.shape == (C, B) and (rows == rows[0]).all(), "every chain gets the same minibatch"
        assert torch.equal(rows[0], loader[t % len(loader)]), f"step {t}: not devinterp's minibatch"
    assert len(torch.cat(loader).unique()) == n // B * B
    reference = sum(float(values[loader[i % len(loader)]].mean()) for i in range(32)) / 32
    assert r.init_loss == pytest.approx(reference, rel=1e-12)
    assert r.init_loss != pytest.approx(float(values.mean()), rel=1e-3)  # not the loss over all rows

    loss, engine, seen = _rows_engine(values)
    d = estimate_llc(loss, {"w": torch.zeros(2)}, n, base, loss_and_grad=engine)
    assert d.init_loss == pytest.approx(float(values.mean()), rel=1e-12)
    assert any(not (rows == rows[0]).all() for rows in seen), "by default each chain draws its own rows"
    assert len(torch.cat(seen).unique()) == n
    # Full batch the two conventions are one.
    full = dataclasses.replace(base, batch_size=None)
    a = estimate_llc(loss, {"w": torch.zeros(2)}, n, full, loss_and_grad=_rows_engine(values)[1])
    b = estimate_llc(loss, {"w": torch.zeros(2)}, n, dataclasses.replace(full, convention="devinterp"),
                     loss_and_grad=_rows_engine(values)[1])
    assert torch.equal(a.traces, b.traces) and a.init_loss == b.init_loss


@pytest.mark.parametrize("convention", ["claimlens", "devinterp"])
def test_both_conventions_give_the_known_coefficient_with_minibatches(convention):
    """Minibatches of 128 from 1123 rows, the default run's sizes (the full-batch tests above cannot tell the
    conventions apart): linear regression, whose λ̂ at localisation γ is ½ Σ nβ·h / (nβ·h + γ) over the
    eigenvalues h of the loss's Hessian XᵀX/n (4.82 here; d/2 = 5 as γ → 0). Measured: 5.00 ± 0.11 for both
    conventions at this seed, and 4.78 ± 0.04 for both over 64 chains × 4000 draws (standard errors)."""
    loss, params, n = linear_regression(d=10, n=1123)
    gen = torch.Generator().manual_seed(0)  # linear_regression's X
    X = torch.randn(n, 10, generator=gen)
    nbeta, gamma = 128 / math.log(128), 1.0
    h = torch.linalg.eigvalsh(X.T @ X / n)
    expected = float((nbeta * h / (nbeta * h + gamma)).sum() / 2)
    cfg = SGLDConfig(epsilon=1e-3, gamma=gamma, num_chains=16, num_draws=3000, num_burnin=500, batch_size=128, seed=7,
                     convention=convention)
    r = estimate_llc(loss, params, n, cfg)
    assert r.config["nbeta"] == pytest.approx(nbeta)
    assert abs(r.mean - expected) / expected < 0.06, f"LLC {r.mean:.3f} ± {r.std / 4:.3f}, expected {expected:.3f}"


def test_an_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="unknown LLC convention 'aether'; use one of claimlens, devinterp"):
        SGLDConfig(convention="aether")


def test_the_convention_stays_out_of_the_cache_key_at_its_default():
    """Series cached before the field existed keep their keys; the devinterp convention gets keys of its own."""
    from claimlens.families.llc.analysis import DEFAULT_CONFIGS, cache_config

    for cfg in DEFAULT_CONFIGS.values():
        before = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "convention"}
        assert cache_config(cfg) == before
        assert cache_config(dataclasses.replace(cfg, convention="devinterp")) == {**before, "convention": "devinterp"}


def test_devinterp_convention_reproduces_devinterp_given_the_same_noise(tmp_path, monkeypatch):
    """Side by side with devinterp 2 itself on a tiny classifier: at ``convention="devinterp"``, fed the normal
    draws devinterp made, claimlens gives devinterp's L(w*), loss trace and λ̂ to float rounding (the SGLD step,
    the minibatches, the reference loss and the draws counted are the same; only the random numbers differ
    between the libraries, and that is chain noise)."""
    pytest.importorskip("devinterp", reason="devinterp is the bench extra's, not a core dependency: "
                                            "pip install -e '.[bench]'")
    pytest.importorskip("datasets", reason="devinterp's dataset type; comes with pip install -e '.[bench]'")
    import devinterp.slt.sampler as dv_sampler
    from datasets import Dataset
    from devinterp.slt.sampling import sample
    from tqdm.auto import trange

    from claimlens.families.llc import metrics

    monkeypatch.setattr(dv_sampler, "trange", functools.partial(trange, disable=True))  # no progress bars
    V, n, B, C, burnin, draws = 7, 49, 8, 2, 5, 30
    gen = torch.Generator().manual_seed(0)
    a, b = torch.arange(n) // V, torch.arange(n) % V
    rows = torch.stack([a, b, (a + b) % V], 1)  # input_ids [a, b, label]
    init = {"E": torch.randn(V, 4, generator=gen), "W": torch.randn(8, V, generator=gen)}

    def logits_of(p, tokens):
        return torch.cat([p["E"][tokens[..., 0]], p["E"][tokens[..., 1]]], -1) @ p["W"]

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.E, self.W = (torch.nn.Parameter(init[k].clone()) for k in ("E", "W"))

        def forward(self, input_ids):
            return logits_of({"E": self.E, "W": self.W}, input_ids)

    def dv_loss(model, input_ids):  # devinterp wants a loss per token [batch, seq − 1]: the example's, twice
        per_row = torch.nn.functional.cross_entropy(model(input_ids), input_ids[:, -1], reduction="none")
        return per_row.unsqueeze(1).expand(-1, input_ids.shape[1] - 1)

    def loss(p, idx):
        return torch.nn.functional.cross_entropy(logits_of(p, rows[idx]), rows[idx, -1])

    cfg = SGLDConfig(epsilon=1e-3, gamma=10.0, nbeta=20.0, num_chains=C, num_draws=draws, num_burnin=burnin,
                     batch_size=B, seed=5, convention="devinterp")
    drawn = []
    real_normal = torch.normal

    def recording_normal(*args, **kwargs):
        out = real_normal(*args, **kwargs)
        drawn.append(out.clone())
        return out

    model = Tiny()
    order = [name for name, _ in model.named_parameters()]
    monkeypatch.setattr(torch, "normal", recording_normal)
    out = sample(model, Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch"), {}, lr=cfg.epsilon,
                 n_beta=cfg.nbeta, localization=cfg.gamma, num_chains=C, num_draws=draws,
                 num_burnin_steps=burnin, batch_size=B, init_seed=cfg.seed, device="cpu", loss_fn=dv_loss,
                 output_path=tmp_path / "samples.zarr")
    monkeypatch.setattr(torch, "normal", real_normal)
    steps = burnin + draws
    assert len(drawn) == C * steps * len(order)  # chain after chain, step after step, one draw per tensor
    noise = {(c, t, name): drawn[(c * steps + t) * len(order) + i]
             for c in range(C) for t in range(steps) for i, name in enumerate(order)}
    step = iter(range(steps))

    def devinterps_draws(self):
        t = next(step)
        self.buffer.copy_(torch.cat([torch.stack([noise[c, t, k] for c in range(C)]).reshape(-1)
                                     for k in sorted(order)]))
        return self.buffer

    monkeypatch.setattr(metrics._Noise, "next", devinterps_draws)
    ours = estimate_llc(loss, init, n, cfg)
    ds = out.dataset
    theirs = torch.as_tensor(ds.sampling_loss_micro.mean(dim=["batch_sampling", "token_pos"]).values)[:, burnin:]
    their_init = float(ds.init_loss.values.mean())
    assert ours.init_loss == pytest.approx(their_init, rel=1e-5)
    torch.testing.assert_close(ours.traces, theirs.float(), rtol=1e-4, atol=1e-6)
    their_llc = cfg.nbeta * (theirs.double().mean(1) - their_init)
    torch.testing.assert_close(ours.per_chain, their_llc, rtol=1e-4, atol=1e-5)
    assert float(theirs.std()) > 0.01, "the chains moved: the comparison is not of constant traces"


# ----------------------------------------------------------------------------- λ̂ linear in p (a run set)


def _linear_th():
    from claimlens.core.verdicts import Bound
    from claimlens.families.llc import rules as LLC

    return {k: Bound(t.value, k, t.source) for k, t in LLC.LINEAR_IN_P.thresholds.items()}


def test_linear_in_p_fits_a_line_and_leaves_out_the_members_that_did_not_generalise():
    from claimlens.families.llc import rules as LLC

    line = [(p, 2.0 * p + 5.0, 1.0) for p in (23, 31, 41, 53)] + [(61, 500.0, 0.3)]
    v = LLC.linear_in_p(line, _linear_th())
    assert v.passed, v.failure_message()
    values = {c.name: c.value for c in v.checks}
    assert values["slope of λ̂ against p"] == pytest.approx(2.0)
    assert values["intercept"] == pytest.approx(5.0)
    assert values["R² of the linear fit of λ̂ against p"] == pytest.approx(1.0)
    assert values["members left out: they did not generalise"] == 1


def test_linear_in_p_fails_on_values_that_do_not_follow_p_and_skips_too_few_members():
    from claimlens.families.llc import rules as LLC

    zigzag = [(23, 10.0, 1.0), (31, 30.0, 1.0), (41, 12.0, 1.0), (53, 28.0, 1.0), (61, 11.0, 1.0)]
    v = LLC.linear_in_p(zigzag, _linear_th())
    assert not v.passed and "R²" in v.failure_message()
    assert LLC.linear_in_p([(23, 1.0, 1.0), (31, 2.0, 1.0), (41, 3.0, 0.5)], _linear_th()).skipped


def _members(final_slope, init_slope, se, ps=(23, 31, 41, 53, 61)):
    """Synthetic λ̂ against p: exact lines at the final and first checkpoints, every λ̂ with standard error ``se``."""
    from claimlens.families.llc import rules as LLC

    return [LLC.PMember(p, final_slope * p - 100.0, 1.0, se, init_slope * p + 60.0, se) for p in ps]


def test_linear_in_p_passes_when_training_steepens_the_line():
    """The sweep's shape (docs/sweeps.md: final slope 11.6, initial 0.8): both parts of the control pass."""
    from claimlens.families.llc import rules as LLC

    v = LLC.linear_in_p(_members(11.6, 0.8, 5.0), _linear_th())
    assert v.passed, v.failure_message()
    by = {c.name: c for c in v.checks}
    diff = by["slope_final − slope_init, in standard errors of the difference"]
    # slope standard error √Σ wᵢ² se² = se / √Sxx for each line; the two are independent
    sxx = sum((p - 41.8) ** 2 for p in (23, 31, 41, 53, 61))
    assert diff.value == pytest.approx((11.6 - 0.8) / (5.0 * math.sqrt(2 / sxx)))
    assert by["slope_init / slope_final"].value == pytest.approx(0.8 / 11.6)
    assert by["slope of λ̂ against p at the first checkpoint"].value == pytest.approx(0.8)


def test_linear_in_p_fails_when_the_initial_slope_is_too_large():
    """Untrained members already on a line nearly as steep (R² 1 at both): R² passes, the control fails."""
    from claimlens.families.llc import rules as LLC

    v = LLC.linear_in_p(_members(11.6, 4.0, 0.5), _linear_th())
    assert not v.passed
    assert [c.name for c in v.failures] == ["slope_init / slope_final"]
    assert {c.name: c.status for c in v.checks}["R² of the linear fit of λ̂ against p"] == "passed"


def test_linear_in_p_fails_when_the_slopes_differ_within_the_chains_noise():
    """A final slope above the initial one by less than 3 standard errors fails, even with slope_init ≤ 0.2 ×
    slope_final."""
    from claimlens.families.llc import rules as LLC

    v = LLC.linear_in_p(_members(2.0, 0.2, 20.0), _linear_th())
    assert not v.passed
    assert [c.name for c in v.failures] == ["slope_final − slope_init, in standard errors of the difference"]
    assert v.failures[0].value < 3


def test_linear_in_p_without_initial_estimates_leaves_the_control_not_judged():
    from claimlens.families.llc import rules as LLC

    v = LLC.linear_in_p([(p, 2.0 * p, 1.0) for p in (23, 31, 41)], _linear_th())
    assert v.passed
    assert sorted(c.status for c in v.checks if c.name.startswith("slope_")) == ["not judged", "not judged"]


def test_linear_in_p_config_is_the_hackathons():
    from claimlens.families.llc import rules as LLC

    c = LLC.linear_in_p_config(1124)
    assert (c.epsilon, c.gamma, c.batch_size, c.orth_grad) == (1e-3, 5.0, 64, True)
    assert c.num_burnin + c.num_draws == 3000 and c.num_draws == 2250  # the last 75% of 3000 steps averaged
    assert c.resolved_nbeta(1124) == pytest.approx(1124 / math.log(1124))
