"""Claim thresholds: defaults, overrides from pyproject.toml and --claims-threshold, and their effect on verdicts."""

import ast
import json
from pathlib import Path

import pytest

from claimlens import thresholds as th
from conftest import ROOT

pytest_plugins = ["pytester"]


def test_every_default_has_a_reason_and_a_finite_value():
    for claim_id, names in th.DEFAULTS.items():
        assert names, claim_id
        for name, t in names.items():
            assert t.why.strip(), f"{claim_id}.{name} says where it comes from"
            assert isinstance(t.value, (int, float)) and t.value == t.value, f"{claim_id}.{name}"


def _claim_ids_and_threshold_names() -> dict[str, set[str]]:
    """claim id -> names read through ``th[...]`` / ``thresholds[...]`` in the claim files (by parsing them)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "claims").glob("test_*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef):
                continue
            claim = [kw.value.value for d in fn.decorator_list if isinstance(d, ast.Call)
                     for kw in d.keywords if kw.arg == "id"]
            if not claim:
                continue
            names = {n.slice.value for n in ast.walk(fn) if isinstance(n, ast.Subscript)
                     and isinstance(n.value, ast.Name) and n.value.id in ("th", "thresholds")
                     and isinstance(n.slice, ast.Constant)}
            found[claim[0]] = names
    return found


def test_claims_use_exactly_the_declared_thresholds():
    used = _claim_ids_and_threshold_names()
    for claim_id, names in th.DEFAULTS.items():
        assert claim_id in used, f"thresholds declared for {claim_id}, which no claim file defines"
        assert used[claim_id] == set(names), (claim_id, sorted(used[claim_id] ^ set(names)))
    undeclared = {c for c, names in used.items() if names and c not in th.DEFAULTS}
    assert not undeclared, f"claims reading thresholds that have no defaults: {undeclared}"


def test_thresholds_apply_overrides_and_name_unknown_ones():
    t = th.Thresholds("trig_loss_all_equals_train", {"max_abs_log10_ratio": 0.2})
    assert t["max_abs_log10_ratio"] == 0.2 and len(t) == 1 and list(t) == ["max_abs_log10_ratio"]
    assert th.Thresholds("trig_loss_all_equals_train")["max_abs_log10_ratio"] == 0.05
    with pytest.raises(KeyError, match="no threshold 'nope'.*max_abs_log10_ratio"):
        t["nope"]


@pytest.mark.parametrize(("item", "message"), [
    ("trig_loss_all_equals_train.max_abs_log10_ratio", "expected CLAIM.NAME=VALUE"),
    ("max_abs_log10_ratio=0.1", "expected CLAIM.NAME=VALUE"),
    ("no_such_claim.x=1", "unknown claim 'no_such_claim'"),
    ("trig_loss_all_equals_train.typo=1", "has no threshold 'typo'.*known: \\['max_abs_log10_ratio'\\]"),
    ("trig_loss_all_equals_train.max_abs_log10_ratio=abc", "'abc' is not a number"),
    ("trig_loss_all_equals_train.max_abs_log10_ratio=nan", "not a finite number"),
    ("restricted_loss_falls_before_test_loss.fall_factor=0", "must be > 0"),
    ("embedding_sparse_in_fourier_basis.top_frequencies=2.5", "must be a whole number"),
    ("llc_sensitive_to_grokking_transition.max_distance_checkpoints=-1", "must be ≥ 0"),
])
def test_bad_option_values_are_named(item, message):
    with pytest.raises(th.ThresholdError, match=message):
        th.from_options([item])


def test_pyproject_overrides_and_command_line_wins(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.claimlens.thresholds.grokking_delayed_generalisation]\ndelay_ratio = 10\n"
                    "final_test_acc = 0.9\n")
    file = th.from_pyproject(path)
    assert file == {"grokking_delayed_generalisation": {"delay_ratio": 10.0, "final_test_acc": 0.9}}
    merged = th.merge(file, th.from_options(["grokking_delayed_generalisation.delay_ratio=3"]))
    assert merged == {"grokking_delayed_generalisation": {"delay_ratio": 3.0, "final_test_acc": 0.9}}
    assert th.from_pyproject(tmp_path / "absent.toml") == {}
    path.write_text("[tool.claimlens.thresholds.grokking_delayed_generalisation]\ndelay_ratio = 'ten'\n")
    with pytest.raises(th.ThresholdError, match="delay_ratio = 'ten' is not a finite number"):
        th.from_pyproject(path)
    path.write_text("[tool.claimlens.thresholds\n")
    with pytest.raises(th.ThresholdError, match="not valid TOML"):
        th.from_pyproject(path)


def test_cli_lists_every_threshold(capsys, tmp_path):
    from claimlens.cli import main

    (tmp_path / "pyproject.toml").write_text("[tool.claimlens.thresholds.llc_tracks_test_loss]\nmin_spearman = 0.5\n")
    assert main(["thresholds", "--json", "--pyproject", str(tmp_path / "pyproject.toml")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == sum(len(v) for v in th.DEFAULTS.values())
    row = next(r for r in rows if (r["claim"], r["name"]) == ("llc_tracks_test_loss", "min_spearman"))
    assert row["value"] == 0.5 and row["default"] == 0.7


def _run(pytester, rootdir: Path, *args):
    return pytester.runpytest_subprocess(str(ROOT / "claims"), "-p", "no:cacheprovider", "--rootdir", str(rootdir),
                                         *args)


def test_an_override_changes_the_verdict_and_is_reported(pytester, tiny_run, tmp_path):
    """The tiny run does not generalise: with the default final-accuracy threshold the claim fails on it; with
    the threshold at 0 it fails at the next check instead (no epoch reaches the generalisation level)."""
    out = tmp_path / "rep"
    result = _run(pytester, ROOT, "--run", str(tiny_run.path), "-k", "grokking_delayed", "--claims-report", str(out),
                  "--claims-threshold", "grokking_delayed_generalisation.final_test_acc=0")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*judged with thresholds changed from the defaults: grokking_delayed_generalisation.final_test_acc=0*"])
    doc = json.loads((out / "claims.json").read_text())
    assert doc["threshold_overrides"] == {"grokking_delayed_generalisation": {"final_test_acc": 0.0}}
    record = doc["records"][0]
    final = next(m for m in record["measurements"] if m["name"] == "final test acc")
    assert final["threshold"] == 0.0 and final["passed"] is True
    assert "test accuracy never reached 0.95" in record["message"]
    assert "Thresholds changed from the defaults" in (out / "claims.html").read_text()


def test_pyproject_thresholds_are_read_from_the_rootdir(pytester, tiny_run, tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[tool.claimlens.thresholds.grokking_delayed_generalisation]\n"
                                         "final_test_acc = 0.0\n")
    out = tmp_path / "rep"
    _run(pytester, root, "--run", str(tiny_run.path), "-k", "grokking_delayed", "--claims-report", str(out))
    doc = json.loads((out / "claims.json").read_text())
    assert doc["threshold_overrides"] == {"grokking_delayed_generalisation": {"final_test_acc": 0.0}}


def test_an_unknown_threshold_is_a_usage_error(pytester, tiny_run):
    result = _run(pytester, ROOT, "--run", str(tiny_run.path), "--claims-threshold",
                  "grokking_delayed_generalisation.delay=3")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*has no threshold 'delay'*delay_ratio*"])
