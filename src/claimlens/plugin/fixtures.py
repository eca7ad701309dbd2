"""The fixtures every family's claim tests share, and the skip helpers of the families' own fixtures. Importing this
module imports no torch; each fixture imports what it needs.

``run`` (parametrized by the plugin over ``--run``), ``run_set`` (a set of runs), ``training_log``,
``final_checkpoints`` (the session's kept final checkpoints), ``final_checkpoint`` / ``final_activations`` (the final checkpoint and its forward pass, shared; ``final_model`` the
same for a run that generalised), ``claim`` (:class:`claimlens.Claim`: judge, note, chart) and
``thresholds``. Each family's own fixtures (``run_series`` and ``phases``, ``llc_series``, ``pizza_clock``,
``induction``, ``lowrank``, ``weight_norms``, …) are in ``claimlens/families/<family>/fixtures.py``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import pytest

from claimlens.config import TransformerConfig
from claimlens.plugin import session
from claimlens.plugin.claim import Claim, not_judged, spec_of
from claimlens.plugin.session import CLAIM


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest):
    """The :class:`claimlens.runs.Run` under test (trained and cached first if given as a spec)."""
    if not request.param.present:  # the session's inputs are all run sets
        labels = [ref.label for ref in session.of(request.config).sets()]
        pytest.skip(f"no run in this session: its inputs are run sets ({', '.join(labels)}), which the set claims "
                    f"judge; a per-run claim judges runs (--run RUN, or no --run for the built-in runs)")
    with uncaptured(request):  # training on first use takes minutes: its progress bar shows through the capture
        return request.param.open(device=request.config.getoption("claimlens_device"))


def uncaptured(request: pytest.FixtureRequest):
    """A context in which output (progress bars of long work) reaches the terminal through pytest's capture."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    return capture.global_and_fixture_disabled() if capture is not None else nullcontext()


@pytest.fixture(scope="session")
def run_set(request: pytest.FixtureRequest):
    """The :class:`claimlens.runsets.RunSet` under test (a sweep's runs, trained on first use and cached; a
    built-in curves set; or the rows of a built-in sweep table set). Parametrized over ``--run SWEEP.toml`` /
    ``--run nanda2022_fractions`` / ``--run zhong2023_sweep`` and, with
    ``--claims-sweeps``, the built-in sweeps; without any, the test is skipped with the command that runs it."""
    ref = request.param
    if not ref.present:
        pytest.skip(no_set_reason(request.config))
    with uncaptured(request):
        return ref.open(device=request.config.getoption("claimlens_device"))


def no_set_reason(config: pytest.Config) -> str:

    from claimlens.plugin.runs import builtin_sweeps, member_refs

    sweeps = builtin_sweeps()
    members = sum(len(member_refs(r)) for r in sweeps)
    return (f"no run set in this session: the built-in sweeps are opt-in (`pytest claims/ --claims-sweeps` trains "
            f"{members} runs of {len(sweeps)} sweeps on first use, about a minute each on 2 CPU cores, cached after; "
            f"docs/sweeps.md), or name one with --run fixtures/sweeps/NAME.toml; the sources' own sweeps: --run "
            f"nanda2022_fractions (training fraction, losses), --run zhong2023_sweep (attention rate, measured values)")


@contextmanager
def clear_errors(run):
    """A bad input met while analysing a run (an unreadable or non-finite checkpoint) fails the claim with the
    one-line message that names it, not a traceback."""
    from claimlens.errors import ClaimlensError

    try:
        yield
    except ClaimlensError as exc:
        fail_about(run, exc)


def fail_about(run, exc: Exception):
    """End the test unjudged (:class:`claimlens.plugin.claim.ClaimNotJudged`, recorded as ``error``) with ``exc``'s
    message, prefixed with the run's name unless it already names the run first, and without the "During handling
    of the above exception" chain. A measure that needs the split of a run whose split is unknown
    (:class:`claimlens.errors.SplitUnknown`) skips instead, saying so."""
    from claimlens.errors import SplitUnknown

    if isinstance(exc, SplitUnknown):
        pytest.skip(str(exc))
    raise not_judged(run, exc) from None


def needs_weights(run, what: str = "this claim needs the model's weights") -> None:
    """Skip, with the reason, on a curves-only run (digitised or logged curves, no checkpoints)."""
    if not run.has_weights:
        pytest.skip(f"run {run.name!r} is a curves-only run ({run.description or 'no weights'}): {what}")


def needs_equals_token(run, what: str) -> None:
    """Skip, with the reason, a transformer that reads [a, b] without '=' (Clock/Pizza): ``what`` is about '='."""
    model = run.spec.model if run.has_weights else None
    if isinstance(model, TransformerConfig) and not model.equals_token:
        pytest.skip(f"run {run.name!r} reads [a, b] without an '=' token (equals_token = false): {what}")


def needs_one_layer(run, claim) -> None:
    """Skip, with the reason, a transformer of several layers under a claim about Nanda et al.'s 1-layer circuit
    (catalogue §3.1: its attention heads, its one MLP's neurons, ``W_L = W_out @ W_U``, the ablations of its skip
    connections): such a model computes with other parts, and the claim says nothing about them. ``claim``: the
    test's :class:`claimlens.plugin.claim.Claim` (its id and source name the circuit)."""
    model = run.spec.model if run.has_weights else None
    if isinstance(model, TransformerConfig) and model.n_layers != 1:
        pytest.skip(f"claim {claim.spec.id} reads the 1-layer circuit of {claim.spec.source}; run {run.name!r} is a "
                    f"transformer of {model.n_layers} layers")


def needs_transformer(run) -> None:
    """Skip, with the reason, a run that is not a transformer (an MLP, an attention-only model, a curves-only run):
    the claim reads the transformer's activations."""
    needs_weights(run)
    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}; this claim needs the transformer's activations")


@pytest.fixture(scope="session")
def training_log(run):
    """The run's per-epoch training log as series (``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``):
    from its ``log.jsonl``, or a curves-only run's curves."""
    from claimlens.core.series import Series

    if not run.has_weights:
        return {n: run.series[n] for n in ("train_loss", "test_loss", "train_acc", "test_acc") if n in run.series}
    run.task.require_split("the training log (its train and test curves)")  # unknown: the claim skips, saying so
    log = run.log()
    return {n: Series.of(n, log["epoch"], log[n]) for n in ("train_loss", "test_loss", "train_acc", "test_acc")}


@pytest.fixture(scope="session")
def final_checkpoints(request: pytest.FixtureRequest):
    """The final checkpoints the session keeps with their activations
    (:class:`claimlens.core.checkpoint.FinalCheckpoints`, emptied at the session's end): analyses given it share
    each run's final forward pass with the claims about the final model."""
    return session.of(request.config).checkpoints


@pytest.fixture(scope="session")
def final_checkpoint(run, final_checkpoints):
    """The final checkpoint of ``run`` (:class:`claimlens.core.checkpoint.Checkpoint`), shared with the analyses."""
    from claimlens.core.checkpoint import final_checkpoint as final

    needs_weights(run)
    with clear_errors(run):
        checkpoint = final(run, final_checkpoints)
        checkpoint.activations  # noqa: B018 (read now: a bad checkpoint fails here, with its name)
    return checkpoint


GENERALISED_TEST_ACC = 0.99  # the source's final models reach 100% test accuracy (catalogue §3.1, §4)


@pytest.fixture(scope="session")
def final_model(run, final_checkpoint):
    """The final checkpoint of a run that generalised (final test accuracy ≥ 0.99; when the split is unknown,
    accuracy ≥ 0.99 on all p² pairs: the model computes the task on them, whatever its split was). The
    final-model claims of §3.1 describe the algorithm of a grokked model; on a run that never generalised (a
    negative control) they are skipped with that reason rather than judged on a model that implements no such
    algorithm."""
    split_known = run.task.split_known
    log = run.log()
    acc = log["test_acc" if split_known else "all_acc"]
    final = float(acc[-1]) if len(acc) else float("nan")
    if not final >= GENERALISED_TEST_ACC:
        what = "final test accuracy" if split_known else "final accuracy on all pairs (the split is unknown)"
        pytest.skip(f"run {run.name!r} did not generalise ({what} {final:.3f} < {GENERALISED_TEST_ACC}): this claim "
                    f"describes the algorithm of a grokked model")
    return final_checkpoint


@pytest.fixture(scope="session")
def final_activations(final_checkpoint):
    """The forward pass of the final checkpoint over all p² inputs, shared by the claims about the final model
    (:class:`claimlens.models.Activations`: logits, attention pattern, MLP pre/post activations)."""
    return final_checkpoint.activations


def needs_mlp(run, what: str) -> None:
    """Skip, with the reason, a run that is not an MLP of the modular-addition task (or a curves-only run)."""
    needs_weights(run, what)
    if run.spec.model.kind != "mlp":
        pytest.skip(f"run {run.name!r} is a {run.spec.model.kind.replace('_', '-')} model: {what}")


def needs_sequences(run, what: str) -> None:
    """Skip, with the reason, a run that is not of the repeated-subsequence task (or a curves-only run)."""
    needs_weights(run, what)
    if not run.spec.task.is_sequences:
        pytest.skip(f"run {run.name!r} learns {run.spec.task.kind.replace('_', ' ')}: {what}")


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> Claim:
    """This test's claim (:class:`claimlens.Claim`): its spec from ``@pytest.mark.claim``, its thresholds with the
    overrides of pyproject.toml and ``--claims-threshold`` applied, and its verdict. Hand over a verdict with
    ``claim.judge(...)`` (the claim's bound rule on the data, or a ``Verdict`` built in the test), add text with
    ``claim.note(...)`` and a series with ``claim.chart(...)``; everything goes into ``claims.json``."""
    from claimlens.thresholds import Thresholds

    existing = request.node.stash.get(CLAIM, None)
    if existing is not None:
        return existing
    marker = request.node.get_closest_marker("claim")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the claim fixture needs @pytest.mark.claim(...)")
    spec = spec_of(marker, request.node)
    c = Claim(spec, Thresholds(spec.id, session.of(request.config).thresholds.get(spec.id), specs=spec.thresholds))
    request.node.stash[CLAIM] = c
    return c


@pytest.fixture
def thresholds(claim: Claim):
    """The pass thresholds of this test's claim (``thresholds["delay_ratio"]``), overrides applied."""
    return claim.thresholds
