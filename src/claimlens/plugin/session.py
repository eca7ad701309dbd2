"""Session state and the end of a session: gathering records, writing the report, the baseline gate.

State lives in one :class:`ClaimSession` in ``config.stash[SESSION]`` (as pytest-benchmark keeps its session);
each claim test's :class:`claimlens.plugin.claim.Claim` in its item's stash (``CLAIM``). Nothing here imports
torch.
"""

from __future__ import annotations

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
            self._runs = [run for ref in self.named() for run in ref.judged_runs(seeds, only)]
        return self._runs

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
            self._sets = named
        return self._sets

    def resolved(self) -> list:
        """The run inputs already resolved (runs, then sets), resolving none."""
        return (self._runs or []) + (self._sets or [])

    def close(self) -> None:
        """Drop what the session kept in memory (the final checkpoints and their activations)."""
        if self._checkpoints is not None:
            self._checkpoints.clear()


SESSION = pytest.StashKey[ClaimSession]()


def of(config: pytest.Config) -> ClaimSession:
    """The session's :class:`ClaimSession` (made in ``pytest_configure``)."""
    return config.stash[SESSION]


class Collector:
    """Gathers the records attached to reports (on the xdist controller, from every worker)."""

    def __init__(self, state: ClaimSession):
        self.state = state

    def pytest_runtest_logreport(self, report) -> None:
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
    _compare_with_baseline(session, document)
    config.hook.pytest_claimlens_update_document(config=config, document=document)
    from claimlens.report.html import render_file  # renders from the file just written, never from live objects

    try:
        doc.write(out / "claims.json", document)
        render_file(out / "claims.json", out / "claims.html")
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
    state.summary_lines.insert(0, f"claimlens: {len(records)} claim record{plural} ({counts}) written to "
                                      f"{out / 'claims.json'} and {out / 'claims.html'}")
    if document["summary"].get("error"):
        state.summary_lines[1:1] = _unjudged_lines(records)
    from claimlens._io import cache_dir, cache_unwritable

    reason = cache_unwritable()
    if reason is not None:  # said once per session, not once per analysis
        state.summary_lines.append(
            f"claimlens: the cache {cache_dir()} cannot be written ({reason}): analyses it did not hold were computed "
            f"in memory for this session and not kept; set CLAIMLENS_CACHE_DIR to a writable folder to keep them")


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
    from claimlens.report import document as doc

    config = session.config
    option = config.getoption("claimlens_baseline")
    if not option:
        return
    baseline = _path(config, option)
    lines = of(config).summary_lines
    if config.getoption("claimlens_baseline_update") or not baseline.exists():
        doc.write(baseline, document)
        lines.append(f"claimlens: baseline {'updated' if config.getoption('claimlens_baseline_update') else 'recorded'}"
                     f" in {baseline}")
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
        elif session.exitstatus == 1 and not of(config).unjudged:
            # only claims that also failed in the baseline failed: the gate passes. Never for errors, crashes,
            # failed non-claim tests or any other exit status: nothing lowers a status it did not judge.
            session.exitstatus = 0


def terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(SESSION, None)
    lines = state.summary_lines if state is not None else []
    if lines:
        terminalreporter.section("claimlens")
        for line in lines:
            terminalreporter.write_line(line)
