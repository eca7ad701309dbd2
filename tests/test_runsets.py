"""Run sets: sweep specs, their members trained once and cached, the set claims of ``claims/test_sets.py`` (on
the source's own fraction sweep and on a tiny trained sweep), multi-seed verdicts ("holds in k of n") and the same
report under xdist."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimlens.errors import SpecError
from claimlens.report.document import over_seeds, wilson_interval
from claimlens.runsets import SweepSpec, curves_set, ensure_set, is_sweep_toml

ROOT = Path(__file__).resolve().parents[1]
TINY_TOML = """name = "tiny"
[task]
p = 23
frac_train = 0.5
split_seed = 1
[model]
d_model = 32
n_heads = 4
d_head = 8
d_mlp = 64
[train]
epochs = 120
checkpoint_every = 10
lr = 3e-3
seed = 7
"""


@pytest.fixture
def tiny_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    path = tmp_path / "sweeps" / "wd.toml"
    path.parent.mkdir()
    path.write_text('name = "wd"\nbase = "../tiny.toml"\n[axes]\n"train.weight_decay" = [0.0, 1.0]\n'
                    '[set]\n"train.epochs" = 60\n')
    return path


def test_a_sweep_spec_names_its_members_and_applies_its_axes(tiny_sweep):
    sweep = SweepSpec.from_toml(tiny_sweep)
    members = sweep.members()
    assert [m.label for m in members] == ["wd-weight_decay=0.0", "wd-weight_decay=1.0"]
    assert [m.spec.train.weight_decay for m in members] == [0.0, 1.0]
    assert all(m.spec.train.epochs == 60 and m.spec.task.p == 23 for m in members)
    assert members[0].spec.hash != members[1].spec.hash and is_sweep_toml(tiny_sweep)
    assert not is_sweep_toml(tiny_sweep.parent.parent / "tiny.toml")


@pytest.mark.parametrize("text, fragment", [
    ('base = "../tiny.toml"\n[axes]\n"training.lr" = [1]\n', "is not a spec field"),
    ('base = "../tiny.toml"\n[axes]\n"train.learning_rate" = [1]\n', "is not a field of [train]"),
    ('base = "../tiny.toml"\n[axes]\n"train.lr" = []\n', "non-empty list of distinct values"),
    ('base = "../missing.toml"\n[axes]\n"train.lr" = [1]\n', "missing.toml"),
    ('base = "../tiny.toml"\n[axes]\n"train.lr" = [-1.0]\n', "train.lr"),
    ('base = "../tiny.toml"\naxes = 3\n', "[axes] must give"),
    ('base = "../tiny.toml"\nfoo = 1\n[axes]\n"train.lr" = [1]\n', "unknown keys ['foo']"),
])
def test_a_bad_sweep_spec_is_refused_naming_the_field(tiny_sweep, text, fragment):
    tiny_sweep.write_text(text)
    with pytest.raises(SpecError, match=None) as info:
        SweepSpec.from_toml(tiny_sweep)
    assert fragment in str(info.value) and str(tiny_sweep) in str(info.value)


def test_members_are_trained_once_and_cached(tiny_sweep):
    first = ensure_set(SweepSpec.from_toml(tiny_sweep), progress=False)
    again = ensure_set(SweepSpec.from_toml(tiny_sweep), progress=False)
    assert [r.content_hash for _, r in first.members] == [r.content_hash for _, r in again.members]
    assert first.varies("train.weight_decay") and not first.varies("task.frac_train")
    assert [v for v, _ in first.along("train.weight_decay")] == [0.0, 1.0]


def test_a_spec_identical_to_a_cached_member_reuses_it_under_its_own_name(tiny_sweep):
    """A built-in spec with a sweep member's cache key is that member's run, trained once, but it is called by the
    spec's own name (skip messages and reports named the member before)."""
    from dataclasses import replace

    from claimlens.builtin import cached_run_path, ensure_run

    members = ensure_set(SweepSpec.from_toml(tiny_sweep), progress=False)
    _, member = members.members[0]
    twin = replace(member.spec, name="twin", description="the same recipe under another name").validate()
    run = ensure_run(twin, progress=False)
    assert run.path == member.path == cached_run_path(twin) and run.content_hash == member.content_hash
    assert run.name == "twin" and run.id.startswith("twin-") and member.name == "wd-weight_decay=0.0"
    assert not (member.path.parent / f"twin-{twin.hash[:16]}").exists()  # not trained a second time
    assert run.spec.name == "twin" and run.spec.hash == member.spec.hash
    from claimlens.core.checkpoint import FinalCheckpoints, final_checkpoint

    kept = FinalCheckpoints()  # as the session keeps them: one per run *and name*, so each keeps its own in messages
    assert final_checkpoint(run, kept).run.name == "twin" and final_checkpoint(member, kept).run.name == member.name
    assert len(kept) == 2


def test_the_source_fraction_sweep_is_a_curves_set():
    s = curves_set("nanda2022_fractions")
    assert s.kind == "curves" and [v for v, _ in s.along("task.frac_train")][:3] == [0.25, 0.28, 0.3]
    assert all({"train_loss", "test_loss"} <= set(run.series) for _, run in s.members)


def test_the_plugin_knows_every_built_in_curves_set():
    from claimlens import reference
    from claimlens.plugin.runs import _curves_sets

    assert set(_curves_sets()) == set(reference.SETS)


# ----------------------------------------------------------------------------- multi-seed verdicts


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(2, 3)
    assert lo == pytest.approx(0.2077, abs=1e-4) and hi == pytest.approx(0.9385, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0 and wilson_interval(5, 5)[1] == 1
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_properties(kn):
    k, n = kn
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    mirror = wilson_interval(n - k, n)
    assert math.isclose(lo, 1 - mirror[1], abs_tol=1e-12) and math.isclose(hi, 1 - mirror[0], abs_tol=1e-12)


def _run(label, seed, lr=1e-3):
    return {"label": label, "kind": "spec", "spec": {"task": {"p": 23}, "model": {}, "train": {"seed": seed, "lr": lr}}}


def _rec(claim, run, outcome, epoch=None):
    return {"nodeid": f"c::{claim}[{run}-{epoch}]", "claim_id": claim, "run": run, "outcome": outcome,
            "parameters": {"run": run, **({"epoch": epoch} if epoch is not None else {})}}


def test_over_seeds_counts_a_seed_once_and_leaves_skips_out():
    runs = [_run("a", 0), _run("a_s1", 1), _run("a_s2", 2), _run("other", 0, lr=3e-3)]
    records = [_rec("c1", "a", "passed"), _rec("c1", "a_s1", "passed"), _rec("c1", "a_s2", "failed"),
               _rec("c2", "a", "passed", 0), _rec("c2", "a", "failed", 1), _rec("c2", "a_s1", "passed", 0),
               _rec("c2", "a_s2", "skipped"), _rec("c1", "other", "passed")]
    out = {s["claim_id"]: s for s in over_seeds(records, runs)}
    assert (out["c1"]["k"], out["c1"]["n"], out["c1"]["reproduced"]) == (2, 3, True)
    assert out["c1"]["runs"] == ["a", "a_s1", "a_s2"], "a run of another recipe is not a seed"
    assert (out["c2"]["k"], out["c2"]["n"], out["c2"]["reproduced"]) == (1, 2, False)
    assert out["c2"]["fails_on"] == ["a"]


def test_merge_recomputes_over_seeds_independent_of_order():
    from claimlens.report.document import merge

    def doc(run, outcome):
        return {"created": "t", "runs": [run], "records": [_rec("c1", run["label"], outcome)]}

    docs = [doc(_run("a", 0), "passed"), doc(_run("a_s1", 1), "failed"), doc(_run("a_s2", 2), "passed")]
    one, two = merge(docs), merge(docs[::-1])
    assert one["over_seeds"] == two["over_seeds"] and one["over_seeds"][0]["k"] == 2


# ----------------------------------------------------------------------------- claims sessions


def _strip(doc):
    return sorted((r["nodeid"], r["outcome"], json.dumps(r["measurements"], sort_keys=True)) for r in doc["records"])


def _session(tmp_path, *args, workers=None, tx=None):
    env = dict(os.environ, CLAIMLENS_CACHE_DIR=os.environ.get("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache")))
    report = tmp_path / f"rep{len(list(tmp_path.glob('rep*')))}"
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "claims"), "-q", "-p", "no:cacheprovider", "--rootdir",
           str(ROOT), "--claims-report", str(report), *args]
    if workers:
        cmd += ["-n", str(workers), "--dist", "loadgroup"]
    if tx:  # xdist's own remote-style workers
        cmd += ["--tx", tx, "--dist", "loadgroup"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert (report / "claims.json").is_file(), out.stdout[-3000:] + out.stderr[-2000:]
    return json.loads((report / "claims.json").read_text())


def test_set_claims_skip_with_the_cost_when_no_set_is_given(tmp_path):
    doc = _session(tmp_path, "-k", "test_sets", "--run", "nanda2022")
    messages = [r["message"] for r in doc["records"] if r["claim_id"] == "weight_decay_and_data_fraction_needed"]
    assert messages and all("--claims-sweeps" in m and "runs of" in m for m in messages)


def test_a_set_claim_skips_a_set_without_its_axis_before_training_it(tiny_sweep, tmp_path):
    """run_set_axis: a sweep over weight decay is not trained to learn that it does not vary the attention rate."""
    doc = _session(tmp_path, "--run", str(tiny_sweep), "-k", "attention_rate_selects")
    (rec,) = doc["records"]
    assert rec["outcome"] == "skipped" and "does not vary model.attn_rate" in rec["message"]
    assert not (tmp_path / "cache" / "runs").exists() or not any((tmp_path / "cache" / "runs").iterdir())


def test_the_fraction_rule_is_judged_on_the_source_sweep_in_a_session(tmp_path):
    doc = _session(tmp_path, "-k", "data_fraction", "--run", "nanda2022_fractions")
    (rec,) = [r for r in doc["records"] if r["claim_id"] == "weight_decay_and_data_fraction_needed"]
    assert rec["outcome"] == "passed" and rec["run"] == "nanda2022_fractions"
    assert rec["series"][0]["x_name"] == "task.frac_train" and len(rec["series"][0]["epochs"]) == 10
    (run,) = doc["runs"]
    assert run["kind"] == "curves_set" and len(run["members"]) == 10


def test_a_sweep_given_with_run_is_judged_as_a_set_and_per_member_the_same_under_xdist(tiny_sweep, tmp_path):
    args = ("--run", str(tiny_sweep), "-k", "weight_decay_needed or grokking_delayed")
    serial = _session(tmp_path, *args)
    by_run = {}
    for r in serial["records"]:
        by_run.setdefault(r["run"], []).append(r["claim_id"])
    assert set(by_run) == {"wd", "wd-weight_decay=0.0", "wd-weight_decay=1.0"}
    (wd,) = [r for r in serial["records"] if r["run"] == "wd"]
    assert wd["outcome"] in ("passed", "failed") and any(m["name"].startswith("no generalisation without weight")
                                                         for m in wd["measurements"])
    assert _strip(serial) == _strip(_session(tmp_path, *args, workers=2))
    assert _strip(serial) == _strip(_session(tmp_path, *args, tx="2*popen"))


def test_one_process_per_member_then_merge_gives_the_single_session_verdicts(tiny_sweep, tmp_path):
    """A set larger than one machine: each member judged in its own process (sharing the cache, as a CI matrix
    shares an artifact), the set claims in one more, the reports merged."""
    from claimlens.report.document import merge

    selection = "weight_decay_needed or grokking_delayed"
    single = _session(tmp_path, "--run", str(tiny_sweep), "-k", selection)
    labels = [m.label for m in SweepSpec.from_toml(tiny_sweep).members()]
    parts = [_session(tmp_path, "--run", str(tiny_sweep), "--claims-member", label, "-k", selection)
             for label in labels]
    assert all({r["run"] for r in p["records"]} == {label} for p, label in zip(parts, labels))
    parts.append(_session(tmp_path, "--run", str(tiny_sweep), "-k", "weight_decay_needed"))
    merged = merge(parts)
    assert _strip(merged) == _strip(single)


def test_claims_seeds_reports_holds_in_k_of_n(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tiny.toml").write_text(TINY_TOML)
    doc = _session(tmp_path, "--run", str(tmp_path / "tiny.toml"), "--claims-seeds", "3", "-k", "grokking_delayed")
    assert sorted(r["label"] for r in doc["runs"]) == ["tiny", "tiny_s0", "tiny_s1"]
    (s,) = doc["over_seeds"]
    assert s["claim_id"] == "grokking_delayed_generalisation" and s["n"] == 3 and s["k"] == 0
    assert s["reproduced"] is False and s["interval"][0] == 0


def test_a_folder_of_logged_sweep_losses_is_a_curves_set(tmp_path):
    """A published sweep with losses only: a folder of trace,epoch,value CSVs and an index naming the axis."""
    import shutil

    from claimlens import reference

    folder = tmp_path / "my_sweep"
    folder.mkdir()
    shutil.copy(reference.ROOT / "nanda2022" / "mod_add_frac_train_all.csv", folder / "losses.csv")
    (folder / "index.toml").write_text(
        'name = "my_sweep"\naxis = "task.frac_train"\nvalues = ["0.3", "0.5", "0.6", "0.9"]\n'
        '[series.train_loss]\nfile = "losses.csv"\ntrace = "train_{value}"\nscale = "log"\n'
        '[series.test_loss]\nfile = "losses.csv"\ntrace = "test_{value}"\nscale = "log"\n')
    doc = _session(tmp_path, "-k", "data_fraction", "--run", str(folder))
    (rec,) = [r for r in doc["records"] if r["claim_id"] == "weight_decay_and_data_fraction_needed"]
    assert rec["outcome"] == "passed" and rec["run"] == "my_sweep", rec["message"]
    (folder / "index.toml").write_text('axis = "task.frac_train"\nvalues = []\n')
    with pytest.raises(Exception, match="non-empty list of values"):
        curves_set(folder)
