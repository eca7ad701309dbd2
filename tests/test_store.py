"""The run directory: lazy stacked reads, manifest integrity, clear errors on damaged files."""

import json
import shutil

import pytest
import torch

from claimlens.errors import CheckpointError, RunError
from claimlens.runs.store import Run


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    shutil.copytree(tiny_run.path, tmp_path / "run")
    return Run.open(tmp_path / "run")


def test_stacked_equals_per_checkpoint_reads(tiny_run):
    stacked = tiny_run.stacked("blocks.0.mlp.W_in")
    assert stacked.shape == (len(tiny_run.epochs), 32, 64)
    for i, epoch in enumerate(tiny_run.epochs):
        assert torch.equal(stacked[i], tiny_run.checkpoint(epoch)["blocks.0.mlp.W_in"])
    some = tiny_run.stacked("embed.W_E", epochs=[0, 60])
    assert torch.equal(some[1], tiny_run.checkpoint(60)["embed.W_E"])


def test_manifest_describes_the_run(tiny_run):
    m = tiny_run.manifest
    assert m["schema_version"] == 1 and m["spec"]["task"]["p"] == 23
    assert len(m["split"]["train"]) + len(m["split"]["test"]) == 23 * 23
    assert [c["epoch"] for c in m["checkpoints"]] == tiny_run.epochs
    assert len(m["content_hash"]) == 64 and tiny_run.id.startswith("tiny-")
    assert m["params"]["blocks.0.attn.W_Q"] == [4, 32, 8]


def test_unknown_epoch_and_parameter(tiny_run):
    with pytest.raises(KeyError, match="no checkpoint at epoch 5"):
        tiny_run.checkpoint(5)
    with pytest.raises(KeyError, match="not a parameter"):
        tiny_run.stacked("blocks.0.attn.W_X")


def test_truncated_checkpoint_is_named(run_copy):
    file = run_copy.path / run_copy.checkpoints[3].file
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"epoch 30 .*truncated or corrupt"):
        run_copy.checkpoint(30)
    with pytest.raises(CheckpointError, match="epoch 30"):
        run_copy.stacked("embed.W_E")


def test_tampered_checkpoint_fails_the_hash_check(run_copy):
    from safetensors.torch import save_file

    params = run_copy.checkpoint(30)
    params["embed.W_E"] = params["embed.W_E"] + 1
    save_file(params, run_copy.path / run_copy.checkpoints[3].file)
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        run_copy.checkpoint(30, verify_hash=True)


def test_a_checkpoint_replaced_by_another_readable_one_is_refused_wherever_it_is_read(run_copy):
    """Same size, readable, finite — only the sha256 in run.json tells: checkpoint(), stacked() and verify_files()
    all refuse it, naming the file; restored, it is read again."""
    target = run_copy.path / run_copy.checkpoints[-1].file
    good = target.read_bytes()
    target.write_bytes((run_copy.path / run_copy.checkpoints[-2].file).read_bytes())
    final = run_copy.checkpoints[-1].epoch
    for read in (lambda: run_copy.checkpoint(final), lambda: run_copy.stacked("embed.W_E"), run_copy.verify_files,
                 lambda: Run.open(run_copy.path).final()):
        with pytest.raises(CheckpointError, match=rf"epoch {final} .*does not match the sha256 .*replaced"):
            read()
    target.write_bytes(good)
    assert torch.isfinite(run_copy.checkpoint(final)["embed.W_E"]).all()


def test_nan_in_a_stored_checkpoint_is_named(run_copy):
    from safetensors.torch import save_file

    params = run_copy.checkpoint(40)
    params["blocks.0.mlp.W_out"][0, 0] = float("nan")
    save_file(params, run_copy.path / run_copy.checkpoints[4].file)
    with pytest.raises(CheckpointError, match=r"epoch 40 .*blocks.0.mlp.W_out holds 1 non-finite"):
        run_copy.checkpoint(40)


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / "run.json").unlink(), "has no run.json"),
    (lambda d: (d / "run.json").write_text("{not json"), "is not valid JSON"),
    (lambda d: (d / "run.json").write_text(json.dumps({"schema_version": 99})), "schema_version 99"),
    (lambda d: next((d / "checkpoints").iterdir()).unlink(), "is missing"),
])
def test_damaged_run_directories(run_copy, damage, fragment):
    damage(run_copy.path)
    with pytest.raises(RunError, match=fragment):
        Run.open(run_copy.path)


def test_missing_run_directory(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        Run.open(tmp_path / "nope")
