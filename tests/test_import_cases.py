"""The real-world import cases of ``../shared/cases`` (E2-01 … E2-05): each generator is run into a temporary
folder and the import must give the right data or a refusal that names the next step."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import claimlens
from claimlens.config import RunSpec
from claimlens.errors import CheckpointError, UnsafeCheckpointError
from claimlens.runs.importers import epoch_from_name, import_run

CASES = Path(os.environ.get("CLAIMLENS_CASES", Path(__file__).resolve().parents[2] / "shared" / "cases"))
TINY = dict(d_model=32, n_heads=4, d_head=8, d_mlp=64)


def generate(case: str, out: Path) -> Path:
    """Run the case's own generator (random weights of the right shapes) into ``out``."""
    scripts = sorted(CASES.glob(f"{case}_*/make.py"))
    if not scripts:
        pytest.skip(f"case generator {case} not found under {CASES} (set CLAIMLENS_CASES)")
    env = dict(os.environ, PYTHONPATH=str(Path(claimlens.__file__).resolve().parents[1]))
    subprocess.run([sys.executable, str(scripts[0]), "--out", str(out)], check=True, env=env, capture_output=True)
    return out


def random_property_params(seed):
    from claimlens.config import ModelConfig
    from claimlens.models import init_params

    return init_params(ModelConfig(**TINY), 23, seed)


# ----------------------------------------------------------------------------- E2-01


@pytest.mark.parametrize("variant", ["tl_demo_full_run.pth", "tl_demo_full_run_plain_cfg.pth"])
def test_e2_01_tl_demo_file_imports_without_a_spec(tmp_path, variant):
    src = generate("E2-01", tmp_path / "src")
    run = import_run(src / variant, tmp_path / "run", progress=False)
    torch.manual_seed(598)
    perm = torch.randperm(113 * 113)
    assert run.epochs == [99, 199, 299, 399]
    assert run.spec.task.p == 113 and run.spec.model.d_model == 128 and run.spec.model.n_heads == 4
    assert torch.equal(run.task.train_idx, perm[:3830]) and torch.equal(run.task.test_idx, perm[3830:])
    source = run.manifest["source"]
    assert source["split_rule"] == "stored"
    assert any("model-init seed; not used as split seed" in c for c in source["conversions"])
    assert "e + 1 optimiser steps" in source["epoch_convention"]


def test_e2_01_tl_demo_file_with_its_spec(tmp_path):
    src = generate("E2-01", tmp_path / "src")
    run = import_run(src / "tl_demo_full_run.pth", tmp_path / "run", spec=RunSpec.from_toml(src / "spec.toml"),
                     progress=False)
    assert run.epochs == [99, 199, 299, 399] and run.manifest["split"]["rule"] == "stored"


# ----------------------------------------------------------------------------- E2-02


def test_e2_02_numeric_numpy_is_read_and_converted(tmp_path):
    src = generate("E2-02", tmp_path / "src")
    losses = import_run(src / "np_scalar_losses.pth", tmp_path / "a", progress=False)
    logged = (losses.path / "source_log.jsonl").read_text().splitlines()
    assert len(logged) == 21 and '"train_loss' in logged[0]
    split = import_run(src / "np_array_split.pth", tmp_path / "b", progress=False)
    perm = np.random.default_rng(1).permutation(23 * 23)
    assert split.task.train_idx.tolist() == perm[: 23 * 23 // 2].tolist()
    assert split.manifest["split"]["rule"] == "stored"
    config = import_run(src / "np_int_config.pth", tmp_path / "c", progress=False)
    assert config.spec.task.p == 23 and type(config.spec.task.p) is int and config.spec.train.lr == 3e-3


class Opaque:  # a class no allowlist knows: the file asks for tests.test_import_cases.Opaque
    pass


def test_e2_02_every_unsafe_global_is_listed_with_its_key(tmp_path):
    params = random_property_params(0)
    path = tmp_path / "f.pth"
    config = {"p": 23, "frac_train": 0.5, "seed": 1, **TINY, "num_heads": 4, "obj": Opaque()}
    torch.save({"state_dicts": [params], "epochs": [0], "config": config, "optimizer": Opaque()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        import_run(path, tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "config.obj: " in msg and "optimizer: " in msg and "Opaque" in msg
    assert "--spec can help" in msg
    spec = RunSpec.from_dict({"name": "s", "task": {"p": 23, "frac_train": 0.5, "split_seed": 1},
                              "model": TINY, "train": {"epochs": 10, "checkpoint_every": 1}})
    run = import_run(path, tmp_path / "out", spec=spec, progress=False)
    assert run.epochs == [0] and any("ignored ['config', 'optimizer']" in c for c in run.manifest["source"]["conversions"])


def test_e2_02_object_arrays_are_refused_and_named(tmp_path):
    path = tmp_path / "f.pth"
    torch.save({"state_dicts": [random_property_params(0)], "epochs": [0],
                "config": {"p": 23, "names": np.array(["a", None], dtype=object)}}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"config.names: numpy.dtype\('O8'\) \(not numeric\)"):
        import_run(path, tmp_path / "out", progress=False)


def test_e2_02_unsafe_weights_cannot_be_helped_by_a_spec(tmp_path):
    path = tmp_path / "f.pth"
    torch.save({"state_dicts": [Opaque()], "epochs": [0]}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"state_dicts\[0\]: .*Opaque.*--spec cannot help"):
        import_run(path, tmp_path / "out", progress=False)


# ----------------------------------------------------------------------------- E2-03


def test_e2_03_split_stored_as_token_rows(tmp_path):
    src = generate("E2-03", tmp_path / "src")
    data = torch.load(src / "split_as_tokens.pth", weights_only=True)
    run = import_run(src / "split_as_tokens.pth", tmp_path / "run", progress=False)
    rows = data["train_data"]
    assert torch.equal(run.task.train_idx, rows[:, 0] * 113 + rows[:, 1])
    assert "token rows" in run.manifest["split"]["rule"] or "token rows" in run.manifest["source"]["split_rule"]
    assert run.spec.task.frac_train == pytest.approx(len(rows) / 113 ** 2)


def test_e2_03_no_stored_split_and_a_tl_seed_is_refused(tmp_path):
    src = generate("E2-03", tmp_path / "src")
    data = torch.load(src / "split_as_tokens.pth", weights_only=True)
    del data["train_data"], data["test_data"]
    torch.save(data, tmp_path / "nosplit.pth")
    with pytest.raises(CheckpointError, match=r"stores no split.*model-init seed.*never rebuilds a split silently"):
        import_run(tmp_path / "nosplit.pth", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- E2-04


def test_e2_04_names_that_do_not_say_the_epoch_are_refused(tmp_path):
    src = generate("E2-04", tmp_path / "src")
    for folder in ("nv", "pizza"):
        with pytest.raises(CheckpointError, match=r"none readable from the name of \[.*--epoch-pattern"):
            import_run(src / folder, tmp_path / folder, progress=False)
    run = import_run(src / "nv", tmp_path / "nv", epoch_pattern=r"CHECKPOINT_(\d+)_", progress=False)
    assert run.epochs == [0, 1, 2, 3] and run.manifest["source"]["epoch_source"] == ["--epoch-pattern"]


def test_e2_04_lightning_and_tagged_names(tmp_path):
    src = generate("E2-04", tmp_path / "src")
    lightning = import_run(src / "lightning", tmp_path / "l", progress=False)
    assert lightning.epochs == [0, 1, 2], "the epoch stored in each .ckpt wins over the name"
    assert lightning.manifest["source"]["epoch_name_disagrees"]["epoch=7-step=800.ckpt"] == {"stored": 1, "name": 7}
    renamed = import_run(src / "renamed", tmp_path / "r", progress=False)
    assert renamed.epochs == [3, 7], "epoch=E-step=S: the tagged epoch, never the step"


@pytest.mark.parametrize("stem, epoch", [("epoch=3-step=400", 3), ("model_epoch_100", 100), ("ep12", 12),
                                         ("ckpt-1200", 1200), ("step_500", 500), ("run3_epoch_20", 20),
                                         ("model_p99zdpze5l", None), ("final", None)])
def test_epoch_from_name(stem, epoch):
    assert epoch_from_name(stem) == epoch


# ----------------------------------------------------------------------------- E2-05


@pytest.mark.parametrize("folder, conversion", [("nanogpt", "'_orig_mod.'"), ("tutorial", None), ("ddp", "'module.'")])
def test_e2_05_wrapped_checkpoints(tmp_path, folder, conversion):
    src = generate("E2-05", tmp_path / "src")
    run = import_run(src / folder, tmp_path / "run", progress=False)
    assert run.epochs == [0, 100, 200]
    for i, epoch in enumerate(run.epochs):
        expected, got = random_property_params(i), run.checkpoint(epoch)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    if conversion:
        assert any(conversion in c for c in run.manifest["source"]["conversions"])


def test_a_file_without_any_state_dict_lists_its_keys(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "spec.toml").write_text('[task]\np = 23\n[model]\nd_model = 32\nn_heads = 4\nd_head = 8\nd_mlp = 64\n'
                                      '[train]\nepochs = 10\ncheckpoint_every = 1\n')
    torch.save({"net": {"w": torch.zeros(2)}, "epoch": 1}, folder / "epoch_1.pt")
    with pytest.raises(CheckpointError, match=r"does not hold a state dict.*keys present: \{net: dict, epoch: int\}"):
        import_run(folder, tmp_path / "run", progress=False)


# ----------------------------------------------------------------------------- single checkpoint


def test_a_final_2022_layout_model_alone_is_a_run(tiny_run, tmp_path):
    from tests.test_importers import TINY_CONFIG, paper_code_state_dict

    final = tiny_run.epochs[-1]
    sd = {k: v.cuda() if torch.cuda.is_available() else v for k, v in paper_code_state_dict(tiny_run.final()).items()}
    log = tiny_run.log()
    torch.save({"model": sd, "config": dict(TINY_CONFIG), "epoch": final, "optimizer": {"state": {}, "param_groups": []},
                "scheduler": {"last_epoch": final}, "train_losses": log["train_loss"].tolist(),
                "test_losses": log["test_loss"].tolist()}, tmp_path / "final.pth")
    run = import_run(tmp_path / "final.pth", tmp_path / "run", progress=False)
    assert run.epochs == [final] and run.manifest["source"]["format"] == "single_checkpoint"
    assert torch.equal(run.task.train_idx, tiny_run.task.train_idx)
    torch.testing.assert_close(run.log()["train_loss"], log["train_loss"][[final]], rtol=1e-6, atol=1e-9)
