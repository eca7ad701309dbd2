"""Importers of published formats, and every bad-input case they must name clearly."""

import os
import subprocess
import sys

import pytest
import torch

from claimlens.cli import main
from claimlens.errors import CheckpointError, RunError, SpecError, UnsafeCheckpointError
from claimlens.runs.importers import import_run

TINY_CONFIG = {"p": 23, "d_model": 32, "num_heads": 4, "d_head": 8, "d_mlp": 64, "act_type": "ReLU",
               "frac_train": 0.5, "seed": 1, "lr": 3e-3, "weight_decay": 1.0}


def hooked_state_dict(params):
    """Property format as HookedTransformer saved it: with its mask/IGNORE buffers."""
    sd = dict(params)
    sd["blocks.0.attn.mask"] = torch.tril(torch.ones(3, 3))
    sd["blocks.0.attn.IGNORE"] = torch.tensor(-1e5)
    return sd


def paper_code_state_dict(params, p=23):
    """The progress-measures paper's own layout: transposed matrices, W_O flat, 114-style extra class."""
    W_O = params["blocks.0.attn.W_O"]  # [head, d_head, d_model]
    W_U = params["unembed.W_U"]
    return {
        "embed.W_E": params["embed.W_E"].T.clone(),
        "pos_embed.W_pos": params["pos_embed.W_pos"].clone(),
        **{f"blocks.0.attn.{n}": params[f"blocks.0.attn.{n}"].transpose(1, 2).clone() for n in ("W_Q", "W_K", "W_V")},
        "blocks.0.attn.W_O": W_O.permute(2, 0, 1).reshape(W_O.shape[2], -1).clone(),
        "blocks.0.attn.mask": torch.tril(torch.ones(3, 3)),
        "blocks.0.mlp.W_in": params["blocks.0.mlp.W_in"].T.clone(),
        "blocks.0.mlp.b_in": params["blocks.0.mlp.b_in"].clone(),
        "blocks.0.mlp.W_out": params["blocks.0.mlp.W_out"].T.clone(),
        "blocks.0.mlp.b_out": params["blocks.0.mlp.b_out"].clone(),
        "unembed.W_U": torch.cat([W_U, torch.randn(W_U.shape[0], 1)], dim=1),
    }


def full_run_file(path, run, epochs=None, convert=hooked_state_dict, **extra):
    epochs = run.epochs if epochs is None else epochs
    data = {"state_dicts": [convert(run.checkpoint(e)) for e in epochs], "epochs": list(epochs),
            "config": dict(TINY_CONFIG), **extra}
    torch.save(data, path)
    return path


def assert_same_checkpoints(imported, original):
    assert imported.epochs == original.epochs
    for epoch in original.epochs:
        a, b = imported.checkpoint(epoch), original.checkpoint(epoch)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), f"epoch {epoch}"


@pytest.mark.parametrize("convert", [hooked_state_dict, paper_code_state_dict], ids=["property", "paper-code"])
def test_full_run_data_round_trip(tiny_run, tmp_path, convert):
    log = tiny_run.log()
    source = full_run_file(tmp_path / "full_run_data.pth", tiny_run, convert=convert,
                           train_losses=log["train_loss"].tolist(), test_losses=log["test_loss"].tolist())
    imported = import_run(source, tmp_path / "imported", progress=False)
    assert_same_checkpoints(imported, tiny_run)
    assert torch.equal(imported.task.train_idx, tiny_run.task.train_idx), "split reconstructed by the paper's rule"
    ilog = imported.log()
    assert ilog["epoch"].tolist() == tiny_run.epochs
    torch.testing.assert_close(ilog["test_loss"], log["test_loss"][tiny_run.epochs], rtol=1e-6, atol=1e-9)
    assert (imported.path / "source_log.jsonl").is_file()
    conversions = imported.manifest["source"]["conversions"]
    if convert is paper_code_state_dict:
        assert any("progress-measures" in c for c in conversions)
        assert any("'=' output class" in c for c in conversions)


def test_stored_split_is_used(tiny_run, tmp_path):
    train, test = tiny_run.task.train_idx.flip(0), tiny_run.task.test_idx.flip(0)  # the run's split, in another order
    source = full_run_file(tmp_path / "f.pth", tiny_run, train_indices=train.tolist(), test_indices=test)
    imported = import_run(source, tmp_path / "imported", progress=False)
    assert torch.equal(imported.task.train_idx, train)
    assert imported.manifest["split"]["rule"] == "stored"
    # train and test swapped: the model fits the stored test set and not its training set, so the import refuses
    swapped = full_run_file(tmp_path / "g.pth", tiny_run, train_indices=test.tolist(), test_indices=train)
    with pytest.raises(CheckpointError, match=r"does not fit the split it is said to have \(stored\)"):
        import_run(swapped, tmp_path / "swapped", progress=False)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_folder_of_state_dicts(tiny_run, tmp_path, suffix):
    from safetensors.torch import save_file

    from claimlens.config import RunSpec

    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in tiny_run.epochs:
        name = folder / f"model_epoch_{epoch}{suffix}"
        if suffix == ".pth":
            torch.save(hooked_state_dict(tiny_run.checkpoint(epoch)), name)
        else:
            save_file(tiny_run.checkpoint(epoch), name)
    (folder / "notes.md").write_text("not a checkpoint")
    with pytest.raises(SpecError, match="no spec.toml"):
        import_run(folder, tmp_path / "x", progress=False)
    spec = RunSpec.from_dict({**tiny_run.spec.to_dict(), "name": "folder"})
    imported = import_run(folder, tmp_path / "imported", spec=spec, progress=False)
    assert_same_checkpoints(imported, tiny_run)


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {SENTINEL}",))


SENTINEL = "claimlens-pwned-sentinel"


def test_a_pickle_that_would_run_code_is_refused(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "evil.pth"
    torch.save({"state_dicts": [tiny_run.checkpoint(0)], "epochs": [0], "config": Evil()}, source)
    with pytest.raises(UnsafeCheckpointError) as info:
        import_run(source, tmp_path / "out", progress=False)
    assert "weights_only=True" in str(info.value) and "system" in str(info.value)
    assert not (tmp_path / SENTINEL).exists(), "the payload must never run"
    assert not (tmp_path / "out").exists()


def test_a_truncated_safetensors_file_is_named_as_one(tiny_run, tmp_path):
    """The advice fits the format: a damaged .safetensors file is not told to be re-saved with torch.save."""
    from safetensors.torch import save_file

    source = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_run.final().items()}, source)
    source.write_bytes(source.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"not a readable safetensors file.*safetensors\.torch\.save_file"):
        import_run(source, tmp_path / "out", progress=False, final_epoch=1)
    assert not (tmp_path / "out").exists()


def test_truncated_file(tiny_run, tmp_path):
    source = full_run_file(tmp_path / "f.pth", tiny_run)
    source.write_bytes(source.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        import_run(source, tmp_path / "out", progress=False)


def test_config_that_does_not_match_the_weights(tiny_run, tmp_path):
    source = full_run_file(tmp_path / "f.pth", tiny_run)
    data = torch.load(source, weights_only=True)
    data["config"]["d_mlp"] = 128
    torch.save(data, source)
    with pytest.raises(CheckpointError, match=r"epoch 0: blocks.0.mlp.W_in has shape \[32, 64\] .* needs \[32, 128\]"):
        import_run(source, tmp_path / "out", progress=False)


def test_missing_epochs_are_never_guessed(tiny_run, tmp_path):
    source = tmp_path / "f.pth"
    torch.save({"state_dicts": [tiny_run.checkpoint(e) for e in tiny_run.epochs], "config": TINY_CONFIG}, source)
    with pytest.raises(CheckpointError, match="never guesses epochs.*--checkpoint-every"):
        import_run(source, tmp_path / "out", progress=False)
    imported = import_run(source, tmp_path / "out", checkpoint_every=10, progress=False)
    assert imported.epochs == tiny_run.epochs


@pytest.mark.parametrize("epochs, fragment", [
    ([0, 20, 10], "strictly increasing; epoch 10 at position 2 follows 20"),
    ([0, 10, 10], "strictly increasing"),
    ([0, 10], "2 epochs for 3 state dicts"),
])
def test_bad_epoch_lists(tiny_run, tmp_path, epochs, fragment):
    source = tmp_path / "f.pth"
    torch.save({"state_dicts": [tiny_run.checkpoint(e) for e in (0, 10, 20)], "epochs": epochs, "config": TINY_CONFIG},
               source)
    with pytest.raises(CheckpointError, match=fragment):
        import_run(source, tmp_path / "out", progress=False)


def test_nan_weights_and_nothing_left_behind(tiny_run, tmp_path):
    bad = tiny_run.checkpoint(20)
    bad["blocks.0.attn.W_K"][0, 0, 0] = float("nan")
    source = tmp_path / "f.pth"
    torch.save({"state_dicts": [tiny_run.checkpoint(0), tiny_run.checkpoint(10), bad], "epochs": [0, 10, 20],
                "config": TINY_CONFIG}, source)
    with pytest.raises(CheckpointError, match="epoch 20: blocks.0.attn.W_K holds 1 non-finite values"):
        import_run(source, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pth"], "a failed import leaves nothing behind"


def test_existing_output_is_never_overwritten(tiny_run, tmp_path):
    source = full_run_file(tmp_path / "f.pth", tiny_run)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(RunError, match="already exists and is not empty; nothing was written"):
        import_run(source, out, progress=False)
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_not_a_full_run_dict(tmp_path):
    source = tmp_path / "f.pth"
    torch.save({"model": {"w": torch.zeros(2)}}, source)
    with pytest.raises(CheckpointError, match=r"a single model \(under 'model'\) and no 'epoch'.*--final-epoch"):
        import_run(source, tmp_path / "out", progress=False)
    torch.save({"weights": {"w": torch.zeros(2)}, "step": 3}, source)
    with pytest.raises(CheckpointError, match=r"no 'state_dicts' / 'checkpoints' list .*keys present: "
                                              r"\{weights: dict, step: int\}"):
        import_run(source, tmp_path / "out", progress=False)


def test_cli_import_and_info(tiny_run, tmp_path, capsys):
    source = full_run_file(tmp_path / "f.pth", tiny_run)
    assert main(["import", str(source), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["info", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "imported 13 checkpoints" in out and "a+b mod 23" in out and "grokking" in out


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00" * 100)
    result = subprocess.run([sys.executable, "-m", "claimlens.cli", "import", str(bad), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "claimlens import: error:" in result.stderr and "broken.pth" in result.stderr
    assert "Traceback" not in result.stderr


def test_parameters_zero_at_every_checkpoint_are_named_with_a_proposal(tiny_run, tmp_path, capsys):
    """E2-09: an import whose MLP biases are zero at every checkpoint (a run that froze them) says so and how to
    hold them fixed; the proposal is recorded in the run's source."""
    def zero_mlp_biases(params):
        sd = hooked_state_dict(params)
        sd["blocks.0.mlp.b_in"] = torch.zeros_like(sd["blocks.0.mlp.b_in"])
        sd["blocks.0.mlp.b_out"] = torch.zeros_like(sd["blocks.0.mlp.b_out"])
        return sd

    path = full_run_file(tmp_path / "full_run_data.pth", tiny_run, convert=zero_mlp_biases)
    assert main(["import", str(path), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "['blocks.0.mlp.b_in', 'blocks.0.mlp.b_out'] are zero at every checkpoint" in out
    assert "under [model] frozen" in out
    from claimlens.runs.store import Run

    source = Run.open(tmp_path / "run").manifest["source"]
    assert source["always_zero"] == ["blocks.0.mlp.b_in", "blocks.0.mlp.b_out"]


def test_a_clock_pizza_config_beside_an_mlp_spec_is_refused_in_one_line():
    """The Clock/Pizza config describes a transformer: a spec of another model kind is a clear refusal, not an
    AttributeError on the fields an MLP does not have."""
    from claimlens.config import MLPConfig
    from claimlens.errors import CheckpointError
    from claimlens.runs.layouts import clock_pizza_disagreement

    with pytest.raises(CheckpointError, match=r"describes a transformer; the spec's model is kind 'mlp'"):
        clock_pizza_disagreement({"attn_rate": 0.0, "equals_token": False}, MLPConfig(), "model_1.pt")
