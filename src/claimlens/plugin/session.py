"""Session state and the end of a session: gathering records, writing the report, the baseline gate.

State lives in ``config.stash`` under the keys below (as pytest-benchmark keeps its session). Nothing here
imports torch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claimlens.plugin.claim import Claim

RUN_REFS = pytest.StashKey[list]()
SUMMARY_LINES = pytest.StashKey[list]()
RECORDS = pytest.StashKey[list]()
THRESHOLDS = pytest.StashKey[dict]()
CLAIM = pytest.StashKey[Claim]()
UNJUDGED = pytest.StashKey[list]()  # failed reports that carry no verdict (errors, crashes, non-claim tests)


def all_refs(config: pytest.Config) -> list:
    """Everything ``--run`` named (:class:`claimlens.plugin.runs.RunRef`: runs and run sets), resolved on first use;
    the built-in default run when nothing was named."""
    from claimlens.plugin.runs import resolve_refs

    found = config.stash[RUN_REFS]
    if found is None:
        found = resolve_refs(config.getoption("claimlens_runs"))
        config.stash[RUN_REFS] = found
    return found


def refs(config: pytest.Config) -> list:
    """The runs the per-run claims judge: every run named, and the members of every sweep named with ``--run``."""
    from claimlens.plugin.runs import member_refs, seed_refs

    out = []
    seeds = config.getoption("claimlens_seeds") or 1
    only = set(config.getoption("claimlens_members") or [])
    for ref in all_refs(config):
        if ref.kind == "sweep":
            members = member_refs(ref)
            unknown = only - {m.label for m in members} if only else set()
            if unknown:
                raise pytest.UsageError(f"--claims-member {sorted(unknown)}: not members of the sweep {ref.label!r} "
                                        f"({[m.label for m in members]})")
            out.extend(m for m in members if not only or m.label in only)
        elif not ref.is_set:
            out.append(ref)
            if ref.kind == "spec" and seeds > 1:
                out.extend(seed_refs(ref, seeds))
    return out


def set_refs(config: pytest.Config) -> list:
    """The run sets the set claims judge: those named with ``--run``, and the built-in sweeps with
    ``--claims-sweeps``."""
    from claimlens.plugin.runs import builtin_sweeps

    named = [ref for ref in all_refs(config) if ref.is_set]
    if config.getoption("claimlens_members"):  # this process judges members of the named sweeps, not the sets
        named = [ref for ref in named if ref.kind != "sweep"]
    if config.getoption("claimlens_sweeps"):
        names = {ref.path.resolve() for ref in named}
        named += [ref for ref in builtin_sweeps() if ref.path.resolve() not in names]
    return named


class Collector:
    """Gathers the records attached to reports (on the xdist controller, from every worker)."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_runtest_logreport(self, report) -> None:
        record = getattr(report, "claimlens_record", None)
        if record is not None:
            self.config.stash[RECORDS].append(record)
            if record["outcome"] == "error":
                self.config.stash[UNJUDGED].append(report.nodeid)  # a bad input, a setup error: no verdict reached
            return
        if report.failed:
            self.config.stash[UNJUDGED].append(report.nodeid)
            if report.when == "???":  # pytest-xdist: the worker running this test died
                from claimlens.report.document import crash_record

                self.config.stash[RECORDS].append(crash_record(report.nodeid, str(report.longrepr)[-2000:]))


def finish(session: pytest.Session) -> None:
    """Build the document from the records, compare it with the baseline, write claims.json and the HTML."""
    from claimlens.report import document as doc

    config = session.config
    records = config.stash.get(RECORDS, [])
    if not records:
        return
    try:  # on an xdist controller nothing was collected, so the default run may not be resolved yet
        run_refs = refs(config) + set_refs(config)
    except pytest.UsageError:
        run_refs = []
    used = {r["run"] for r in records}
    used_claims = {r["claim_id"] for r in records}
    overrides = {cid: v for cid, v in config.stash[THRESHOLDS].items() if cid in used_claims}
    document = doc.build_document(records, runs=[ref.describe() for ref in run_refs if ref.label in used],
                                  rootdir=Path(str(config.rootpath)), threshold_overrides=overrides)
    if overrides:
        config.stash[SUMMARY_LINES].append(
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
        config.stash[SUMMARY_LINES].append(
            f"claimlens: error: could not write the report to {out} ({exc.strerror or exc}); the files written "
            f"there before are unchanged")
        session.exitstatus = max(int(session.exitstatus), int(pytest.ExitCode.INTERNAL_ERROR))
        config.stash[RECORDS] = []
        return
    config.stash[RECORDS] = []
    counts = ", ".join(f"{n} {o}" for o, n in document["summary"].items() if n)
    config.stash[SUMMARY_LINES].insert(0, f"claimlens: {len(records)} claim records ({counts}) written to "
                                          f"{out / 'claims.json'} and {out / 'claims.html'}")
    if document["summary"].get("error"):
        config.stash[SUMMARY_LINES][1:1] = _unjudged_lines(records)


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
    lines = config.stash[SUMMARY_LINES]
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
        elif session.exitstatus == 1 and not config.stash.get(UNJUDGED, []):
            # only claims that also failed in the baseline failed: the gate passes. Never for errors, crashes,
            # failed non-claim tests or any other exit status: nothing lowers a status it did not judge.
            session.exitstatus = 0


def terminal_summary(terminalreporter, config: pytest.Config) -> None:
    lines = config.stash.get(SUMMARY_LINES, [])
    if lines:
        terminalreporter.section("claimlens")
        for line in lines:
            terminalreporter.write_line(line)
