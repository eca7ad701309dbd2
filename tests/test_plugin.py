"""The pytest plugin, driven from outside through pytester."""

import pytest

from conftest import ROOT

pytest_plugins = ["pytester"]

DIAGNOSTICS = {"llc_sampling_is_healthy"}  # claims about the measurement, not about grokking
# Claims about any training trajectory, not about grokking: a run that does not grok is no control for them. Their
# negative controls are the column-permutation null and a full-rank matrix (tests/test_lowrank.py).
ANY_TRAJECTORY = {"checkpoint_matrix_is_low_rank", "gradient_updates_are_low_rank"}
# Claims whose positive case is a run that does not grok (mlp_concat is the model the claim is about).
ABOUT_NOT_GROKKING = {"mlp_concatenated_embeddings_never_grok"}
LLC_CLAIMS = ("llc_rises_in_memorisation_then_falls", "llc_tracks_test_loss", "llc_sensitive_to_grokking_transition")


def run_claims(pytester, *args):
    return pytester.runpytest_subprocess(str(ROOT / "claims"), "-p", "no:cacheprovider", "--rootdir", str(ROOT), *args)


def test_help_lists_the_options(pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*claimlens*", "*--run=PATH*"])


def test_claims_are_parametrized_by_run_and_fail_on_a_run_that_did_not_grok(pytester, tiny_run):
    result = run_claims(pytester, "--run", str(tiny_run.path), "-v", "-k", "grokking_delayed")
    result.stdout.fnmatch_lines(["*test_grokking_delayed_generalisation?run=tiny? FAILED*"])
    result.stdout.fnmatch_lines(["*test accuracy at the last epoch*measured*threshold >= 0.99 (epoch 120)*"])
    assert result.ret == 1


def test_bad_run_option_is_a_usage_error(pytester, tmp_path):
    result = run_claims(pytester, "--run", str(tmp_path))
    result.stderr.fnmatch_lines(["*--run*has no run.json*"])
    assert result.ret == 4


def test_a_spec_with_a_bad_field_is_a_usage_error_naming_it(pytester, tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "bad"\n[task]\np = 11\n[model]\nattn_rate = 1.5\n[train]\nepochs = 2\n'
                    'checkpoint_every = 1\n')
    result = run_claims(pytester, "--run", str(spec))
    result.stderr.fnmatch_lines(["*--run*bad.toml*model.attn_rate must be a number in [[]0, 1]*got 1.5*"])
    assert result.ret == 4
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_built_in_run_is_named_by_its_spec_name_and_a_wrong_name_lists_them(pytester):
    result = run_claims(pytester, "--run", "pizza", "--collect-only", "-q", "-k", "gradient_symmetricity")
    result.stdout.fnmatch_lines(["*test_gradient_symmetricity?run=pizza?*"])
    assert result.ret == 0
    result = run_claims(pytester, "--run", "piza")
    result.stderr.fnmatch_lines(["*--run piza: no such file or directory, and not a built-in run (*default*pizza*"])
    assert result.ret == 4


def test_records_carry_the_family_of_their_claim(pytester, tiny_run, tmp_path):
    """A built-in claim's family is its folder's; a user's claim without one takes its claims file's name, read from
    the file even when the node id is relative to a rootdir that does not hold it."""
    import json

    project = tmp_path / "project"
    (project / "claims").mkdir(parents=True)
    (project / "claims" / "test_mine.py").write_text(
        "import pytest\nfrom claimlens import Verdict\n\n\n@pytest.mark.claim(id='my_claim', statement='s', source='x')\n"
        "def test_mine(run, claim):\n    v = Verdict()\n    v.check('one', 1.0, '>=', 0.5)\n    claim.judge(v)\n")
    result = pytester.runpytest_subprocess(str(project / "claims"), str(ROOT / "claims" / "test_grokking.py"),
                                           "-p", "no:cacheprovider", "--rootdir", str(ROOT), "--run", str(tiny_run.path),
                                           "-k", "mine or grokking_delayed", "--claims-report", str(tmp_path / "rep"))
    assert result.ret == 1  # the tiny run does not grok
    families = {r["claim_id"]: r["family"] for r in json.loads((tmp_path / "rep" / "claims.json").read_text())["records"]}
    assert families == {"my_claim": "mine", "grokking_delayed_generalisation": "grokking"}


def test_a_first_session_names_the_runs_it_trains_and_a_second_does_not(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[task]\np = 23\nfrac_train = 0.5\nsplit_seed = 1\n[model]\nd_model = 32\n'
                    'n_heads = 4\nd_head = 8\nd_mlp = 64\n[train]\nepochs = 120\ncheckpoint_every = 10\nlr = 3e-3\n')
    args = ("--run", str(spec), "-k", "grokking_delayed", "--claims-report", str(tmp_path / "rep"))
    collected = run_claims(pytester, *args, "--collect-only", "-q")
    assert "first use" not in collected.stdout.str()
    first = run_claims(pytester, *args)
    first.stdout.fnmatch_lines(["claimlens: first use of 1 run (tiny): trained now on CPU *",
                                "claimlens: trained 1 of 1 run in * s"])
    second = run_claims(pytester, *args)
    assert "first use" not in second.stdout.str()
    assert first.ret == second.ret == 1  # the tiny run does not grok: the claim fails, in both sessions


def test_a_truncated_checkpoint_makes_its_claims_errors_with_one_message_naming_it(pytester, tiny_run, tmp_path,
                                                                                  monkeypatch):
    """The final checkpoint of a user's run is truncated: every claim that reads it ends unjudged ('error', not a
    'failed' verdict) with one message naming the file and what to do; no traceback, no doubled run name. An empty
    analysis cache, as on CI, so that nothing computed before hides the bad file."""
    import json
    import shutil

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run.path, bad)
    victim = max((bad / "checkpoints").glob("*.safetensors"))
    victim.write_bytes(victim.read_bytes()[:100])
    result = run_claims(pytester, "--run", str(bad), "-k", "final_model_is_symmetric or test_key_frequencies",
                        "--claims-report", str(tmp_path / "rep"))
    records = json.loads((tmp_path / "rep" / "claims.json").read_text())["records"]
    assert records and all(r["outcome"] == "error" for r in records), [(r["nodeid"], r["outcome"]) for r in records]
    for r in records:
        assert r["message"].startswith("run 'tiny'") and victim.name in r["message"], r["message"]
        assert "not a readable safetensors file" in r["message"] and "run 'tiny': run 'tiny'" not in r["message"]
    out = result.stdout.str()
    assert "During handling of the above exception" not in out and "Traceback" not in out
    assert result.ret == 1


def test_a_checkpoint_truncated_after_its_analyses_were_cached_still_makes_its_claims_errors(pytester, tiny_run,
                                                                                            tmp_path, monkeypatch):
    """A warm analysis cache does not hide a checkpoint damaged since: the claims that read the analyses are
    errors naming the file (not the verdicts cached for the intact run), and a baseline gate on flips fails."""
    import json
    import shutil

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    shutil.copytree(tiny_run.path, run)
    args = ("--run", str(run), "-k", "test_key_frequencies or test_trig_loss_all_equals_train",
            "--claims-baseline", str(tmp_path / "base.json"))
    run_claims(pytester, *args[:-2], "--claims-report", str(tmp_path / "good"))
    # a -k session records no new baseline (it is partial): the intact session's report is the baseline
    shutil.copy(tmp_path / "good" / "claims.json", tmp_path / "base.json")
    base = json.loads((tmp_path / "base.json").read_text())["records"]
    assert any(r["outcome"] == "passed" for r in base)
    victim = sorted((run / "checkpoints").glob("*.safetensors"))[5]
    victim.write_bytes(victim.read_bytes()[:-100])
    result = run_claims(pytester, *args, "--claims-fail-on", "flips", "--claims-report", str(tmp_path / "bad"))
    records = json.loads((tmp_path / "bad" / "claims.json").read_text())["records"]
    assert {r["outcome"] for r in records} == {"error"}, [(r["nodeid"], r["outcome"]) for r in records]
    assert all(victim.name in r["message"] and "truncated or corrupt" in r["message"] for r in records)
    result.stdout.fnmatch_lines(["*FLIP passed -> error*"])
    assert result.ret == 1


def test_two_runs_give_two_ids(pytester, tiny_run, tiny_mlp_run):
    result = run_claims(pytester, "--run", str(tiny_run.path), "--run", str(tiny_mlp_run.path), "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_grokking_delayed_generalisation?run=tiny]*",
                                 "*test_grokking_delayed_generalisation?run=tiny-mlp]*",
                                 "*test_trig_loss_all_equals_train?run=tiny-epoch=120]*"])


def test_claims_json_records_evidence(pytester, tiny_run, tmp_path):
    import json

    result = run_claims(pytester, "--run", str(tiny_run.path), "--claims-report", str(tmp_path / "rep"),
                        "-k", "grokking_delayed or phase_boundaries")
    assert result.ret == 1
    doc = json.loads((tmp_path / "rep" / "claims.json").read_text())
    assert doc["schema_version"] == 5 and doc["versions"]["claimlens"] and doc["runs"][0]["label"] == "tiny"
    assert doc["runs"][0]["content_hash"] == tiny_run.content_hash
    by_claim = {r["claim_id"]: r for r in doc["records"]}
    rec = by_claim["grokking_delayed_generalisation"]
    assert rec["run"] == "tiny" and rec["outcome"] == "failed" and "threshold >= 0.99" in rec["message"]
    assert {s["name"] for s in rec["series"]} == {"train_acc", "test_acc"}
    assert len(rec["series"][0]["epochs"]) == 121
    final = [m for m in rec["measurements"] if m["name"].startswith("test accuracy at the last epoch")][0]
    assert final["threshold"] == 0.99 and final["op"] == ">=" and final["passed"] is False
    assert not list((tmp_path / "rep").glob(".*.tmp")), "written atomically, no temporary file left"


def test_xdist_gives_the_same_records_as_a_serial_run(pytester, tiny_run, tmp_path):
    import json

    def records(*extra):
        out = tmp_path / ("rep" + "".join(extra).replace(" ", ""))
        run_claims(pytester, "--run", str(tiny_run.path), "--claims-report", str(out), "-k", "trig_loss", *extra)
        doc = json.loads((out / "claims.json").read_text())
        return [{k: v for k, v in r.items() if k != "duration"} for r in doc["records"]]

    serial, parallel = records(), records("-n", "2")
    assert len(serial) == len(tiny_run.epochs) and serial == parallel


@pytest.mark.slow
def test_default_run_passes_grokking_and_the_negative_controls_fail_every_trajectory_claim(pytester, tmp_path):
    import json

    ok = run_claims(pytester, "-k", "grokking_delayed", "-v", "-n", "2", "--claims-report", str(tmp_path / "ok"))
    ok.stdout.fnmatch_lines(["*PASSED *claims/test_grokking.py::test_grokking_delayed_generalisation?run=default?*"])
    # no --run, under xdist: the controller still resolves and records the built-in default run
    assert [r["label"] for r in json.loads((tmp_path / "ok" / "claims.json").read_text())["runs"]] == ["default"]
    # LLC checkpoints: the transformer's take ~20 s each (3 keep CI short); the MLP's well under a second
    for control, llc_checkpoints in (("no_weight_decay", 3), ("mlp_concat", 16)):
        out = tmp_path / control
        result = run_claims(pytester, "--run", str(ROOT / "fixtures" / f"{control}.toml"), "--claims-report", str(out),
                            "--claims-llc-checkpoints", str(llc_checkpoints))
        assert result.ret == 1
        records = json.loads((out / "claims.json").read_text())["records"]
        # A diagnostic (is the LLC sampling healthy?) is not a grokking claim: it may hold on any run.
        trajectory = [r for r in records if "epoch" not in r["parameters"]
                      and r["claim_id"] not in DIAGNOSTICS | ANY_TRAJECTORY | ABOUT_NOT_GROKKING]
        assert trajectory, "the control must be judged"
        assert {"llc_rises_in_memorisation_then_falls", "llc_tracks_test_loss"} <= {r["claim_id"] for r in trajectory}
        passed = [r["claim_id"] for r in trajectory if r["outcome"] == "passed" and r["claim_kind"] == "empirical"]
        assert not passed, f"empirical claims that cannot fail: {passed} passed on the negative control {control}"
        identity = [r for r in records if r["claim_kind"] == "identity"]
        wrong = [r["nodeid"] for r in identity if r["outcome"] == "failed"]
        assert not wrong, f"identity claims hold for every model, the controls included: {wrong[:3]}"
        assert all(r["message"] for r in identity if r["outcome"] == "skipped"), "a skipped identity says why"
        assert all(r["message"] for r in trajectory if r["outcome"] != "passed"), "every failure or skip says why"
        grok = [r for r in trajectory if r["claim_id"] == "grokking_delayed_generalisation"][0]
        assert grok["outcome"] == "failed" and "test accuracy never reached" in grok["message"]


def test_the_source_curves_are_judged_like_a_run(pytester, tmp_path):
    """`--run nanda2022` (the built-in digitised source curves): every trajectory rule they show passes; claims
    that need weights skip, saying so; the report records the claim kinds and the source values."""
    import json

    result = run_claims(pytester, "--run", "nanda2022", "--claims-report", str(tmp_path))
    assert result.ret == 0, result.stdout.str()[-3000:]
    doc = json.loads((tmp_path / "claims.json").read_text())
    assert doc["runs"][0]["kind"] == "curves" and doc["runs"][0]["label"] == "nanda2022"
    by_claim = {r["claim_id"]: r for r in doc["records"]}
    for claim in ("grokking_delayed_generalisation", "phase_boundaries_mainline",
                  "excluded_loss_rises_during_circuit_formation", "restricted_loss_falls_before_test_loss",
                  "test_over_restricted_ratio_peaks_then_returns", "weight_norm_falls_in_phases"):
        assert by_claim[claim]["outcome"] == "passed", (claim, by_claim[claim]["message"])
    skipped = [r for r in doc["records"] if r["outcome"] == "skipped"]
    assert skipped and all("curves-only run" in r["message"] or "empty parameter set" in r["message"]
                           or "no run set in this session" in r["message"] for r in skipped), \
        [r["message"] for r in skipped]
    control = [m for m in by_claim["excluded_loss_rises_during_circuit_formation"]["measurements"]
               if m["name"].startswith("random-direction control")][0]
    assert control["status"] == "not judged" and "needs weights" in control["reason"]
    rise = [m for m in by_claim["excluded_loss_rises_during_circuit_formation"]["measurements"]
            if m["name"] == "excluded loss rise t1→t2 (log10)"][0]
    assert rise["source_value"] == 1.6 and rise["margin"] == pytest.approx(rise["value"])
    html = (tmp_path / "claims.html").read_text()
    assert "source: 1.6" in html and 'class="kind identity"' in html and "not judged" in html


def test_xdist_report_lists_the_runs(pytester, tiny_run, tmp_path):
    import json

    run_claims(pytester, "--run", str(tiny_run.path), "--claims-report", str(tmp_path / "x"), "-k", "phase", "-n", "2")
    doc = json.loads((tmp_path / "x" / "claims.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["tiny"] and doc["runs"][0]["content_hash"] == tiny_run.content_hash


def test_llc_claims_do_not_pass_on_a_run_that_did_not_grok(pytester, tiny_run, tmp_path):
    import json

    result = run_claims(pytester, "--run", str(tiny_run.path), "-k", "llc", "--claims-llc-checkpoints", "3",
                        "--claims-report", str(tmp_path))
    records = {r["claim_id"]: r for r in json.loads((tmp_path / "claims.json").read_text())["records"]}
    assert set(LLC_CLAIMS) | {"llc_sampling_is_healthy"} <= set(records)
    for claim in LLC_CLAIMS:
        record = records[claim]
        assert record["outcome"] in ("failed", "skipped") and record["message"], (claim, record["outcome"])
        assert [s for s in record["series"] if s["name"] == "llc"], f"{claim} records the LLC series it judged"
    health = records["llc_sampling_is_healthy"]
    assert [m for m in health["measurements"] if m["name"] == "unhealthy checkpoints"]
    assert result.ret == 1


def test_old_option_spellings_still_work_with_a_deprecation_warning(pytester, tiny_run):
    result = run_claims(pytester, "--run", str(tiny_run.path), "--llc-checkpoints", "2", "--collect-only", "-q")
    # the old spelling reaches the same option: 2 is refused by the same rule as --claims-llc-checkpoints 2
    result.stderr.fnmatch_lines(["*--claims-llc-checkpoints must be at least 3*"])
    result = run_claims(pytester, "--run", str(tiny_run.path), "--llc-checkpoints", "5", "--collect-only", "-q",
                        "-W", "error::pytest.PytestDeprecationWarning")
    assert result.ret != 0 and "--llc-checkpoints is deprecated; use --claims-llc-checkpoints" in (
        result.stdout.str() + result.stderr.str())


def test_other_plugins_extend_records_and_the_document_through_the_hooks(pytester, tiny_run, tmp_path):
    import json

    pytester.makepyfile(report_extension="""
        def pytest_claimlens_record(item, record):
            record["notes"].append("seen by a plugin")

        def pytest_claimlens_update_document(config, document):
            document["my_plugin"] = {"records": len(document["records"])}
    """)
    # a plugin of another package (importable from the working directory, as `python -m pytest` puts it on sys.path)
    run_claims(pytester, "--run", str(tiny_run.path), "-k", "grokking_delayed", "--claims-report", str(tmp_path),
               "-p", "report_extension")
    doc = json.loads((tmp_path / "claims.json").read_text())
    assert doc["my_plugin"] == {"records": 1}
    assert "seen by a plugin" in doc["records"][0]["notes"]


@pytest.mark.parametrize(("workers", "omp", "expected"), [("2", None, "share"), (None, None, "unchanged"),
                                                           ("2", "2", "unchanged")])
def test_xdist_workers_share_the_cores(monkeypatch, workers, omp, expected):
    """Each xdist worker gets cores // workers torch threads, unless OMP_NUM_THREADS says otherwise."""
    import os

    import torch

    from claimlens.plugin import _share_cores_among_workers

    before = torch.get_num_threads()
    for name, value in (("PYTEST_XDIST_WORKER_COUNT", workers), ("OMP_NUM_THREADS", omp)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    try:
        torch.set_num_threads(7)
        _share_cores_among_workers()
        share = max(1, (os.cpu_count() or 1) // 2)
        assert torch.get_num_threads() == (share if expected == "share" else 7)
    finally:
        torch.set_num_threads(before)
