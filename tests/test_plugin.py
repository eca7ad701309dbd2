"""The pytest plugin, driven from outside through pytester."""

import pytest

from conftest import ROOT

pytest_plugins = ["pytester"]


def run_claims(pytester, *args):
    return pytester.runpytest_subprocess(str(ROOT / "claims"), "-p", "no:cacheprovider", "--rootdir", str(ROOT), *args)


def test_help_lists_the_options(pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*claimlens*", "*--run=PATH*"])


def test_claims_are_parametrized_by_run_and_fail_on_a_run_that_did_not_grok(pytester, tiny_run):
    result = run_claims(pytester, "--run", str(tiny_run.path), "-v")
    result.stdout.fnmatch_lines(["*test_grokking_delayed_generalisation?run=tiny? FAILED*"])
    result.stdout.fnmatch_lines(["*test accuracy at the last epoch 120 is *threshold 0.99*"])
    assert result.ret == 1


def test_bad_run_option_is_a_usage_error(pytester, tmp_path):
    result = run_claims(pytester, "--run", str(tmp_path))
    result.stderr.fnmatch_lines(["*--run*has no run.json*"])
    assert result.ret == 4


def test_two_runs_give_two_ids(pytester, tiny_run, tiny_mlp_run):
    result = run_claims(pytester, "--run", str(tiny_run.path), "--run", str(tiny_mlp_run.path), "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*run=tiny]*", "*run=tiny-mlp]*"])


@pytest.mark.slow
def test_default_run_passes_and_the_negative_control_fails(pytester):
    ok = run_claims(pytester)  # no --run: the built-in default run
    ok.stdout.fnmatch_lines(["*1 passed*"])
    assert ok.ret == 0
    control = run_claims(pytester, "--run", str(ROOT / "fixtures" / "no_weight_decay.toml"))
    control.stdout.fnmatch_lines(["*test accuracy at the last epoch 2500 is 0.*threshold 0.99*", "*1 failed*"])
    assert control.ret == 1
