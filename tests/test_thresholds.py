"""Claim thresholds: defaults, overrides from pyproject.toml and --claims-threshold, and their effect on verdicts."""

import ast
import json
import math
from pathlib import Path

import pytest

from claimlens import thresholds as th
from conftest import ROOT

pytest_plugins = ["pytester"]


def test_every_threshold_has_a_reason_and_a_finite_value():
    for claim_id, names in th.defaults().items():
        assert names, claim_id
        for name, t in names.items():
            assert t.why.strip(), f"{claim_id}.{name} says where it comes from"
            assert isinstance(t.value, (int, float)) and t.value == t.value, f"{claim_id}.{name}"
            assert t.source is None or math.isfinite(t.source), f"{claim_id}.{name}"


def _threshold_names_read(fn) -> set[str]:
    """The names ``fn`` (a rule, undecorated) reads through ``th[...]``, from its source."""
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn))))
    return {n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name) and n.value.id == "th" and isinstance(n.slice, ast.Constant)}


def test_rules_use_exactly_the_declared_thresholds():
    """Each claim's bound rules (``@SPEC.rule``) read exactly the thresholds its spec declares, besides the few
    its claim test reads to measure with (``claim.thresholds[...]``)."""
    from claimlens.families import CLAIMS

    claims_dir_reads = {"trig_fraction_rises_logits_before_neurons": {"neuron_fve"},  # read by the claim tests
                        "neurons_cluster_by_single_frequency": {"neuron_fve"},
                        "commutativity_output_swap_invariant": {"max_logit_asymmetry"}}
    for claim_id, spec in CLAIMS.items():
        names = set().union(*(_threshold_names_read(r) for r in spec.rules)) | claims_dir_reads.get(claim_id, set())
        assert names == set(spec.thresholds), (claim_id, sorted(names ^ set(spec.thresholds)))


def _claim_tests():
    """``(test name, its ClaimSpec)`` of every test in ``claims/``, read from the imported modules' markers."""
    import importlib.util

    for path in sorted((ROOT / "claims").glob("test_*.py")):
        module_spec = importlib.util.spec_from_file_location(f"claims_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        for name, fn in vars(module).items():
            for mark in getattr(fn, "pytestmark", []) if name.startswith("test_") else []:
                if mark.name == "claim":
                    yield name, mark.args[0]


def test_every_claim_test_names_a_spec_with_its_rule_and_every_spec_has_a_test():
    """The binding is the decorator: every built-in claim's test is marked with its spec, every spec has a test,
    and every spec's rules are bound to it (a claim without a rule states its check in its test: the swap
    property, drawn by Hypothesis)."""
    from claimlens.core.verdicts import ClaimSpec
    from claimlens.families import CLAIMS

    tested = list(_claim_tests())
    assert tested and all(isinstance(spec, ClaimSpec) for _, spec in tested)
    assert {spec.id for _, spec in tested} == set(CLAIMS)
    assert all(CLAIMS[spec.id] is spec for _, spec in tested), "a claim test's spec is the family's own object"
    assert {cid for cid, spec in CLAIMS.items() if not spec.rules} == {"commutativity_output_swap_invariant"}
    for spec in CLAIMS.values():
        assert all(rule.claim is spec for rule in spec.rules), spec.id


def test_a_rule_is_bound_to_its_claim_and_judge_refuses_another():
    from claimlens import ClaimSpec, Threshold, Verdict
    from claimlens.plugin.claim import Claim

    mine = ClaimSpec(id="mine", statement="x", source="s", thresholds={"t": Threshold(1, "ours")})
    other = ClaimSpec(id="other", statement="y", source="s")

    @mine.rule
    def rule(x, th):
        v = Verdict()
        v.check("x", x, ">=", th["t"])
        return v

    @other.rule
    def other_rule(th):
        return Verdict("mine")  # claims to be another claim's verdict

    assert rule.claim is mine and mine.rules == (rule,) and rule(2, {"t": 1}).claim_id == "mine"
    claim = Claim(mine, {"t": 1})
    assert claim.judge(2).passed and claim.judge(rule, 0).failures
    with pytest.raises(TypeError, match="bound to claim 'other', not to this test's claim 'mine'"):
        claim.judge(other_rule)
    with pytest.raises(TypeError, match="bound to claim 'other' but returned a verdict of 'mine'"):
        other_rule({})
    with pytest.raises(TypeError, match="not bound to a claim: decorate it with @SPEC.rule"):
        claim.judge(lambda th: Verdict(), 1)
    with pytest.raises(TypeError, match="has no rule bound: bind one"):
        Claim(other.__class__(id="bare", statement="", source=""), {}).judge(1)


def test_thresholds_apply_overrides_carry_the_source_and_name_unknown_ones():
    t = th.Thresholds("grokking_delayed_generalisation", {"delay_ratio": 10})
    assert t["delay_ratio"] == 10 and t["delay_ratio"].source == 51.5 and t["delay_ratio"].key == "delay_ratio"
    assert th.Thresholds("grokking_delayed_generalisation")["delay_ratio"] == 5
    with pytest.raises(KeyError, match="no threshold 'nope'.*delay_ratio"):
        t["nope"]


@pytest.mark.parametrize(("item", "message"), [
    ("grokking_delayed_generalisation.delay_ratio", "expected CLAIM.NAME=VALUE"),
    ("delay_ratio=10", "expected CLAIM.NAME=VALUE"),
    ("no_such_claim.x=1", "unknown claim 'no_such_claim'"),
    ("phase_boundaries_mainline.typo=1", "unknown claim 'phase_boundaries_mainline'"),  # it has no thresholds
    ("trig_loss_all_equals_train.typo=1", "has no threshold 'typo'.*known: \\['max_relative_difference'"),
    ("trig_loss_all_equals_train.max_relative_difference=abc", "'abc' is not a number"),
    ("trig_loss_all_equals_train.max_relative_difference=nan", "not a finite number"),
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
    assert len(rows) == sum(len(v) for v in th.defaults().values())
    row = next(r for r in rows if (r["claim"], r["name"]) == ("llc_tracks_test_loss", "min_spearman"))
    assert row["value"] == 0.5 and row["default"] == 0.7
    row = next(r for r in rows if (r["claim"], r["name"]) == ("excluded_loss_rises_during_circuit_formation",
                                                              "min_log10_rise"))
    assert row["source"] == 1.60, "the source's own value is listed next to the threshold"


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
    final = next(m for m in record["measurements"] if m["name"].startswith("test accuracy at the last epoch"))
    assert final["threshold"] == 0.0 and final["passed"] is True and final["source_value"] == 1.0
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
