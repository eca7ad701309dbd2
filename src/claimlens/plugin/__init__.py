"""The claimlens pytest plugin (registered through the ``pytest11`` entry point): hooks only.

Importing it is cheap (no torch). Layout, as pytest-benchmark's:

* here: the options and the hooks (configure, parametrize over runs, training the runs a first session needs all
  at once through :mod:`claimlens.executor` after a line naming them, make records, finish, summary);
* :mod:`claimlens.plugin.fixtures`: the fixtures every family's claim tests share (``run``, ``run_set``,
  ``final_checkpoint``, ``final_activations``, ``claim``, ``thresholds``, …); each family's own (``run_series``,
  ``phases``, ``llc_series``, …) are in ``claimlens/families/<family>/fixtures.py``, registered here;
* :mod:`claimlens.plugin.session`: the session's state (one :class:`~claimlens.plugin.session.ClaimSession` in
  ``config.stash``), the end of the session (claims.json, HTML) and the baseline gate;
* :mod:`claimlens.plugin.hookspec`: hooks other plugins can implement (``pytest_claimlens_record``,
  ``pytest_claimlens_update_document``);
* :mod:`claimlens.plugin.runs`: what ``--run`` values mean; :mod:`claimlens.plugin.claim`: the ``claim``
  fixture's object (checks, the verdict, the record).

Options: ``--run PATH`` (repeatable; a test taking ``run`` is parametrized over the runs, ids ``run=<name>``,
and a test taking ``run`` and ``epoch`` over every checkpoint, ids ``run=<name>-epoch=<e>``; default: the
built-in default run), and every other option under ``--claims-`` (``--claims-report DIR``, the baseline
options, ``--claims-threshold``, ``--claims-llc-checkpoints``, …).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claimlens.plugin import session
from claimlens.plugin.runs import NoSet, RunInput, resolve_refs
from claimlens.plugin.session import CLAIM, SESSION, ClaimSession

DEPRECATED_OPTIONS = {"--llc-checkpoints": "--claims-llc-checkpoints"}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from claimlens.plugin import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claimlens", "claimlens: claims about training runs")
    group.addoption(
        "--run", action="append", dest="claimlens_runs", default=[], metavar="PATH",
        help="run to judge: a run directory, a spec TOML (trained on first use and cached), a built-in run by name "
             "(default, pizza, nanda2022, …) or a run on the Hugging Face Hub (hf://OWNER/REPO[/PATH][@REVISION], "
             "through its cache; HF_HUB_OFFLINE=1: the cache only). Repeatable. Default: the built-in runs.",
    )
    group.addoption(
        "--claims-sweeps", dest="claimlens_sweeps", action="store_true",
        help="judge the claims about sets of runs on the built-in sweeps (fixtures/sweeps/*.toml), training their "
             "runs on first use (minutes; cached after). Without it those claims are skipped, saying the cost.",
    )
    group.addoption(
        "--claims-member", dest="claimlens_members", action="append", default=[], metavar="LABEL",
        help="of a sweep named with --run, judge only this member per run (repeatable): one process per member on "
             "a CI matrix, their reports joined with `claimlens merge` (docs/sweeps.md).",
    )
    group.addoption(
        "--claims-seeds", dest="claimlens_seeds", type=int, default=1, metavar="N",
        help="judge N seeds of every spec run (train.seed 0 … N−1, trained on first use and cached): each claim "
             "then reports 'holds in k of n' seeds with a 95%% interval. Default: 1.",
    )
    group.addoption(
        "--claims-device", dest="claimlens_device", default="auto", metavar="DEVICE",
        help="device for training a run on first use (auto, cpu, cuda): the device's class is part of the run's "
             "cache key. Default: auto (CUDA when available, else the CPU).",
    )
    group.addoption(
        "--claims-executor", dest="claimlens_executor", default=None, metavar="EXECUTOR",
        help="where the runs a session trains first are trained, all at once before the first test: pool (a process "
             "per core), pool:N, serial, dask (a Dask LocalCluster), dask:tcp://HOST:PORT (a running Dask "
             "scheduler). Default: $CLAIMLENS_EXECUTOR, else pool.",
    )
    group.addoption(
        "--claims-report", dest="claimlens_report", default="reports", metavar="DIR",
        help="where claims.json and claims.html are written after a session that ran claim tests. Default: reports/.",
    )
    group.addoption(
        "--claims-baseline", dest="claimlens_baseline", default=None, metavar="FILE",
        help="compare with a stored claims.json: list flips, added/removed tests and the largest moves of "
             "measured values. If FILE does not exist, this session's report is stored there.",
    )
    group.addoption(
        "--claims-baseline-update", dest="claimlens_baseline_update", action="store_true",
        help="accept this session's values: overwrite the --claims-baseline file.",
    )
    group.addoption(
        "--claims-rtol", dest="claimlens_rtol", type=float, default=0.05, metavar="RTOL",
        help="relative tolerance for moves of measured values against the baseline (log-scale series: orders "
             "of magnitude). Default: 0.05.",
    )
    group.addoption(
        "--claims-tolerance", dest="claimlens_tolerances", action="append", default=[], metavar="NAME=RTOL",
        help="tolerance for one measurement or series name, e.g. --claims-tolerance test_loss=0.5. Repeatable.",
    )
    group.addoption(
        "--claims-threshold", dest="claimlens_thresholds", action="append", default=[], metavar="CLAIM.NAME=VALUE",
        help="judge a claim by another threshold, e.g. --claims-threshold "
             "trig_loss_all_equals_train.max_abs_log10_ratio=0.1. Repeatable; wins over "
             "[tool.claimlens.thresholds.CLAIM] in pyproject.toml. `claimlens thresholds` lists them all.",
    )
    group.addoption(
        "--claims-llc-checkpoints", dest="claimlens_llc_checkpoints", type=int, default=None, metavar="N",
        help="the learning-coefficient claims estimate the LLC at N checkpoints spread evenly over the run "
             "(first and last included; cached on disk per run and SGLD configuration). Default: 16.",
    )
    group.addoption(
        "--llc-checkpoints", dest="claimlens_llc_checkpoints_deprecated", type=int, default=None, metavar="N",
        help="deprecated spelling of --claims-llc-checkpoints (removed in the next release).",
    )
    group.addoption(
        "--claims-fail-on", dest="claimlens_fail_on", choices=("failures", "flips"), default="failures",
        help="'failures' (default): any failed claim fails the session; 'flips': with --claims-baseline, only "
             "claims that passed in the baseline and fail now fail the session.",
    )


def _share_cores_among_workers() -> None:
    """Under pytest-xdist each worker would otherwise start one torch thread per core: ``-n 2`` on 2 cores runs
    4 busy threads that stall each other (a training step measured ~40× slower). Each worker gets its share of
    the cores instead, unless the thread count was set by the user (``OMP_NUM_THREADS``)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers or os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "run_set_axis(axis): this set claim needs run sets varying AXIS (e.g. "
                                       "'model.attn_rate'); other sets are skipped before they are trained")
    config.addinivalue_line("markers", "claim(spec) or claim(id, statement, source, kind, thresholds): a published "
                                       "claim judged by this test")
    _share_cores_among_workers()
    if not config.pluginmanager.has_plugin("claimlens-split-unknown"):
        config.pluginmanager.register(_SplitUnknownSkips(), "claimlens-split-unknown")
    given = config.getoption("claimlens_runs")
    # Explicit --run values are checked now, so that a typo is a usage error before collection;
    # the default run is resolved lazily, only if a test asks for a run.
    state = ClaimSession(config, resolve_refs(given) if given else None)
    config.stash[SESSION] = state
    _resolve_deprecated(config)
    from claimlens import thresholds as th

    # Values are checked now (numbers); names once the claims are collected, against their markers' thresholds.
    try:
        state.thresholds = th.merge(th.from_pyproject(_project_root(config) / "pyproject.toml", None),
                                            th.from_options(config.getoption("claimlens_thresholds"), None))
    except th.ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None
    for item in config.getoption("claimlens_tolerances"):
        name, _, value = item.partition("=")
        try:
            float(value)
        except ValueError:
            raise pytest.UsageError(f"--claims-tolerance {item!r}: expected NAME=RTOL, e.g. test_loss=0.5") from None
    device = config.getoption("claimlens_device", "auto") or "auto"
    if device != "auto":  # checked here, not when the first run is trained: one line, exit 4, nothing lost
        from claimlens.errors import ClaimlensError
        from claimlens.training import resolve_device

        try:
            resolve_device(device)
        except ClaimlensError as exc:
            raise pytest.UsageError(f"--claims-device: {exc}".replace("use --device", "use --claims-device")) from None
    from claimlens.executor import ExecutorError, from_option

    try:  # a typo is a usage error now; Dask is imported only when something is trained
        from_option(config.getoption("claimlens_executor"))
    except ExecutorError as exc:
        raise pytest.UsageError(f"--claims-executor: {exc}") from None
    if config.getoption("claimlens_seeds") < 1:
        raise pytest.UsageError("--claims-seeds must be at least 1 (the number of seeds of each spec run)")
    if config.getoption("claimlens_llc_checkpoints") < 3:
        raise pytest.UsageError("--claims-llc-checkpoints must be at least 3 (a curve needs a start, a middle and "
                                "an end)")
    if config.getoption("claimlens_fail_on") == "flips" and not config.getoption("claimlens_baseline"):
        raise pytest.UsageError("--claims-fail-on flips needs --claims-baseline FILE")
    baseline = config.getoption("claimlens_baseline")
    if baseline and not config.getoption("claimlens_baseline_update"):
        path = Path(baseline) if Path(baseline).is_absolute() else Path(str(config.invocation_params.dir)) / baseline
        if path.exists():  # a baseline that cannot be read is a usage error now, not after the whole session
            from claimlens.report.document import ReportError, load

            try:
                load(path)
            except ReportError as exc:
                raise pytest.UsageError(f"--claims-baseline: {exc}") from None
    from claimlens.families import FAMILIES, fixtures_of
    from claimlens.plugin import fixtures

    config.pluginmanager.register(fixtures, "claimlens-fixtures")
    for family in FAMILIES:  # each family's own fixtures (families/<family>/fixtures.py)
        module = fixtures_of(family)
        if module is not None:
            config.pluginmanager.register(module, f"claimlens-fixtures-{family}")
    config.pluginmanager.register(session.Collector(state), "claimlens-collector")


def _project_root(config: pytest.Config) -> Path:
    """The folder whose pyproject.toml holds the user's threshold overrides: pytest's rootdir, or, where that has none
    (``pytest --pyargs claimlens.claims`` from a project without a pytest configuration: the rootdir is then inside
    the installed claimlens, or the common ancestor of it and the project's own claims), the directory pytest was
    started in."""
    root = Path(str(config.rootpath))
    return root if (root / "pyproject.toml").is_file() else Path(str(config.invocation_params.dir))


def _resolve_deprecated(config: pytest.Config) -> None:
    """Old option spellings still work for one release, with a warning naming the new one."""
    old = config.getoption("claimlens_llc_checkpoints_deprecated")
    new = config.getoption("claimlens_llc_checkpoints")
    if old is not None:
        import warnings

        warnings.warn(pytest.PytestDeprecationWarning(
            "--llc-checkpoints is deprecated; use --claims-llc-checkpoints (the old spelling goes in the next "
            "release)"), stacklevel=1)
        if new is None:
            new = old
    config.option.claimlens_llc_checkpoints = 16 if new is None else new


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run_set" in metafunc.fixturenames:
        sets = session.of(metafunc.config).sets() or [NoSet()]
        metafunc.parametrize("run_set", sets, ids=[f"set={r.label}" for r in sets], indirect=True, scope="session")
    if "run" not in metafunc.fixturenames:
        return
    refs = session.of(metafunc.config).runs()
    marker = metafunc.definition.get_closest_marker("claim")
    if marker is not None:  # a plain session's built-in runs are judged by their own family's claims only
        from claimlens.plugin.claim import spec_of

        spec = spec_of(marker, metafunc.definition)
        refs = [ref for ref in refs if ref.judged_by(spec.family, spec.task, spec.model)]
    if not refs:  # every input is a run set: the per-run claims skip with the reason, not pytest's NOTSET
        from claimlens.plugin.runs import NoRun

        refs = [NoRun()]
    if "epoch" in metafunc.fixturenames:
        pairs = [(ref, epoch) for ref in refs for epoch in (ref.epochs() if ref.present else [None])]
        metafunc.parametrize(("run", "epoch"), pairs, indirect=["run"], scope="session",
                             ids=[f"run={ref.label}" + (f"-epoch={epoch}" if epoch is not None else "")
                                  for ref, epoch in pairs])
    else:
        metafunc.parametrize("run", refs, ids=[f"run={r.label}" for r in refs], indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the threshold overrides against the collected claims (before any deselection); a member's process
    leaves the set claims to the set's own session."""
    _validate_thresholds(config, items)
    if config.getoption("claimlens_members"):  # a member's process: the set claims run in the set's own session
        unset = [i for i in items if getattr(getattr(i, "callspec", None), "params", {}).get("run_set") is not None
                 and not i.callspec.params["run_set"].present]
        if unset:
            session.of(config).selection.excluded.update(i.nodeid for i in unset)  # judged elsewhere: not "not run"
            config.hook.pytest_deselected(items=unset)
            items[:] = [i for i in items if i not in unset]


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With pytest-xdist ``--dist loadgroup``, every test of one run (or run set) in one worker: one evaluation per
    run (:mod:`claimlens.plugin.groups`)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from claimlens.plugin.groups import RunGroupScheduling

    return RunGroupScheduling(config, log)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before the first test, train every run this session needs and the cache lacks (first use of a spec, a sweep's
    members), all at once through the executor (``--claims-executor``: a process per core by default), after one line
    naming them; a usage error instead when they would be trained into a cache that cannot be written. Not in a
    pytest-xdist worker (there each worker trains what its tests need, one trainer per run through the cache's file
    lock; a claim of a run that cannot be trained errors in one line, :class:`claimlens.errors.CacheNotWritable`) or
    with ``--collect-only``. A run that fails to train is said here, and its claims error with that message."""
    config = session.config
    if config.getoption("collectonly") or hasattr(config, "workerinput"):
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    refs: dict[str, RunInput] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        ref = params.get("run")
        if isinstance(ref, RunInput):
            refs.setdefault(ref.label, ref)
        set_ref = params.get("run_set")
        if isinstance(set_ref, RunInput) and set_ref.is_set and not _skipped_by_axis(item, set_ref):
            refs.setdefault(set_ref.label, set_ref)
    jobs: dict[str, tuple] = {}  # cache key -> (label, spec, the inputs that need it)
    for ref in refs.values():
        try:
            specs = ref.train_specs()
        except Exception:  # noqa: BLE001 - a bad spec is reported by the tests that open it
            specs = []
        for label, spec in specs:
            jobs.setdefault(spec.key(), (label, spec, []))[2].append(ref)
    if not jobs:
        return
    from claimlens.builtin import cache_dir, check_cache_writable
    from claimlens.errors import CacheNotWritable, ClaimlensError
    from claimlens.executor import ExecutorError, TrainJob, from_option, train_all

    untrained = [label for label, _, _ in jobs.values()]
    many = len(untrained) > 1
    try:  # a read-only cache: one error before any test, not one traceback per claim after minutes of work
        check_cache_writable(f"{'the runs' if many else 'the run'} {', '.join(untrained)} "
                             f"{'are' if many else 'is'} not in it and must be trained first")
    except CacheNotWritable as exc:
        raise pytest.UsageError(f"claimlens: {exc}") from None
    from claimlens.training import device_class

    executor = from_option(config.getoption("claimlens_executor"))
    device = session_device(config)
    reporter.write_line(
        f"claimlens: first use of {len(untrained)} run{'s' if many else ''} ({', '.join(untrained)}): "
        f"trained now on {device_class(device).upper()} {executor.describe()} (--claims-executor, --claims-device), "
        f"then cached in {cache_dir() / 'runs'}, where later sessions find {'them' if many else 'it'}")
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else _nothing():
        try:
            trained = train_all([TrainJob(spec, device, label=label) for label, spec, _ in jobs.values()], executor,
                                desc="claimlens")
        except ExecutorError as exc:
            raise pytest.UsageError(f"--claims-executor: {exc}") from None
        except ClaimlensError as exc:  # e.g. --claims-device cuda where there is none
            raise pytest.UsageError(f"claimlens: {exc}") from None
    for (label, _, needing), result in zip(jobs.values(), trained.results):
        if not result.ok:
            for ref in needing:
                ref._memo["train_error"] = (result.error if not ref.is_set else
                                            f"member {label}: {result.error}")
    failed = trained.failed
    reporter.write_line(f"claimlens: trained {len(trained.results) - len(failed)} of {len(trained.results)} "
                        f"run{'s' if many else ''} in {trained.seconds:.0f} s"
                        + (": failed: " + "; ".join(f"{r.label}: {r.error}" for r in failed) if failed else ""))


def session_device(config: pytest.Config) -> str:
    """``--claims-device`` (``auto`` by default)."""
    return config.getoption("claimlens_device", "auto") or "auto"


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def _skipped_by_axis(item: pytest.Item, set_ref: RunInput) -> bool:
    """Whether :func:`pytest_runtest_setup` skips this set claim for a set that does not vary its axis (known from
    the spec: nothing is trained for it)."""
    axis = item.get_closest_marker("run_set_axis")
    if axis is None:
        return False
    try:
        axes = set_ref.axes()
    except Exception:  # noqa: BLE001 - reported when the set is opened
        return False
    return axes is not None and axis.args[0] not in axes


def _validate_thresholds(config: pytest.Config, items: list[pytest.Item]) -> None:
    overrides = session.of(config).thresholds
    if not overrides:
        return
    from claimlens import thresholds as th
    from claimlens.plugin.claim import spec_of

    known = {cid: dict(t) for cid, t in th.defaults().items()}
    for item in items:
        marker = item.get_closest_marker("claim")
        if marker is not None:
            spec = spec_of(marker, item)
            known.setdefault(spec.id, {}).update(spec.thresholds)
    try:
        th.validate(overrides, {cid: t for cid, t in known.items() if t},
                    where={(c, n): "--claims-threshold / [tool.claimlens.thresholds]" for c, ns in overrides.items()
                           for n in ns})
    except th.ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None


class _SplitUnknownSkips:
    """A fixture that needs the run's train/test split when it is unknown (:class:`claimlens.errors.SplitUnknown`),
    or a series the run does not have (:class:`claimlens.core.series.SeriesUnavailable`), skips the claim with the
    reason (registered as its own plugin: a wrapper that skips only after every other
    setup hook has run)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        from claimlens.core.series import SeriesUnavailable
        from claimlens.errors import SplitUnknown

        try:
            return (yield)
        except SplitUnknown as exc:
            pytest.skip(str(exc))
        except SeriesUnavailable as exc:  # e.g. a series measured on the split, read by a fixture
            pytest.skip(str(exc.args[0]))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, before any analysis, a claim whose run has fewer checkpoints than the claim needs (a trajectory claim
    on a single-checkpoint import). Curves-only runs are judged on their curves."""
    marker = item.get_closest_marker("claim")
    callspec = getattr(item, "callspec", None)
    set_ref = callspec.params.get("run_set") if callspec is not None else None
    axis = item.get_closest_marker("run_set_axis")
    if axis is not None and isinstance(set_ref, RunInput) and set_ref.is_set:
        axes = set_ref.axes()
        if axes is not None and axis.args[0] not in axes:  # known from the spec: nothing trained to find out
            pytest.skip(f"run set {set_ref.label!r} does not vary {axis.args[0]} (its axes: {list(axes)})")
    ref = callspec.params.get("run") if callspec is not None else None
    if marker is None or not isinstance(ref, RunInput) or not ref.has_weights:
        return
    from claimlens.plugin.claim import spec_of

    spec = spec_of(marker, item)
    task = ref.task_kind()
    if task is not None and spec.task not in ("any", task):
        pytest.skip(f"claim about the {spec.task.replace('_', ' ')} task; run {ref.label!r} learns "
                    f"{task.replace('_', ' ')}")
    need = spec.min_checkpoints
    if need > 1:
        have = len(ref.epochs())  # from the spec or manifest the input read once
        if have < need:
            pytest.skip(f"needs ≥ {need} checkpoints (the claim is about the course of training); run {ref.label!r} "
                        f"has {have}")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """After a claim test's body: fail it once, listing every failed check of its verdict. A claim reading a
    series its run does not have (a curves-only run) is skipped with that reason; one that meets a bad input
    (:class:`claimlens.errors.ClaimlensError`) ends unjudged with its message."""
    if pyfuncitem.get_closest_marker("claim") is None:
        return (yield)
    from claimlens.core.series import SeriesUnavailable
    from claimlens.errors import ClaimlensError, SplitUnknown

    try:
        result = yield
    except SeriesUnavailable as exc:
        pytest.skip(str(exc.args[0]))
    except SplitUnknown as exc:  # a measure that needs train vs test, on a run whose split is unknown
        pytest.skip(str(exc))
    except ClaimlensError as exc:  # a bad input met in the body: no verdict, one message (no traceback)
        from claimlens.plugin.claim import ClaimNotJudged, not_judged

        __tracebackhide__ = True
        run = pyfuncitem.funcargs.get("run")
        raise (not_judged(run, exc) if hasattr(run, "name") else ClaimNotJudged(str(exc))) from None
    claim = pyfuncitem.stash.get(CLAIM, None)
    if claim is not None and "run" in pyfuncitem.funcargs:
        from claimlens.plugin.claim import unit_of

        claim._set_unit(unit_of(pyfuncitem.funcargs["run"]))
    if claim is not None and claim._failures():
        from claimlens.plugin.claim import ClaimFailure

        __tracebackhide__ = True
        message = claim._failure_message()
        if claim.spec.validation.status == "contradicted":  # a finding about the rule, said where it is read
            message += (f"\n  (the rule itself is contradicted on the source's own data: {claim.spec.validation.scope}; "
                        f"a failure here is the expected finding)")
        raise ClaimFailure(message)
    if claim is not None and not claim._judged_anything():
        import warnings

        from claimlens.plugin.claim import ClaimWarning

        warnings.warn(ClaimWarning(
            f"claim {claim.id!r} passed with no check in its record ({pyfuncitem.name}): a plain assert's pass is "
            f"not recorded; hand a verdict over with claim.judge(...) so the report says what the claim stood on"),
            stacklevel=1)
    return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if hasattr(item.config, "workerinput"):  # an xdist worker tells the controller what it collected, once
        selection = session.of(item.config).selection
        if not selection.sent:
            report.claimlens_selection = selection.wire()
            selection.sent = True
    marker = item.get_closest_marker("claim")
    if marker is None or not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        return
    from claimlens.plugin.claim import family_of, outcome_of, spec_of
    from claimlens.report import references
    from claimlens.report.document import build_record

    claim = item.stash.get(CLAIM, None)
    spec = claim.spec if claim is not None else spec_of(marker, item)
    params = getattr(item, "callspec", None)
    params = params.params if params is not None else {}
    ref = params.get("run", params.get("run_set"))
    family = family_of(spec, item.path)
    thresholds = claim._describe_thresholds() if claim is not None else dict(spec.thresholds)
    problem = None
    try:
        evidence = claim._record_part() if claim is not None else None
    except Exception as exc:  # noqa: BLE001 - something a rule or test put in its verdict: one record, not the session
        evidence, problem = None, (f"claimlens could not make this test's record ({type(exc).__name__}: {exc}): a "
                                   f"series given to the verdict (Verdict.add_series, claim.chart) must be a "
                                   f"claimlens.Series")
    outcome = outcome_of(report, call)
    validation = references.validation_section(spec, thresholds)
    record = build_record(
        nodeid=item.nodeid, claim={"id": spec.id, "statement": spec.statement, "source": spec.source,
                                   "kind": spec.kind, "validation": validation, "family": family,
                                   "reference": references.reference_section(
                                       spec, family, (evidence or {}).get("measurements") or [], outcome,
                                       validation)},
        run=ref.label if isinstance(ref, RunInput) else None,
        parameters={k: (v.label if isinstance(v, RunInput) else v) for k, v in params.items()},
        outcome=outcome, message=_message(report, call), duration=report.duration,
        evidence=evidence, thresholds=thresholds if claim is not None else None,
    )
    if problem is not None:
        from claimlens.report.document import error_record

        record = error_record(item.nodeid, problem, record)
    item.config.hook.pytest_claimlens_record(item=item, record=record)
    report.claimlens_record = _writable(record)  # travels to the xdist controller with the report


def pytest_report_teststatus(report, config):
    """A claim test whose body met a bad input or crashed is reported as an ERROR, as pytest reports one whose
    setup failed: it reached no verdict (its record's outcome is ``error``), so the terminal does not count it
    among the failed claims."""
    record = getattr(report, "claimlens_record", None)
    if report.when == "call" and record is not None and record.get("outcome") == "error":
        return "error", "E", "ERROR"
    return None


def _writable(record: dict) -> dict:
    """The record, made JSON again after plugins had it; if it still cannot be written, an error record naming the
    test: one bad record never costs the report or the session (serially or under xdist)."""
    import json

    from claimlens.core.jsonable import jsonable
    from claimlens.report.document import error_record

    try:
        record = jsonable(record)
        json.dumps(record, allow_nan=False)
        return record
    except Exception as exc:  # noqa: BLE001 (anything a plugin put there)
        return error_record(record.get("nodeid", "?"), f"claimlens could not write this test's record "
                                                         f"({type(exc).__name__}: {exc})", record)


def _message(report, call) -> str | None:
    if report.passed:
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    from claimlens.plugin.claim import ClaimFailure

    exc = call.excinfo.value if call.excinfo is not None else None
    if isinstance(exc, ClaimFailure):
        return str(exc)  # every failed check, without the exception's class name
    if isinstance(exc, pytest.fail.Exception):
        return str(exc.msg)  # pytest.fail / ClaimNotJudged: the message, without "Failed: "
    from claimlens.errors import ClaimlensError

    if isinstance(exc, ClaimlensError):
        return str(exc)  # a bad input met in a fixture: its message, which says what to do
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(report.longrepr)[-2000:]


def pytest_sessionfinish(session: pytest.Session) -> None:
    from claimlens.plugin import session as claims_session

    state = session.config.stash.get(SESSION, None)
    try:
        if not hasattr(session.config, "workerinput"):  # an xdist worker: the controller writes the report
            claims_session.finish(session)
    finally:
        if state is not None:
            state.close()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    session.terminal_summary(terminalreporter, config)
