"""The claimlens pytest plugin (registered through the ``pytest11`` entry point).

Hooks and fixtures only; importing it is cheap (no torch). It adds:

* ``--run PATH`` (repeatable): the runs to judge; a test taking ``run`` is parametrized over them
  (ids ``run=<name>``), and a test taking ``run`` and ``epoch`` over every checkpoint of every run
  (ids ``run=<name>-epoch=<e>``). Default: the built-in default run.
* fixtures ``run``, ``run_series`` (all progress measures of the run, cached), ``phases`` (detected
  phase boundaries), ``llc_series`` / ``llc_series_orth`` (the learning coefficient at ``--llc-checkpoints``
  checkpoints, without and with the orthogonal-gradient restriction, cached on disk), ``thresholds`` (the
  claim's pass thresholds, defaults from ``claimlens.thresholds`` with the overrides of pyproject.toml
  ``[tool.claimlens.thresholds]`` and ``--claims-threshold``) and ``evidence`` (what the test records:
  series and measurements with thresholds);
* ``--claims-report DIR``: after the session, ``DIR/claims.json`` holds one record per claim test
  and ``DIR/claims.html`` is rendered from it (both written atomically, on the xdist controller only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claimlens.plugin.records import REPORT_SCHEMA_VERSION, Evidence, provenance, write_json_atomic
from claimlens.plugin.runs import RunRef, resolve_refs

RUN_REFS = pytest.StashKey[list]()
SUMMARY_LINES = pytest.StashKey[list]()
RECORDS = pytest.StashKey[list]()
THRESHOLDS = pytest.StashKey[dict]()
EVIDENCE = pytest.StashKey[Evidence]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claimlens", "claimlens: claims about training runs")
    group.addoption(
        "--run", action="append", dest="claimlens_runs", default=[], metavar="PATH",
        help="run to judge: a run directory, or a spec TOML (trained on first use and cached). "
             "Repeatable. Default: the built-in default run (fixtures/default.toml).",
    )
    group.addoption(
        "--claims-device", dest="claimlens_device", default="cpu", metavar="DEVICE",
        help="device for training a spec given to --run on first use (cpu, cuda, auto). Default: cpu.",
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
        "--llc-checkpoints", dest="claimlens_llc_checkpoints", type=int, default=16, metavar="N",
        help="the learning-coefficient claims estimate the LLC at N checkpoints spread evenly over the run "
             "(first and last included; cached on disk per run and SGLD configuration). Default: 16.",
    )
    group.addoption(
        "--claims-fail-on", dest="claimlens_fail_on", choices=("failures", "flips"), default="failures",
        help="'failures' (default): any failed claim fails the session; 'flips': with --claims-baseline, only "
             "claims that passed in the baseline and fail now fail the session.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, statement, source): a published claim judged by this test")
    given = config.getoption("claimlens_runs")
    # Explicit --run values are checked now, so that a typo is a usage error before collection;
    # the default run is resolved lazily, only if a test asks for a run.
    config.stash[RUN_REFS] = resolve_refs(given, rootdir=Path(str(config.rootpath))) if given else None
    config.stash[RECORDS] = []
    config.stash[SUMMARY_LINES] = []
    from claimlens import thresholds as th

    try:
        config.stash[THRESHOLDS] = th.merge(th.from_pyproject(Path(str(config.rootpath)) / "pyproject.toml"),
                                            th.from_options(config.getoption("claimlens_thresholds")))
    except th.ThresholdError as exc:
        raise pytest.UsageError(str(exc)) from None
    for item in config.getoption("claimlens_tolerances"):
        name, _, value = item.partition("=")
        try:
            float(value)
        except ValueError:
            raise pytest.UsageError(f"--claims-tolerance {item!r}: expected NAME=RTOL, e.g. test_loss=0.5") from None
    if config.getoption("claimlens_llc_checkpoints") < 3:
        raise pytest.UsageError("--llc-checkpoints must be at least 3 (a curve needs a start, a middle and an end)")
    if config.getoption("claimlens_fail_on") == "flips" and not config.getoption("claimlens_baseline"):
        raise pytest.UsageError("--claims-fail-on flips needs --claims-baseline FILE")
    config.pluginmanager.register(_Collector(config), "claimlens-collector")


def _refs(config: pytest.Config) -> list[RunRef]:
    refs = config.stash[RUN_REFS]
    if refs is None:
        refs = resolve_refs(config.getoption("claimlens_runs"), rootdir=Path(str(config.rootpath)))
        config.stash[RUN_REFS] = refs
    return refs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run" not in metafunc.fixturenames:
        return
    refs = _refs(metafunc.config)
    if "epoch" in metafunc.fixturenames:
        pairs = [(ref, epoch) for ref in refs for epoch in ref.epochs()]
        metafunc.parametrize(("run", "epoch"), pairs, indirect=["run"], scope="session",
                             ids=[f"run={ref.label}-epoch={epoch}" for ref, epoch in pairs])
    else:
        metafunc.parametrize("run", refs, ids=[f"run={r.label}" for r in refs], indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist ``--dist loadgroup``, keep every test of one run in one worker (one evaluation)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        ref = callspec.params.get("run") if callspec is not None else None
        if isinstance(ref, RunRef):
            item.add_marker(pytest.mark.xdist_group(name=f"run-{ref.label}"))


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest):
    """The :class:`claimlens.runs.Run` under test (trained and cached first if given as a spec)."""
    ref: RunRef = request.param
    return ref.open(device=request.config.getoption("claimlens_device"))


@pytest.fixture(scope="session")
def run_series(run):
    """Every progress measure of ``run`` over its checkpoints (:class:`claimlens.evaluation.RunSeries`).

    Skips the test, with the reason, for runs that are not 1-layer transformers."""
    from claimlens.evaluation import evaluate

    if run.spec.model.kind != "transformer":
        pytest.skip(f"run {run.name!r} is an {run.spec.model.kind}; this claim needs the transformer's activations")
    return evaluate(run)


@pytest.fixture(scope="session")
def final_activations(run):
    """One forward pass of the final checkpoint over all p² inputs, shared by the claims about the final model
    (:class:`claimlens.models.Activations`: logits, attention pattern, MLP pre/post activations)."""
    from claimlens.models import forward

    return forward(run.final(), run.task.tokens, run.spec.model, cache=True)


@pytest.fixture(scope="session")
def phases(run_series):
    """Phase boundaries ``t1, t2, t3`` of the run by the catalogue's rules (:func:`claimlens.series.detect_phases`)."""
    from claimlens.series import Series, detect_phases

    s = run_series
    return detect_phases(Series.of("excluded_loss_all_keys", s.epochs, s["excluded_loss_all_keys"].row()),
                         Series.of("test_loss", s.epochs, s["test_loss"].row()),
                         Series.of("test_acc", s.epochs, s["test_acc"].row()))


def _llc(request: pytest.FixtureRequest, run, *, orth_grad: bool):
    from contextlib import nullcontext
    from dataclasses import replace

    from claimlens.errors import ClaimlensError
    from claimlens.llc_series import default_config, llc_over_run

    config = replace(default_config(run), orth_grad=orth_grad)
    n = request.config.getoption("claimlens_llc_checkpoints")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        # The estimate takes minutes on first use: let its progress bar through pytest's capture.
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            return llc_over_run(run, config, max_checkpoints=n, progress=True)
    except ClaimlensError as exc:
        pytest.fail(f"run {run.name!r}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def llc_series(request: pytest.FixtureRequest, run):
    """The local learning coefficient of ``run`` at ``--llc-checkpoints`` checkpoints
    (:class:`claimlens.llc_series.LLCSeries`, the run kind's default SGLD configuration, cached on disk)."""
    return _llc(request, run, orth_grad=False)


@pytest.fixture(scope="session")
def llc_series_orth(request: pytest.FixtureRequest, run):
    """As ``llc_series``, with the chains restricted to the hyperplane orthogonal to the gradient at the checkpoint."""
    return _llc(request, run, orth_grad=True)


@pytest.fixture
def thresholds(request: pytest.FixtureRequest):
    """The pass thresholds of this test's claim (``thresholds["delay_ratio"]``): the catalogue's defaults
    (``claimlens.thresholds.DEFAULTS``) with the overrides of pyproject.toml and ``--claims-threshold``."""
    from claimlens.thresholds import Thresholds

    marker = request.node.get_closest_marker("claim")
    claim_id = marker.kwargs.get("id") if marker is not None else None
    if claim_id is None:
        raise pytest.UsageError(f"{request.node.nodeid}: the thresholds fixture needs @pytest.mark.claim(id=...)")
    return Thresholds(claim_id, request.config.stash[THRESHOLDS].get(claim_id))


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Evidence:
    """Record the series and measurements a claim was judged on (they go into ``claims.json``)."""
    ev = Evidence()
    request.node.stash[EVIDENCE] = ev
    return ev


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("claim")
    if marker is None or not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        return
    ev = item.stash.get(EVIDENCE, None)
    params = getattr(item, "callspec", None)
    params = params.params if params is not None else {}
    ref = params.get("run")
    record = {
        "nodeid": item.nodeid,
        "claim_id": marker.kwargs.get("id"),
        "statement": marker.kwargs.get("statement"),
        "source": marker.kwargs.get("source"),
        "run": ref.label if isinstance(ref, RunRef) else None,
        "parameters": {k: (v.label if isinstance(v, RunRef) else v) for k, v in params.items()},
        "outcome": report.outcome,
        "message": _message(report),
        "duration": round(report.duration, 4),
        **(ev.to_dict() if ev is not None else {"series": [], "measurements": [], "phases": {}, "notes": []}),
    }
    report.claimlens_record = record  # travels to the xdist controller with the report


def _message(report) -> str | None:
    if report.passed:
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2])
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash is not None else str(report.longrepr)[-2000:]


class _Collector:
    """Gathers the records attached to reports (on the xdist controller, from every worker)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report) -> None:
        record = getattr(report, "claimlens_record", None)
        if record is not None:
            self.config.stash[RECORDS].append(record)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # xdist worker: the controller writes the report
    records = config.stash.get(RECORDS, [])
    if not records:
        return
    records.sort(key=lambda r: r["nodeid"])
    try:  # on an xdist controller nothing was collected, so the default run may not be resolved yet
        refs = _refs(config)
    except pytest.UsageError:
        refs = []
    used = {r["run"] for r in records}
    refs = [ref for ref in refs if ref.label in used]
    document = {
        "schema_version": REPORT_SCHEMA_VERSION,
        **provenance(Path(str(config.rootpath))),
        "runs": [ref.describe() for ref in refs],
        "records": records,
        "summary": {o: sum(r["outcome"] == o for r in records) for o in ("passed", "failed", "skipped")},
    }
    used_claims = {r["claim_id"] for r in records}
    overrides = {cid: v for cid, v in config.stash[THRESHOLDS].items() if cid in used_claims}
    if overrides:
        document["threshold_overrides"] = overrides
        config.stash[SUMMARY_LINES].append(
            "claimlens: judged with thresholds changed from the defaults: "
            + ", ".join(f"{cid}.{n}={v:g}" for cid, vs in sorted(overrides.items()) for n, v in sorted(vs.items())))
    out = Path(config.getoption("claimlens_report"))
    if not out.is_absolute():
        out = Path(str(config.invocation_params.dir)) / out
    _compare_with_baseline(session, document)
    write_json_atomic(out / "claims.json", document)
    from claimlens.report.html import render_file  # renders from the file just written, never from live objects

    render_file(out / "claims.json", out / "claims.html")
    config.stash[RECORDS] = []
    config.stash[SUMMARY_LINES].insert(0, f"claimlens: {len(records)} claim records written to "
                                          f"{out / 'claims.json'} and {out / 'claims.html'}")


def _compare_with_baseline(session: pytest.Session, document: dict) -> None:
    import json

    config = session.config
    option = config.getoption("claimlens_baseline")
    if not option:
        return
    baseline = Path(option)
    if not baseline.is_absolute():
        baseline = Path(str(config.invocation_params.dir)) / baseline
    lines = config.stash[SUMMARY_LINES]
    if config.getoption("claimlens_baseline_update") or not baseline.exists():
        write_json_atomic(baseline, document)
        lines.append(f"claimlens: baseline {'updated' if config.getoption('claimlens_baseline_update') else 'recorded'}"
                     f" in {baseline}")
        return
    from claimlens.report.compare import diff, format_diff

    try:
        old = json.loads(baseline.read_text())
    except ValueError as exc:
        raise pytest.UsageError(f"--claims-baseline {baseline}: not valid JSON ({exc})") from None
    tolerances = {k: float(v) for k, _, v in (t.partition("=") for t in config.getoption("claimlens_tolerances"))}
    d = diff(old, document, rtol=config.getoption("claimlens_rtol"), tolerances=tolerances)
    document["baseline_diff"] = {**d, "baseline": str(baseline)}
    lines.extend(format_diff(d))
    if config.getoption("claimlens_fail_on") == "flips" and session.exitstatus in (0, 1):
        session.exitstatus = 1 if any(f["to"] == "failed" for f in d["flips"]) else 0


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY_LINES, [])
    if lines:
        terminalreporter.section("claimlens")
        for line in lines:
            terminalreporter.write_line(line)
