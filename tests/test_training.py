"""The trainer: deterministic, resumable after a kill, logs every epoch, honours warm-up."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from claimlens.errors import RunError
from claimlens.runs.store import Run, sha256_file
from claimlens.training import Trainer
from conftest import ROOT, tiny_mlp_spec, tiny_spec, with_train


def checkpoint_hashes(run: Run) -> dict[int, str]:
    return {c.epoch: sha256_file(run.path / c.file) for c in run.checkpoints}


def test_same_spec_gives_identical_checkpoints(tiny_run, tmp_path):
    again = Trainer(tiny_run.spec, tmp_path / "again", progress=False).train()
    assert checkpoint_hashes(again) == checkpoint_hashes(tiny_run)
    assert again.content_hash == tiny_run.content_hash
    assert (again.path / "log.jsonl").read_text() == (tiny_run.path / "log.jsonl").read_text()


def test_a_different_seed_gives_different_weights(tiny_run, tmp_path):
    other = Trainer(with_train(tiny_run.spec, seed=8), tmp_path / "other", progress=False).train()
    assert checkpoint_hashes(other)[0] != checkpoint_hashes(tiny_run)[0]


def test_checkpoints_and_log_cover_the_run(tiny_run):
    spec = tiny_run.spec.train
    assert tiny_run.epochs == list(range(0, spec.epochs + 1, spec.checkpoint_every))
    log = tiny_run.log()
    assert log["epoch"].tolist() == list(range(spec.epochs + 1))
    assert tiny_run.manifest["status"] == "complete" and not (tiny_run.path / "resume.safetensors").exists()
    # The log row of a checkpoint epoch describes exactly the checkpointed weights.
    from claimlens.core.losses import cross_entropy_f64
    from claimlens.models import forward

    task, epoch = tiny_run.task, tiny_run.epochs[5]
    logits = forward(tiny_run.checkpoint(epoch), task.tokens, tiny_run.spec.model).logits
    expected = cross_entropy_f64(logits[task.train_idx], task.labels[task.train_idx]).item()
    assert log["train_loss"][epoch].item() == pytest.approx(expected, rel=1e-9)


def test_warmup_first_step_has_zero_learning_rate(tmp_path):
    run = Trainer(tiny_spec("warm", epochs=2, checkpoint_every=1, warmup_steps=10), tmp_path / "r", progress=False).train()
    first, second, third = (run.checkpoint(e) for e in (0, 1, 2))
    assert all(torch.equal(first[k], second[k]) for k in first), "lr factor 0/10 on step 0: nothing moves"
    assert any(not torch.equal(second[k], third[k]) for k in first)


def test_frozen_biases_stay_zero_and_trained_biases_move(tiny_run):
    final = tiny_run.final()
    for name in ("blocks.0.attn.b_Q", "blocks.0.attn.b_O", "unembed.b_U"):
        assert float(final[name].abs().max()) == 0.0, name
    assert float(final["blocks.0.mlp.b_in"].abs().max()) > 0


def test_mlp_runs_train_too(tiny_mlp_run):
    log = tiny_mlp_run.log()
    assert log["train_loss"][-1] < log["train_loss"][0]
    assert set(tiny_mlp_run.final()) == {"embed.W_E", "mlp.0.W", "mlp.0.b", "mlp.1.W", "mlp.1.b", "unembed.W_U", "unembed.b_U"}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_at", [0, 37, 40, 41, 119])
def test_resume_after_interruption_is_as_if_never_interrupted(tiny_run, tmp_path, stop_at):
    """Stop inside the loop at various epochs (on, just after and between checkpoints), then resume."""

    def stop(epoch, row):
        if epoch == stop_at:
            raise Interrupt

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        Trainer(tiny_run.spec, out, progress=False, callbacks=(stop,)).train()
    with pytest.raises(RunError, match="still being written"):
        Run.open(out)
    resumed = Trainer(tiny_run.spec, out, progress=False).train()
    assert checkpoint_hashes(resumed) == checkpoint_hashes(tiny_run)
    assert (out / "log.jsonl").read_text() == (tiny_run.path / "log.jsonl").read_text()


TRAIN_SCRIPT = """
import sys
from claimlens.training import Trainer
sys.path.insert(0, {tests!r})
from conftest import tiny_spec
Trainer(tiny_spec(epochs={epochs}, checkpoint_every=10), {out!r}, progress=False).train()
"""


def test_resume_after_sigkill(tmp_path):
    """Kill a real training process mid-run with SIGKILL, start it again: nothing lost or duplicated."""
    epochs = 1000
    spec = tiny_spec(epochs=epochs, checkpoint_every=10)
    reference = Trainer(spec, tmp_path / "reference", progress=False).train()
    out = tmp_path / "killed"
    script = TRAIN_SCRIPT.format(tests=str(ROOT / "tests"), epochs=epochs, out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait until a few checkpoints are committed, then kill
            manifest = out / "run.json"
            if manifest.exists():
                try:
                    n = len(json.loads(manifest.read_text())["checkpoints"])
                except ValueError:
                    n = 0
                if n >= 20:
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the process must have been killed mid-run"
    partial = json.loads((out / "run.json").read_text())
    assert partial["status"] == "training" and len(partial["checkpoints"]) < len(reference.epochs)
    resumed = Trainer(spec, out, progress=False).train()
    assert resumed.epochs == reference.epochs
    assert checkpoint_hashes(resumed) == checkpoint_hashes(reference)
    assert (out / "log.jsonl").read_text() == (reference.path / "log.jsonl").read_text()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        p.name for p in (reference.path / "checkpoints").iterdir()), "no stray or duplicated checkpoint files"


def test_refuses_to_mix_specs_or_overwrite(tiny_run, tmp_path):
    with pytest.raises(RunError, match="already holds the complete run"):
        Trainer(tiny_run.spec, tiny_run.path, progress=False).train()
    with pytest.raises(RunError, match="different spec"):
        Trainer(with_train(tiny_run.spec, lr=0.01), tiny_run.path, progress=False).train()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="not empty"):
        Trainer(tiny_run.spec, tmp_path / "full", progress=False).train()
    assert (tmp_path / "full" / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="CUDA is not available"):
        Trainer(tiny_mlp_spec(), tmp_path / "r", device="cuda", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_closely(tiny_run, tmp_path):
    gpu = Trainer(tiny_run.spec, tmp_path / "gpu", device="cuda", progress=False).train()
    cpu_log, gpu_log = tiny_run.log(), gpu.log()
    torch.testing.assert_close(gpu_log["train_loss"][:20], cpu_log["train_loss"][:20], rtol=1e-3, atol=1e-5)


def _script(name: str):
    """scripts/<name>.py, imported as a module (the scripts are not part of the package)."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipe_study():
    return _script("paper_recipe_study")


def test_recipe_study_baseline_is_the_trainer(tiny_run):
    """The side-by-side study of the paper recipe (issue 15, item 6) changes one thing at a time from the
    trainer's own loop: its float64 / 113-class variant must reproduce the trainer's log, and each other variant
    must change the trajectory (so that a difference it reports is the recipe's, not the study's)."""
    study = _recipe_study()
    log = tiny_run.log()
    curves = {name: study.run_variant(tiny_run.spec, name, max_epochs=60, stop_below=-1.0, every=20)["curve"]
              for name in study.VARIANTS}  # on p = 23: 23 or 24 output classes
    for row in curves["f64-113"]:  # the same operations in the same order: the same numbers, bit for bit
        e = row["epoch"]
        assert row["train_loss"] == float(log["train_loss"][e])
        assert row["test_loss"] == float(log["test_loss"][e])
    for name in ("f32-113", "f64-114", "f32-114"):
        assert curves[name][-1]["test_loss"] != curves["f64-113"][-1]["test_loss"]


def _spec_search():
    return _script("default_spec_search")


def test_spec_search_candidate_is_the_default_with_its_changes(tmp_path):
    """A candidate of the default-spec search (issue 15, item 8; docs/default_run.md) is the default spec with exactly
    the fields it names changed: with no change but the seed it has the default's cache key, so a candidate that
    equals a cached sweep member reuses that run instead of training it again."""
    from claimlens.builtin import FIXTURES
    from claimlens.config import RunSpec

    search = _spec_search()
    default = RunSpec.from_toml(FIXTURES / "default.toml")
    name, changes = search.parse_candidate("lr1e-3:train.lr=1e-3,train.epochs=5000,task.frac_train=0.3")
    assert (name, changes) == ("lr1e-3", {"train.lr": 1e-3, "train.epochs": 5000, "task.frac_train": 0.3})
    spec = RunSpec.from_toml(search.make_spec(name, changes, 2, tmp_path))
    assert (spec.train.lr, spec.train.epochs, spec.task.frac_train, spec.train.seed) == (1e-3, 5000, 0.3, 2)
    assert spec.model == default.model and spec.train.weight_decay == default.train.weight_decay
    same = RunSpec.from_toml(search.make_spec("same", {"train.seed": 0}, 0, tmp_path))
    assert same.hash == default.hash
    assert search.make_spec(name, changes, 2, None).hash == spec.hash  # out=None: checked, nothing written


@pytest.mark.parametrize(("candidate", "message"), [
    ("nonsense", "expected NAME:section.key=value"),
    ("bad:lr=1e-3", "is not section.key=value"),
    ("bad:train.lr=abc", "is not a TOML value"),
    ("bad:train.lr=", "is not a TOML value"),
    ("bad:train.seed=7", "with --seeds"),
    ("a/b:train.lr=1e-3", "may hold only"),
    ("bad:train.learning_rate=1e-3", "candidate 'bad': train.learning_rate is not a field"),
    ("bad:train.epochs=-5", "candidate 'bad': "),
])
def test_spec_search_refuses_a_bad_candidate_in_one_line_before_training(candidate, message, tmp_path):
    search = _spec_search()
    with pytest.raises(SystemExit, match=message) as info:
        name, changes = search.parse_candidate(candidate)
        search.make_spec(name, changes, 0, tmp_path)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())  # refused before any spec file is written


def test_spec_search_table_and_failed_checks():
    """The Markdown row: over-budget training marked, 'settled − t1' signed, – for what a run never reached; a
    failed claim without a failed numeric check shows its message (a phase never reached)."""
    search = _spec_search()
    row = {"candidate": "x", "seed": 0, "changes": {"train.lr": 0.001}, "train_s": 125.0, "checkpoints": 126,
           "phases": {"t1": 440, "t2": 2280, "t3": None}, "train_flat": 1040,
           "targets": dict.fromkeys(search.TARGETS, "F")}
    line = search.markdown([row], max_train_s=120).splitlines()[2]
    assert "| x s0 | train.lr=0.001 | 125 (over budget) | 126 | 440 | 2280 | – | 1040 | +600 |" in line
    doc = {"records": [{"claim_id": search.TARGETS[0], "outcome": "failed", "message": "t2 was not reached\nmore",
                        "measurements": []},
                       {"claim_id": search.TARGETS[1], "outcome": "failed", "message": "",
                        "measurements": [{"name": "reached", "value": False, "op": None, "threshold": None,
                                          "status": "failed"},
                                         {"name": "rate", "value": 0.1234, "op": ">=", "threshold": 0.5,
                                          "status": "failed"}]}]}
    checks = search.failed_checks(doc)
    assert checks[search.TARGETS[0]] == "t2 was not reached"
    assert checks[search.TARGETS[1]] == "reached False; rate 0.123 >= 0.5"


def test_spec_search_train_loss_settling_epoch():
    """'train loss settled': the first checkpoint at which the train loss is within 10× of its value at t2."""
    search = _spec_search()
    record = {"claim_id": search.TARGETS[0], "phases": {"t1": 20, "t2": 60, "t3": 80},
              "series": [{"name": "train_loss", "epochs": [0, 20, 40, 60, 80], "values": [4.0, 1e-2, 5e-4, 1e-4, 1e-4]}]}
    assert search.train_flat_epoch({"records": [record]}) == 40  # 5e-4 ≤ 10 × 1e-4 < 1e-2
    record["phases"]["t2"] = None
    assert search.train_flat_epoch({"records": [record]}) is None
