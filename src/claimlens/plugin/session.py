"""Session state and the end of a session: gathering records, writing the report, the baseline gate.

State lives in one :class:`ClaimSession` in ``config.stash[SESSION]`` (as pytest-benchmark keeps its session);
each claim test's :class:`claimlens.plugin.claim.Claim` in its item's stash (``CLAIM``). Nothing here imports
torch.

A session that did not run every claim test it collected (``-k``, ``-m``, ``--deselect``, ``--lf``, ``-x``, an
interrupt, a crash) is *partial* (:func:`partial_of`): its report says so (``partial`` in claims.json), never
replaces a complete report (it goes beside it, ``claims.partial.json``), and a baseline takes from it only the
records that ran (:func:`claimlens.report.compare.update`), never a new baseline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from claimlens.plugin.claim import Claim

CLAIM = pytest.StashKey[Claim]()  # per item: the claim fixture's object


class ClaimSession:
    """The claimlens state of one pytest session, made in ``pytest_configure`` and kept in ``config.stash[SESSION]``
    (:func:`of`): the run inputs ``--run`` names (resolved once), the records and summary lines gathered, the
    tests that reached no verdict, the threshold overrides, and the final checkpoints shared by the claims
    (:attr:`checkpoints`, emptied at the end). Imports no torch.

    ``named`` is the inputs resolved from explicit --run values (None: none given, the built-in runs resolved on
    first use, so that a session asking for no run resolves nothing)."""

    def __init__(self, config: pytest.Config, named: list | None = None):
        self.config = config
        self._named = named
        self._runs: list | None = None
        self._sets: list | None = None
        self.records: list[dict] = []
        self.summary_lines: list[str] = []
        self.unjudged: list[str] = []  # node ids of failed reports that carry no verdict (errors, crashes, others)
        self.thresholds: dict[str, dict[str, float]] = {}  # claim id -> name -> value: the overrides
        self.selection = Selection()  # which claim tests were collected, deselected, reported
        self._checkpoints = None

    @property
    def checkpoints(self):
        """The final checkpoints kept for the session (:class:`claimlens.core.checkpoint.FinalCheckpoints`; made on
        first use, which imports torch)."""
        if self._checkpoints is None:
            from claimlens.core.checkpoint import FinalCheckpoints

            self._checkpoints = FinalCheckpoints()
        return self._checkpoints

    def named(self) -> list:
        """Everything ``--run`` named (:class:`claimlens.plugin.runs.RunInput`: runs and run sets); the built-in
        runs when nothing was named. Resolved once."""
        if self._named is None:
            from claimlens.plugin.runs import resolve_refs

            self._named = resolve_refs(self.config.getoption("claimlens_runs"))
        return self._named

    def runs(self) -> list:
        """The runs the per-run claims judge: every run named, the members of every sweep named with ``--run``
        (only those of ``--claims-member``) and, with ``--claims-seeds N``, the other seeds of every spec run.
        Resolved once; raises :class:`pytest.UsageError` for a --claims-member no sweep has."""
        if self._runs is None:
            seeds = self.config.getoption("claimlens_seeds") or 1
            only = frozenset(self.config.getoption("claimlens_members") or [])
            self._runs = [run.on(self.device, self.executor) for ref in self.named()
                          for run in ref.on(self.device, self.executor).judged_runs(seeds, only)]
        return self._runs

    @property
    def device(self) -> str:
        """The device spec runs are trained on (``--claims-device``: ``auto`` by default, CUDA when available)."""
        return self.config.getoption("claimlens_device", "auto") or "auto"

    @property
    def executor(self) -> str | None:
        """Where what a test opens is trained when the session did not train it up front (a run set's members):
        ``--claims-executor`` (None: ``$CLAIMLENS_EXECUTOR``, else the pool); ``serial`` in a pytest-xdist worker,
        whose workers are the parallelism (each with its share of the cores)."""
        import os

        if os.environ.get("PYTEST_XDIST_WORKER"):
            return "serial"
        return self.config.getoption("claimlens_executor", None)

    def sets(self) -> list:
        """The run sets the set claims judge: those named with ``--run`` (not the sweeps whose members this process
        judges, with ``--claims-member``) and, with ``--claims-sweeps``, the built-in sweeps. Resolved once."""
        if self._sets is None:
            from claimlens.plugin.runs import builtin_sweeps

            members_only = bool(self.config.getoption("claimlens_members"))
            named = [ref for ref in self.named() if ref.judged_as_set(members_only)]
            if self.config.getoption("claimlens_sweeps"):
                names = {ref.path.resolve() for ref in named}
                named += [ref for ref in builtin_sweeps() if ref.path.resolve() not in names]
            self._sets = [ref.on(self.device, self.executor) for ref in named]
        return self._sets

    def resolved(self) -> list:
        """The run inputs already resolved (runs, then sets), resolving none."""
        return (self._runs or []) + (self._sets or [])

    def close(self) -> None:
        """Drop what the session kept in memory (the final checkpoints and their activations)."""
        if self._checkpoints is not None:
            self._checkpoints.clear()


SESSION = pytest.StashKey[ClaimSession]()


@dataclass
class Selection:
    """What the session was to judge, to tell a complete session from a partial one: the claim tests collected and
    kept (``claims``, in order; None until known: an xdist controller collects nothing and learns them from its
    workers' first reports), those deselected (``-k``, ``-m``, ``--deselect``, ``--lf``, ``--sw``: pytest's
    ``pytest_deselected``; node id -> the option that deselected it, None if none of these), every test id that
    reported, the files ``--lf`` did not collect, the collectors that failed, and how the session stopped (an
    interrupt's exception). ``excluded``: tests claimlens itself leaves to another process (a ``--claims-member``
    process's set claims), never counted as not run."""

    claims: list[str] | None = None
    deselected: dict[str, str | None] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)
    xdist_ids: list[str] = field(default_factory=list)  # xdist controller: every test the workers kept
    lf_skipped_files: int = 0
    collection_errors: list[str] = field(default_factory=list)
    interrupt: tuple[str, str] | None = None  # (exception type name, message)
    sent: bool = False  # an xdist worker: sent to the controller with its first report

    def wire(self) -> dict:
        """What an xdist worker tells the controller (JSON, attached to its first report)."""
        return {"claims": self.claims or [], "deselected": self.deselected,
                "lf_skipped_files": self.lf_skipped_files}

    def add_wire(self, data: dict) -> None:
        """On the xdist controller: one worker's :meth:`wire` (every worker collects the same tests)."""
        self.claims = list(dict.fromkeys((self.claims or []) + list(data.get("claims") or [])))
        self.deselected.update(data.get("deselected") or {})
        self.lf_skipped_files = max(self.lf_skipped_files, int(data.get("lf_skipped_files") or 0))


def of(config: pytest.Config) -> ClaimSession:
    """The session's :class:`ClaimSession` (made in ``pytest_configure``)."""
    return config.stash[SESSION]


class Collector:
    """Gathers the records attached to reports (on the xdist controller, from every worker) and what the session
    selected (:class:`Selection`), from which its end tells whether every collected claim test ran."""

    def __init__(self, state: ClaimSession):
        self.state = state

    def pytest_deselected(self, items) -> None:
        selection = self.state.selection
        for item in items:
            if item.get_closest_marker("claim") is not None and item.nodeid not in selection.excluded:
                selection.deselected[item.nodeid] = _deselected_by(item)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        selection = self.state.selection
        selection.claims = [i.nodeid for i in session.items if i.get_closest_marker("claim") is not None]
        lf = session.config.pluginmanager.get_plugin("lfplugin")
        selection.lf_skipped_files = int(getattr(lf, "_skipped_files", 0) or 0)  # files --lf did not collect

    def pytest_collectreport(self, report) -> None:
        if report.failed:  # their claims were never collected (--continue-on-collection-errors)
            self.state.selection.collection_errors.append(report.nodeid or "?")

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        """Ctrl-C (SIGINT), ``pytest.exit``, and pytest's own stop (``session.Interrupted``: -x under xdist, --sw)."""
        self.state.selection.interrupt = (excinfo.typename, str(excinfo.value))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        selection = self.state.selection
        selection.xdist_ids = list(dict.fromkeys(selection.xdist_ids + list(ids)))

    def pytest_runtest_logreport(self, report) -> None:
        selection = self.state.selection
        selection.reported.add(report.nodeid)
        wire = getattr(report, "claimlens_selection", None)
        if wire is not None:  # a worker's first report: what it collected
            selection.add_wire(wire)
        record = getattr(report, "claimlens_record", None)
        if record is not None:
            self.state.records.append(record)
            if record["outcome"] == "error":
                self.state.unjudged.append(report.nodeid)  # a bad input, a setup error: no verdict reached
            return
        if report.failed:
            self.state.unjudged.append(report.nodeid)
            if report.when == "???":  # pytest-xdist: the worker running this test died
                from claimlens.report.document import crash_record

                self.state.records.append(crash_record(report.nodeid, str(report.longrepr)[-2000:]))


def finish(session: pytest.Session) -> None:
    """Build the document from the records, compare it with the baseline, write claims.json and the HTML."""
    from claimlens.report import document as doc

    config = session.config
    state = config.stash.get(SESSION, None)
    records = state.records if state is not None else []
    if not records:
        return
    try:  # on an xdist controller nothing was collected: the inputs are resolved here, once
        run_refs = state.runs() + state.sets()
    except pytest.UsageError:
        run_refs = []
    used = {r["run"] for r in records}
    used_claims = {r["claim_id"] for r in records}
    overrides = {cid: v for cid, v in state.thresholds.items() if cid in used_claims}
    document = doc.build_document(records, runs=[ref.describe() for ref in run_refs if ref.label in used],
                                  rootdir=Path(str(config.rootpath)), threshold_overrides=overrides,
                                  threshold_defaults=_defaults_of(overrides, records))
    if overrides:
        state.summary_lines.append(
            "claimlens: judged with thresholds changed from the defaults: "
            + ", ".join(f"{cid}.{n}={v:g}" for cid, vs in sorted(overrides.items()) for n, v in sorted(vs.items())))
    out = _path(config, config.getoption("claimlens_report"))
    partial = partial_of(session, state, records)
    target, page = out / "claims.json", out / "claims.html"
    if partial is not None:
        document["partial"] = partial
        if _complete_report(target):  # never overwrite a complete report with less: this one goes beside it
            partial["complete_report"] = str(target)
            target, page = out / "claims.partial.json", out / "claims.partial.html"
    _compare_with_baseline(session, document)
    config.hook.pytest_claimlens_update_document(config=config, document=document)
    from claimlens.report.html import render_file  # renders from the file just written, never from live objects

    try:
        doc.write(target, document)
        render_file(target, page)
        if partial is None:  # a complete report: an older partial one beside it would only mislead
            for stale in (out / "claims.partial.json", out / "claims.partial.html"):
                stale.unlink(missing_ok=True)
    except OSError as exc:
        state.summary_lines.append(
            f"claimlens: error: could not write the report to {out} ({exc.strerror or exc}); the files written "
            f"there before are unchanged")
        session.exitstatus = max(int(session.exitstatus), int(pytest.ExitCode.INTERNAL_ERROR))
        state.records = []
        return
    state.records = []
    counts = ", ".join(f"{n} {o}" for o, n in document["summary"].items() if n)
    plural = "s" if len(records) != 1 else ""
    head = [f"claimlens: {len(records)} claim record{plural} ({counts}) written to {target} and {page}"]
    if partial is not None:
        head.append(f"claimlens: partial session: {partial['ran']} of {partial['collected']} claim tests ran "
                    f"({partial['reason']}); the report is marked partial")
        if "complete_report" in partial:
            head.append(f"claimlens: the complete report {partial['complete_report']} of an earlier session was "
                        f"left as it was (this partial one is beside it)")
    if document["summary"].get("error"):
        head += _unjudged_lines(records)
    state.summary_lines[0:0] = head
    from claimlens._io import cache_dir, cache_unwritable

    reason = cache_unwritable()
    if reason is not None:  # said once per session, not once per analysis
        state.summary_lines.append(
            f"claimlens: the cache {cache_dir()} cannot be written ({reason}): analyses it did not hold were computed "
            f"in memory for this session and not kept; set CLAIMLENS_CACHE_DIR to a writable folder to keep them")


def _complete_report(path: Path) -> bool:
    """Whether ``path`` holds a readable claims report not marked partial."""
    from claimlens.report.document import ReportError, load

    try:
        return "partial" not in load(path)
    except ReportError:
        return False


@functools.cache
def _expression(text: str):
    """pytest's own compiled ``-k`` / ``-m`` expression (compiled once per session, not once per test)."""
    from _pytest.mark.expression import Expression

    return Expression.compile(text)


def _deselected_by(item: pytest.Item) -> str | None:
    """Which option deselected ``item``, as typed (``-k 'mlp_sum'``, ``-m 'not heavy'``, ``--deselect``, ``--lf``,
    ``--sw``); None when none of them would have (a plugin did). pytest's hook does not say who deselected: the
    expressions are evaluated again as pytest's own ``-k``/``-m`` do (its matchers; if they move, the option is named
    from the options in effect)."""
    config = item.config
    if any(item.nodeid.startswith(prefix) for prefix in config.getoption("deselect", None) or []):
        return "--deselect"
    keyword = (config.getoption("keyword", "") or "").strip()
    marks = (config.getoption("markexpr", "") or "").strip()
    try:
        from _pytest.mark import KeywordMatcher, MarkMatcher

        if keyword and not _expression(keyword).evaluate(KeywordMatcher.from_item(item)):
            return f"-k {keyword!r}"
        if marks and not _expression(marks).evaluate(MarkMatcher.from_markers(item.iter_markers())):
            return f"-m {marks!r}"
    except Exception:  # noqa: BLE001 (pytest's private matchers changed: name what was in effect)
        if keyword or marks:
            return " or ".join(f"{o} {e!r}" for o, e in (("-k", keyword), ("-m", marks)) if e)
    if config.getoption("lf", False):
        return "--lf"
    if config.getoption("stepwise", False):
        return "--sw"
    return None


def _stopped(session: pytest.Session, selection: Selection, not_reached: list[str]) -> dict[str, str] | None:
    """How the session stopped before its end, if it did: ``interrupted`` (Ctrl-C, SIGINT, ``pytest.exit``),
    ``stopped`` (pytest stopped it on purpose: -x, --maxfail, --sw), ``internal error``, or ``ended early`` (tests
    that never reported, for no reason pytest gave: a worker that died and was not replaced)."""
    if selection.interrupt is not None:
        name, message = selection.interrupt
        if name == "Interrupted" and "keyboard-interrupt" not in message:  # pytest's own stop (xdist -x, --sw)
            return {"kind": "stopped", "message": message}
        return {"kind": "interrupted", "message": f"{name}: {message}" if message else name}
    if session.shouldfail or session.shouldstop:
        return {"kind": "stopped", "message": str(session.shouldfail or session.shouldstop)}
    if int(session.exitstatus) == int(pytest.ExitCode.INTERNAL_ERROR):
        return {"kind": "internal error", "message": "pytest stopped on an internal error"}
    if not_reached:
        return {"kind": "ended early", "message": "the session ended before they reported"}
    return None


NOT_RUN_LISTED = 10_000  # claims.json lists at most this many tests not run (their count is always exact)


def partial_of(session: pytest.Session, state: ClaimSession, records: list[dict]) -> dict | None:
    """The ``partial`` entry of the report when this session did not run every claim test it collected; None for a
    complete session. "Every collected claim test": those collected before any deselection (the kept ones and those
    ``pytest_deselected`` named), plus the files ``--lf`` did not collect and any collector that failed; a test ran
    when it reported. Under xdist without its workers' word (none reported), every test the workers kept counts."""
    selection = state.selection
    ran = {r["nodeid"] for r in records}
    if selection.claims is not None:
        not_reached = [n for n in selection.claims if n not in ran]
    else:  # the workers' tests, claims or not: one that reported and made no record is no claim
        not_reached = [n for n in selection.xdist_ids if n not in ran and n not in selection.reported]
    deselected = {n: by or "a plugin" for n, by in selection.deselected.items() if n not in ran}
    if not (not_reached or deselected or selection.lf_skipped_files or selection.collection_errors):
        return None
    stopped = _stopped(session, selection, not_reached)
    options = sorted(set(deselected.values()))
    parts = []
    if stopped is not None:
        parts.append({"interrupted": f"interrupted ({stopped['message']})",
                      "stopped": f"stopped early ({stopped['message']})",
                      "internal error": "stopped by an internal error"}.get(
                          stopped["kind"], f"ended early ({stopped['message']}: a worker that died?)"))
    if not_reached:
        parts.append(f"{len(not_reached)} not reached")
    if deselected:
        parts.append(f"{len(deselected)} deselected by {', '.join(options)}")
    if selection.lf_skipped_files:
        n = selection.lf_skipped_files
        parts.append(f"{n} file{'s' if n > 1 else ''} not collected by --lf (no failures there last time)")
    if selection.collection_errors:
        n = len(selection.collection_errors)
        parts.append(f"{n} file{'s' if n > 1 else ''} could not be collected "
                     f"({', '.join(selection.collection_errors[:3])})")
    not_run = ([{"nodeid": n, "why": "deselected", "by": by} for n, by in deselected.items()]
               + [{"nodeid": n, "why": "not reached"} for n in not_reached])
    partial = {"reason": "; ".join(parts), "ran": len(ran), "collected": len(ran) + len(not_run),
               "not_run_count": len(not_run), "not_run": not_run[:NOT_RUN_LISTED], "deselected_by": options}
    if stopped is not None:
        partial["stopped"] = stopped
    if selection.lf_skipped_files:
        partial["files_not_collected"] = selection.lf_skipped_files
    if selection.collection_errors:
        partial["collection_errors"] = selection.collection_errors
    return partial


def _defaults_of(overrides: dict[str, dict[str, float]], records: list[dict]) -> dict[str, dict[str, float | None]]:
    """The defaults of the overridden thresholds (claim id → name → default; None where unknown): as the records
    state them, else the built-in claims' (a claim whose tests all stopped before judging records none)."""
    if not overrides:
        return {}
    from claimlens.thresholds import defaults

    built_in = defaults()
    stated: dict[str, dict[str, float]] = {}
    for r in records:
        for name, t in (r.get("thresholds") or {}).items():
            if isinstance(t, dict) and t.get("default") is not None:
                stated.setdefault(r.get("claim_id"), {}).setdefault(name, t["default"])
    out = {}
    for cid, names in overrides.items():
        out[cid] = {}
        for name in names:
            default = stated.get(cid, {}).get(name)
            if default is None and name in built_in.get(cid, {}):
                default = built_in[cid][name].value
            out[cid][name] = default
    return out


def _unjudged_lines(records: list[dict], shown: int = 3) -> list[str]:
    """The claims that could not be judged, summed up: how many, and their distinct messages with how many claims
    share each (:func:`claimlens.report.document.unjudged_messages`)."""
    from claimlens.report.document import unjudged_messages

    messages = unjudged_messages(records)
    total = sum(n for _, n in messages)
    lines = [(f"claimlens: {total} claim{'s' if total > 1 else ''} could not be judged (error: a bad input or a "
              f"crash, no verdict); what to fix:")]
    lines += [f"  {n} × {message}" for message, n in messages[:shown]]
    if len(messages) > shown:
        lines.append(f"  … and {len(messages) - shown} other messages (claims.json, the records with outcome error)")
    return lines


def _path(config: pytest.Config, option: str) -> Path:
    path = Path(option)
    return path if path.is_absolute() else Path(str(config.invocation_params.dir)) / path


def _compare_with_baseline(session: pytest.Session, document: dict) -> None:
    """The baseline gate: record the baseline (none yet), update it (``--claims-baseline-update``) or compare with
    it. A partial session (``document["partial"]``) records no new baseline, updates only the records that ran
    (keeping the others; an interrupted session updates nothing) and is compared on what ran, the diff saying how
    many baseline records were not compared."""
    from claimlens.report import document as doc

    config = session.config
    option = config.getoption("claimlens_baseline")
    if not option:
        return
    baseline = _path(config, option)
    lines = of(config).summary_lines
    partial = document.get("partial")
    update = config.getoption("claimlens_baseline_update")
    if update or not baseline.exists():
        if partial is not None:
            _update_from_partial(session, document, baseline, partial, new=not baseline.exists())
            return
        doc.write(baseline, document)
        lines.append(f"claimlens: baseline {'updated' if update else 'recorded'} in {baseline}")
        return
    from claimlens.report.compare import diff, format_diff

    try:
        old = doc.load(baseline)
    except doc.ReportError as exc:
        raise pytest.UsageError(f"--claims-baseline {baseline}: {exc}") from None
    tolerances = {k: float(v) for k, _, v in (t.partition("=") for t in config.getoption("claimlens_tolerances"))}
    d = diff(old, document, rtol=config.getoption("claimlens_rtol"), tolerances=tolerances)
    document["baseline_diff"] = {**d, "baseline": str(baseline)}
    lines.extend(format_diff(d))
    if config.getoption("claimlens_fail_on") == "flips":
        if any(f["to"] != "passed" for f in d["flips"]):
            session.exitstatus = max(int(session.exitstatus), 1)
        elif session.exitstatus == 1 and not of(config).unjudged and not (partial or {}).get("stopped"):
            # only claims that also failed in the baseline failed: the gate passes. Never for errors, crashes,
            # failed non-claim tests, a session stopped before its end (-x) or any other exit status: nothing
            # lowers a status it did not judge.
            session.exitstatus = 0


def _update_from_partial(session: pytest.Session, document: dict, baseline: Path, partial: dict, *,
                         new: bool) -> None:
    """A partial session and a baseline to write: refuse a new baseline (it would lack what did not run) and any
    write from an interrupted session (Ctrl-C aborts: the baseline stays as it was); else replace the baseline's
    records of the tests that ran and keep the others (:func:`claimlens.report.compare.update`)."""
    from claimlens.report import document as doc
    from claimlens.report.compare import update

    lines = of(session.config).summary_lines
    stopped = (partial.get("stopped") or {}).get("kind")
    if stopped in ("interrupted", "internal error"):
        lines.append(f"claimlens: baseline {baseline} {'not recorded' if new else 'left as it was'}: the session was "
                     f"{stopped if stopped == 'interrupted' else 'stopped by an internal error'} before every claim "
                     f"ran; run it again to {'record' if new else 'update'} the baseline")
        return
    if new:
        lines.append(f"claimlens: baseline not recorded in {baseline}: this session did not run every claim "
                     f"({partial['reason']}); a baseline holds every claim — run the session without the options "
                     f"that deselect or stop tests to record it")
        _refused(session)
        return
    try:
        old = doc.load(baseline)
    except doc.ReportError as exc:
        lines.append(f"claimlens: baseline {baseline} left as it was: a partial session updates only the records that "
                     f"ran and keeps the others, but the baseline cannot be read ({exc})")
        _refused(session)
        return
    merged = update(old, document)
    doc.write(baseline, merged)
    u = merged["baseline_update"]
    added = f" ({u['added']} of them new)" if u["added"] else ""
    lines.append(f"claimlens: baseline updated in {baseline} from a partial session: updated {u['updated']} "
                 f"record{'s' if u['updated'] != 1 else ''}{added}, kept {u['kept']} not run")


def _refused(session: pytest.Session) -> None:
    """A baseline asked for and not written: the session does not end green (status 4, pytest's usage error,
    unless it already has a status of its own)."""
    if int(session.exitstatus) == 0:
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(SESSION, None)
    lines = state.summary_lines if state is not None else []
    if lines:
        terminalreporter.section("claimlens")
        for line in lines:
            terminalreporter.write_line(line)
