"""Sessions that end early lose nothing (issue 37, part 3; case E3-04): a session that did not run every claim test it
collected (-k, --lf, -x, Ctrl-C, xdist) writes its report marked partial, never over a complete one; a baseline
takes from it only the records that ran, never a new baseline; the gate on it compares what ran and counts the
rest. The sessions run the real claims on the cached built-in runs (claims/test_mlp.py and claims/test_pizza.py:
25 claim tests, a few seconds on a warm cache; marked slow, as they train the runs on a cold one), or small claims
files of their own."""

import json
import os
import signal
import subprocess
import sys
import threading

import jsonschema
import pytest

from claimlens._io import cache_dir
from claimlens.report.compare import diff, format_diff, update
from claimlens.report.document import merge
from claimlens.report.html import render
from conftest import ROOT

pytest_plugins = ["pytester"]

CACHE = cache_dir()  # read before pytester moves HOME: the sessions judge the cached built-in runs, never retrain
SCHEMA = json.loads((ROOT / "src" / "claimlens" / "report" / "schema.json").read_text())
FILES = [str(ROOT / "claims" / "test_mlp.py"), str(ROOT / "claims" / "test_pizza.py")]
FLIP = "mlp_summed_embeddings_grok.min_delay_epochs=20000"  # mlp_sum generalises 11 474 epochs after memorising
SUMMED = "claims/test_mlp.py::test_mlp_summed_embeddings_grok[run=mlp_sum]"


@pytest.fixture
def builtin_cache(monkeypatch):
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(CACHE))


def claims(pytester, tmp_path, *args, cache=False):
    """A session of the real claims on the cached built-in runs; with ``cache`` pytest's cache (--lf) in tmp_path,
    never in the project."""
    where = ["-o", f"cache_dir={tmp_path / 'cache'}"] if cache else ["-p", "no:cacheprovider"]
    return pytester.runpytest_subprocess(*FILES, "--rootdir", str(ROOT), *where, "--claims-report",
                                         str(tmp_path / "rep"), *args)


def load(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_lf_baseline_update_keeps_the_records_it_did_not_rerun_and_the_gate_still_sees_them(pytester, tmp_path, builtin_cache):
    """E3-04: `--lf --claims-baseline-update` rewrote the baseline from the 2 tests it reran (25 -> 2 records), and a
    candidate with a real flip then passed the gate. Now the update replaces those 2 and keeps the other 23; the
    complete claims.json is left byte for byte; and a -k gate finds the flip among the kept records, saying how many
    baseline records it did not compare."""
    base, rep = tmp_path / "base.json", tmp_path / "rep"
    first = claims(pytester, tmp_path, "--claims-baseline", str(base), cache=True)
    first.stdout.fnmatch_lines(["claimlens: 25 claim records (*) written to*claims.json*",
                                "claimlens: baseline recorded in*base.json"])
    assert "partial" not in load(rep / "claims.json") and len(load(base)["records"]) == 25
    report = (rep / "claims.json").read_bytes()

    rerun = claims(pytester, tmp_path, "--lf", "--claims-baseline", str(base), "--claims-baseline-update", cache=True)
    rerun.stdout.fnmatch_lines([
        "claimlens: 2 claim records (2 failed) written to *claims.partial.json and *claims.partial.html",
        "claimlens: partial session: 2 of 17 claim tests ran (15 deselected by --lf; 1 file not collected by --lf*",
        "claimlens: the complete report *claims.json of an earlier session was left as it was*",
        "claimlens: baseline updated in *base.json from a partial session: updated 2 records, kept 23 not run"])
    assert (rep / "claims.json").read_bytes() == report
    updated = load(base)
    assert len(updated["records"]) == 25 and "partial" not in updated
    assert updated["baseline_update"]["updated"] == 2 and updated["baseline_update"]["kept"] == 23
    partial = load(rep / "claims.partial.json")
    jsonschema.validate(partial, SCHEMA)
    assert partial["partial"]["ran"] == 2 and partial["partial"]["files_not_collected"] == 1
    assert {(e["why"], e["by"]) for e in partial["partial"]["not_run"]} == {("deselected", "--lf")}
    assert partial["partial"]["deselected_by"] == ["--lf"]
    assert "Partial session" in (rep / "claims.partial.html").read_text()

    gate = claims(pytester, tmp_path, "-k", "mlp_sum", "--claims-baseline", str(base),
                  "--claims-fail-on", "flips", "--claims-threshold", FLIP)
    gate.stdout.fnmatch_lines([
        ("claims baseline: 1 flipped, 0 added, 0 removed, * moved beyond tolerance; 20 baseline records not compared "
        "(this partial session did not run them: 20 deselected by -k 'mlp_sum')"),
        f"*FLIP passed -> failed: {SUMMED.replace('[', '?').replace(']', '?')}"])
    assert gate.ret == 1
    diffed = load(rep / "claims.partial.json")["baseline_diff"]
    assert len(diffed["not_compared"]) == 20 and diffed["removed"] == []


@pytest.mark.slow
def test_a_new_baseline_from_a_partial_session_is_refused(pytester, tmp_path, builtin_cache):
    """A baseline holds every claim: a -k session records none (one line saying why and what to run, status 4),
    and writes its report as claims.json, marked partial, when no complete report is there."""
    base = tmp_path / "new.json"
    result = claims(pytester, tmp_path, "-k", "mlp_sum", "--claims-baseline", str(base))
    result.stdout.fnmatch_lines([(f"claimlens: baseline not recorded in {base}: this session did not run every claim "
                                 "(20 deselected by -k 'mlp_sum'); a baseline holds every claim — run the session "
                                 "without the options that deselect or stop tests to record it")])
    assert result.ret == 4 and not base.exists()
    doc = load(tmp_path / "rep" / "claims.json")
    assert doc["partial"]["ran"] == 5 and doc["partial"]["collected"] == 25
    update_too = claims(pytester, tmp_path, "-k", "mlp_sum", "--claims-baseline", str(base),
                        "--claims-baseline-update")
    assert update_too.ret == 4 and not base.exists()


HANG = '''
import os
import signal
import time

import pytest

# Ctrl-C as at a terminal: a job started in the background by a shell without job control (`nohup … &`, as a CI
# runner may start it) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all
signal.signal(signal.SIGINT, signal.default_int_handler)

_claims = [0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """The Nth claim test takes long (as a first analysis does): the test sends SIGINT while it runs."""
    if item.get_closest_marker("claim") is not None:
        _claims[0] += 1
        if _claims[0] == int(os.environ["CLAIMLENS_HANG_AT"]):
            print("\\nclaimlens-test: hanging in", item.nodeid, flush=True)
            time.sleep(120)
    return (yield)
'''


@pytest.mark.slow
def test_an_interrupted_session_leaves_the_complete_report_and_the_baseline_as_they_were(pytester, tmp_path, builtin_cache):
    """Ctrl-C: a real SIGINT to a session of two claims files while its 5th claim test runs (their analyses cached
    by the first session, so it reaches its 5th test in seconds). The complete claims.json, its HTML and the baseline (even with
    --claims-baseline-update) stay byte for byte; the 4 records that ran go to claims.partial.json, marked interrupted,
    the others listed as not reached."""
    base, rep = tmp_path / "base.json", tmp_path / "rep"
    claims(pytester, tmp_path, "--claims-baseline", str(base)).assert_outcomes(
        passed=15, failed=2, skipped=8)
    before = {p: p.read_bytes() for p in (base, rep / "claims.json", rep / "claims.html")}
    (tmp_path / "hang_plugin.py").write_text(HANG)
    env = {**os.environ, "CLAIMLENS_HANG_AT": "5", "OMP_NUM_THREADS": "1", "CLAIMLENS_CACHE_DIR": str(CACHE),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *FILES, "--rootdir", str(ROOT), "-p", "no:cacheprovider",
         "-p", "hang_plugin", "-s", "-v", "--claims-report", str(rep), "--claims-baseline", str(base),
         "--claims-baseline-update"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(300, proc.kill)  # a safety net against a hang, not a timing (a loaded CI machine)
    watchdog.start()
    try:
        out = []
        for line in proc.stdout:
            out.append(line)
            if line.startswith("claimlens-test: hanging in"):
                proc.send_signal(signal.SIGINT)
                break
        out.append(proc.communicate()[0])
    finally:
        watchdog.cancel()
    text = "".join(out)
    assert proc.returncode == 2, text[:2000] + "\n…\n" + text[-2000:]
    assert sum(" PASSED" in ln or " FAILED" in ln or " SKIPPED" in ln for ln in text.splitlines()) == 4, text[-3000:]
    assert {p: p.read_bytes() for p in before} == before, "the complete report and the baseline are unchanged"
    assert f"claimlens: baseline {base} left as it was: the session was interrupted before every claim ran" in text
    assert "claimlens: partial session: 4 of 25 claim tests ran (interrupted (KeyboardInterrupt" in text
    doc = load(rep / "claims.partial.json")
    jsonschema.validate(doc, SCHEMA)
    partial = doc["partial"]
    assert partial["stopped"]["kind"] == "interrupted" and partial["ran"] == len(doc["records"]) == 4
    assert partial["not_run_count"] == 21 and {e["why"] for e in partial["not_run"]} == {"not reached"}
    assert partial["complete_report"] == str(rep / "claims.json")
    page = (rep / "claims.partial.html").read_text()
    assert "Partial session" in page and "4 of 25 claim tests ran" in page


STOPPING = '''
import pytest
from claimlens import Verdict

@pytest.mark.claim(id="old_failure", statement="failed in the baseline too", source="test")
def test_a_old_failure(claim):
    v = Verdict()
    v.check("x", 0, ">=", 1)
    claim.judge(v)

@pytest.mark.claim(id="later", statement="never reached with -x", source="test")
def test_b_later(claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)
'''


def test_a_session_stopped_by_x_is_partial_and_the_gate_does_not_wave_it_through(pytester, tmp_path):
    """-x stops after the first failure: the report says which claim was not reached, the baseline update keeps its
    record, and --claims-fail-on flips does not turn a session that judged one claim of two green."""
    pytester.makepyfile(test_stop=STOPPING)
    (tmp_path / "r").mkdir()
    baseline = {"records": [record("test_stop.py::test_a_old_failure", "failed"),
                            record("test_stop.py::test_b_later", "passed")]}
    for path in (tmp_path / "base.json", tmp_path / "r" / "claims.json"):  # a complete report of an earlier session
        path.write_text(json.dumps(baseline))
    args = ["-p", "no:cacheprovider", "--rootdir", str(pytester.path), "--claims-report", str(tmp_path / "r"),
            "--claims-baseline", str(tmp_path / "base.json")]
    stopped = pytester.runpytest_subprocess(*args, "-x", "--claims-fail-on", "flips")
    assert stopped.ret == 1
    stopped.stdout.fnmatch_lines([("claimlens: partial session: 1 of 2 claim tests ran (stopped early (stopping after 1 "
                                  "failures); 1 not reached)*"),
                                  "claims baseline: 0 flipped*; 1 baseline record not compared*"])
    doc = load(tmp_path / "r" / "claims.partial.json")
    assert doc["partial"]["not_run"] == [{"nodeid": "test_stop.py::test_b_later", "why": "not reached"}]
    assert doc["partial"]["stopped"]["kind"] == "stopped"
    update_run = pytester.runpytest_subprocess(*args, "-x", "--claims-baseline-update")
    update_run.stdout.fnmatch_lines([("*baseline updated in *base.json from a partial session: updated 1 record, kept 1 "
                                     "not run")])
    complete = pytester.runpytest_subprocess(*args)
    assert not (tmp_path / "r" / "claims.partial.json").exists(), "a complete report removes the stale partial one"
    assert "partial" not in load(tmp_path / "r" / "claims.json") and complete.ret == 1


def test_xdist_workers_tell_the_controller_what_they_deselected(pytester, tmp_path):
    """Under xdist the workers collect and deselect; the controller's report is partial all the same."""
    pytester.makepyfile(test_stop=STOPPING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "-k", "later", "--claims-report",
                                           str(tmp_path / "r"))
    assert result.ret == 0
    partial = load(tmp_path / "r" / "claims.json")["partial"]
    assert partial["ran"] == 1 and partial["not_run"] == [{"nodeid": "test_stop.py::test_a_old_failure",
                                                           "why": "deselected", "by": "-k 'later'"}]


def record(nodeid, outcome, run="r", claim_id=None):
    return {"nodeid": nodeid, "claim_id": claim_id or nodeid, "run": run, "outcome": outcome, "measurements": [],
            "series": []}


def document(*records, partial=None, **extra):
    doc = {"created": "now", "git_commit": "c", "runs": [{"label": "r", "kind": "run", "path": "r"}],
           "records": list(records), "summary": {}, **extra}
    if partial is not None:
        doc["partial"] = {"reason": partial, "ran": len(records), "collected": 9, "not_run_count": 0, "not_run": []}
    return doc


def test_the_diff_of_a_partial_report_counts_what_it_did_not_compare():
    old = document(record("a", "passed"), record("b", "passed"), record("c", "failed"))
    complete = diff(old, document(record("a", "passed")))
    assert [f["to"] for f in complete["flips"]] == ["missing"] and complete["removed"] == ["b", "c"]
    partial = diff(old, document(record("a", "failed"), partial="2 deselected by -k 'a'"))
    assert [(f["nodeid"], f["to"]) for f in partial["flips"]] == [("a", "failed")]
    assert partial["removed"] == [] and partial["not_compared"] == ["b", "c"]
    assert format_diff(partial)[0].endswith("; 2 baseline records not compared (this partial session did not run "
                                            "them: 2 deselected by -k 'a')")
    page = render({**document(record("a", "failed"), partial="x"), "baseline_diff": {**partial, "baseline": "b"}})
    assert "2 baseline records not compared" in page and "Partial session" in page


def test_update_replaces_what_ran_and_keeps_the_rest():
    old = document(record("a", "passed"), record("b", "passed"), record("t_old.py::x", "passed", claim_id="x"),
                   threshold_overrides={"b": {"t": 1.0}, "a": {"t": 2.0}}, created="then", git_commit="old")
    old["runs"].append({"label": "gone", "kind": "run", "path": "g"})
    old["records"].append(record("g", "passed", run="gone"))
    new = document(record("a", "failed"), record("t_new.py::x", "passed", claim_id="x"), record("n", "passed"),
                   partial="-k")
    merged = update(old, new)
    assert {r["nodeid"]: r["outcome"] for r in merged["records"]} == {"a": "failed", "b": "passed", "g": "passed",
                                                                      "n": "passed", "t_new.py::x": "passed"}
    assert merged["baseline_update"] == {"updated": 3, "added": 1, "kept": 2, "reason": "-k",
                                         "kept_from": {"created": "then", "git_commit": "old"}}
    assert merged["threshold_overrides"] == {"b": {"t": 1.0}}, "a was judged again, without an override"
    assert [r["label"] for r in merged["runs"]] == ["gone", "r"] and "partial" not in merged
    assert merged["summary"] == {"passed": 4, "failed": 1, "error": 0, "skipped": 0}
    assert diff(merged, new)["flips"] == []


def test_a_merge_of_a_partial_report_is_partial():
    a = document(record("x[run=r1]", "passed"), partial="interrupted")
    b = document(record("x[run=r2]", "passed"))
    merged = merge([a, b])
    assert merged["partial"]["reason"] == "1 of the 2 merged reports is partial: interrupted"
    assert "partial" not in merge([b])
