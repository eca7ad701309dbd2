"""The real-world import cases of ``../shared/cases`` (E2-01 … E2-08): each generator is run into a temporary
folder and the import must give the right data or a refusal that names the next step. Then the file's own
evidence: logged losses recomputed, a split found by the sources' rules, the optimizer state against the config."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import claimlens
from claimlens.config import RunSpec
from claimlens.errors import CheckpointError, UnsafeCheckpointError
from claimlens.runs.importers import epoch_from_name, import_run, safe_load

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
    from claimlens.config import TransformerConfig
    from claimlens.models import init_params

    return init_params(TransformerConfig(**TINY), 23, seed)


# ----------------------------------------------------------------------------- E2-01


@pytest.mark.parametrize("variant", ["tl_demo_full_run.pth", "tl_demo_full_run_plain_cfg.pth"])
def test_e2_01_tl_demo_file_imports_without_a_spec(tmp_path, variant):
    src = generate("E2-01", tmp_path / "src")
    # the generator's logged losses are made up (4.73·0.99^i) for random weights: the import says so and stops
    with pytest.raises(CheckpointError, match=r"do not reproduce the file's own train_losses.*epoch 399 recomputed "
                                              r"4\.\d+, logged 0\.08\d+.*--ignore-logged-losses"):
        import_run(src / variant, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    run = import_run(src / variant, tmp_path / "run", ignore_logged_losses=True, progress=False)
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
                     ignore_logged_losses=True, progress=False)
    assert run.epochs == [99, 199, 299, 399] and run.manifest["split"]["rule"] == "stored"


# ----------------------------------------------------------------------------- E2-02


def test_e2_02_numeric_numpy_is_read_and_converted(tmp_path):
    src = generate("E2-02", tmp_path / "src")
    with pytest.raises(CheckpointError, match="do not reproduce the file's own"):  # made-up losses, random weights
        import_run(src / "np_scalar_losses.pth", tmp_path / "a", progress=False)
    data = safe_load.load(src / "np_scalar_losses.pth")
    recomputed = import_run(src / "np_scalar_losses.pth", tmp_path / "a", ignore_logged_losses=True, progress=False)
    rows = recomputed.log()
    data["train_losses"] = [np.float64(x) for x in rows["train_loss"].tolist()]
    data["test_losses"] = [np.float64(x) for x in rows["test_loss"].tolist()]
    data["train_losses_epochs"] = data["test_losses_epochs"] = rows["epoch"].tolist()  # logged at checkpoints only
    torch.save(data, tmp_path / "np_real_losses.pth")
    losses = import_run(tmp_path / "np_real_losses.pth", tmp_path / "a2", progress=False)
    logged = (losses.path / "source_log.jsonl").read_text().splitlines()
    assert len(logged) == len(rows["epoch"]) and '"train_loss' in logged[0]
    assert losses.manifest["source"]["logged_losses"]["train_loss"]["verified"]
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


def test_e2_03_no_stored_split_and_a_tl_seed_imports_with_the_split_unknown(tmp_path):
    """No split stored, no logged train loss, a TransformerLens config whose seed is the model-init seed: no rule
    rebuilds the split, so the run's split is unknown (with the reason), never made up from that seed."""
    from claimlens.errors import SplitUnknown

    src = generate("E2-03", tmp_path / "src")
    data = torch.load(src / "split_as_tokens.pth", weights_only=True)
    del data["train_data"], data["test_data"]
    torch.save(data, tmp_path / "nosplit.pth")
    run = import_run(tmp_path / "nosplit.pth", tmp_path / "run", progress=False)
    assert run.manifest["split"]["rule"] == "unknown" and "train" not in run.manifest["split"]
    assert re.search(r"stores no split.*model-init seed", run.manifest["split"]["reason"])
    with pytest.raises(SplitUnknown, match="unknown"):
        run.task.train_idx  # noqa: B018
    log = run.log()
    assert set(log) == {"epoch", "all_loss", "all_acc"} and len(log["epoch"]) == len(run.epochs)


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
                                         ("model_p99zdpze5l", None), ("final", None), ("run7abc", None),
                                         ("ckpt1200", 1200), ("model_v2_500", None)])
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


# ----------------------------------------------------------------------------- E2-07


def _load_generator(case: str):
    import importlib.util

    script = sorted(CASES.glob(f"{case}_*/make.py"))[0]
    sys.path.insert(0, str(CASES))
    spec = importlib.util.spec_from_file_location(f"make_{case.replace('-', '_')}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["untied", "tied"])
def test_e2_07_hackathon_mlp_layout_gives_the_source_logits(tmp_path, variant):
    from claimlens.models import forward

    src = generate("E2-07", tmp_path / "src")
    spec = RunSpec.from_toml(Path(__file__).resolve().parents[1] / "fixtures" / "llc_mlp.toml")
    run = import_run(src / variant, tmp_path / "run", spec=spec, progress=False)
    assert run.epochs == [0, 250, 500]
    ours = forward(run.final(), run.task.tokens, run.spec.model).logits
    if variant == "untied":
        reference = torch.load(src / "reference_logits_untied.pt", weights_only=True)
    else:
        make = _load_generator("E2-07")
        reference = make.nv_logits(torch.load(src / "tied" / "step_500.pt", weights_only=True), tie_unembed=True)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    conversions = run.manifest["source"]["conversions"]
    assert any("devinterp-hackathon MLP layout" in c for c in conversions)
    assert (variant == "tied") == any("tied unembedding" in c for c in conversions)


def test_e2_07_hackathon_layout_needs_the_concat_mlp(tmp_path):
    src = generate("E2-07", tmp_path / "src")
    spec = RunSpec.from_toml(Path(__file__).resolve().parents[1] / "fixtures" / "llc_mlp.toml")
    summed = dataclasses.replace(spec, model=dataclasses.replace(spec.model, combine="sum"))
    with pytest.raises(CheckpointError, match=r'combine = "concat".*fixtures/llc_mlp.toml'):
        import_run(src / "untied", tmp_path / "run", spec=summed, progress=False)


# ----------------------------------------------------------------------------- E2-08


def test_e2_08_clock_pizza_settings_are_read_and_unrepresentable_ones_refused(tmp_path):
    """The sidecar's attention rate and '=' setting become the spec's attn_rate / equals_token; a spec that
    disagrees with them, or a config claimlens cannot represent, is refused with the reason."""
    from claimlens.runs.layouts import check_clock_pizza

    src = generate("E2-08", tmp_path / "src")
    config = json.loads((src / "eqn_sign1" / "config_p99zdpze5l.json").read_text())
    fields, notes = check_clock_pizza(config, "E2-08")
    assert fields == {"attn_rate": float(config["attn_coeff"]), "equals_token": True, "causal": False, "n_layers": 1}
    assert "attn_rate = 0" in notes[0]
    assert check_clock_pizza({**config, "n_layers": 3}, "E2-08")[0]["n_layers"] == 3  # any depth (tests/test_depth.py)
    for bad, why in (({"n_layers": 0}, "n_layers = 0"), ({"diff_vocab": 1}, "diff_vocab = 1"),
                     ({"act_fn": "Tanh"}, "act_fn = 'Tanh'"), ({"attn_coeff": 1.5}, "attn_coeff = 1.5")):
        with pytest.raises(CheckpointError, match=re.escape(why)):
            check_clock_pizza({**config, **bad}, "E2-08")
    wrong = tiny_transformer_spec_for(config)
    with pytest.raises(CheckpointError, match=r"attn_rate = 1.0 in the spec, 0.0 in the config"):
        import_run(src / "eqn_sign1" / "model_p99zdpze5l.pt", tmp_path / "run", spec=wrong, progress=False)
    assert not (tmp_path / "run").exists()


def tiny_transformer_spec_for(config):
    """A spec of the right shapes for the E2-08 weights but softmax attention (the wrong attention rate)."""
    from claimlens.config import RunSpec

    return RunSpec.from_dict({"name": "wrong", "task": {"p": 59, "frac_train": 0.8},
                              "model": {"d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512},
                              "train": {"epochs": 1, "checkpoint_every": 1}})


def test_e2_08_clock_model_without_its_split_imports_with_the_split_unknown_and_is_never_dated_by_its_run_id(
        tmp_path):
    src = generate("E2-08", tmp_path / "src")
    folder = src / "eqn_sign1"
    config = json.loads((folder / "config_p99zdpze5l.json").read_text())
    (folder / "config_p99zdpze5l.json").write_text(json.dumps({**config, "attn_coeff": 1}))
    with pytest.raises(CheckpointError, match=r"import each file on its own.*unseeded torch.utils.data.random_split"):
        import_run(folder, tmp_path / "run", progress=False)  # a folder of Clock/Pizza files is several runs
    run = import_run(folder / "model_p99zdpze5l.pt", tmp_path / "run", progress=False)
    assert run.manifest["split"]["rule"] == "unknown"
    assert "unseeded torch.utils.data.random_split" in run.manifest["split"]["reason"]
    assert run.epochs == [config["epoch"]] and run.spec.task.p == config["C"]
    assert epoch_from_name("model_p99zdpze5l") is None


# ----------------------------------------------------------------------------- the file's own evidence


def _full_run(tiny_run, path, *, epochs=None, label=lambda e: e, config=None, **extra):
    from tests.test_importers import TINY_CONFIG, hooked_state_dict

    epochs = tiny_run.epochs if epochs is None else epochs
    data = {"state_dicts": [hooked_state_dict(tiny_run.checkpoint(e)) for e in epochs],
            "epochs": [label(e) for e in epochs], "config": dict(TINY_CONFIG if config is None else config), **extra}
    torch.save(data, path)
    return path


def test_logged_losses_are_reproduced_and_kept_on_their_own_epochs(tiny_run, tmp_path):
    log = tiny_run.log()
    test_epochs = [e for e in log["epoch"].tolist() if e % 20 == 0]  # test loss logged every 20 epochs
    path = _full_run(tiny_run, tmp_path / "f.pth", train_losses=log["train_loss"].tolist(),
                     test_losses=[float(log["test_loss"][e]) for e in test_epochs], test_epochs=test_epochs)
    run = import_run(path, tmp_path / "run", progress=False)
    checks = run.manifest["source"]["logged_losses"]
    assert checks["train_loss"]["offset"] == 0 and checks["train_loss"]["checkpoints_compared"] == len(run.epochs)
    assert checks["test_loss"]["epoch_source"] == "the file's 'test_epochs'"
    assert checks["test_loss"]["checkpoints_compared"] == len(test_epochs) and checks["test_loss"]["max_rel_err"] < 1e-9
    rows = [json.loads(line) for line in (run.path / "source_log.jsonl").read_text().splitlines()]
    assert len(rows) == len(log["epoch"]) and sum("test_loss" in r for r in rows) == len(test_epochs)


def test_the_tl_demo_convention_is_recognised_by_the_offset_that_matches(tiny_run, tmp_path):
    """TL demo: checkpoint 'epoch e' holds the weights after e + 1 steps; train_losses[e] is the loss before step
    e + 1 (so the checkpoint's own train loss is logged at e + 1), test_losses[e] after it."""
    log = tiny_run.log()
    last = int(log["epoch"][-1])
    epochs = [e for e in tiny_run.epochs if e > 0]
    path = _full_run(tiny_run, tmp_path / "f.pth", epochs=epochs, label=lambda e: e - 1,
                     train_losses=log["train_loss"][:last].tolist(), test_losses=log["test_loss"][1:].tolist())
    checks = import_run(path, tmp_path / "run", progress=False).manifest["source"]["logged_losses"]
    assert checks["train_loss"]["offset"] == 1 and checks["test_loss"]["offset"] == 0


def test_a_list_that_cannot_be_placed_on_epochs_is_kept_out_with_a_note(tiny_run, tmp_path):
    log = tiny_run.log()
    path = _full_run(tiny_run, tmp_path / "f.pth", test_losses=log["test_loss"][::20].tolist())
    run = import_run(path, tmp_path / "run", progress=False)
    assert "logged_losses" not in run.manifest["source"]
    assert any("test_losses holds 7 values but the last checkpoint is epoch 120" in c
               for c in run.manifest["source"]["conversions"])


def test_a_split_not_stored_is_found_from_the_logged_train_loss(tiny_run, tmp_path):
    from tests.test_importers import TINY_CONFIG

    log = tiny_run.log()
    config = {k: v for k, v in TINY_CONFIG.items() if k not in ("seed", "frac_train")}
    path = _full_run(tiny_run, tmp_path / "f.pth", config=config, train_losses=log["train_loss"].tolist(),
                     test_losses=log["test_loss"].tolist())
    run = import_run(path, tmp_path / "run", progress=False)
    assert torch.equal(run.task.train_idx, tiny_run.task.train_idx)
    assert run.manifest["source"]["split_rule"].startswith("found by search: nanda_shuffle with seed 1, frac_train 0.5")
    assert run.spec.task.split_seed == 1


def test_the_randperm_rule_is_the_tl_demo_split():
    from claimlens.runs.evidence import SPLIT_RULES

    torch.manual_seed(598)
    assert torch.equal(SPLIT_RULES["torch_randperm"](113, 598), torch.randperm(113 * 113))


def test_losses_that_cannot_tell_splits_apart_are_refused(tiny_run, tmp_path):
    from tests.test_importers import TINY_CONFIG

    untrained = tiny_run.epochs[0]
    log = tiny_run.log()
    config = {k: v for k, v in TINY_CONFIG.items() if k not in ("seed", "frac_train")}
    path = _full_run(tiny_run, tmp_path / "f.pth", epochs=[untrained], config=config,
                     train_losses=[float(log["train_loss"][untrained])])
    with pytest.raises(CheckpointError, match=r"reproduce its logged train loss.*cannot tell them apart"):
        import_run(path, tmp_path / "run", progress=False)


def test_a_stated_split_seed_the_logged_losses_contradict_is_found_by_search(tiny_run, tmp_path):
    """The config says seed 2; the model was trained on seed 1's split: the importer finds seed 1 among 0–99
    (the only one that reproduces the logged losses), imports with it and records the search."""
    from tests.test_importers import TINY_CONFIG

    log = tiny_run.log()
    path = _full_run(tiny_run, tmp_path / "f.pth", config={**TINY_CONFIG, "seed": 2},
                     train_losses=log["train_loss"].tolist(), test_losses=log["test_loss"].tolist())
    run = import_run(path, tmp_path / "run", progress=False)
    search = run.manifest["source"]["split_search"]
    assert search["stated_seed"] == 2 and search["found_seed"] == 1 and search["tried"] == "0–99"
    assert search["stated_error"] > 0.05 >= search["error"] and search["runner_up_error"] > 0.05
    assert run.spec.task.split_seed == 1 and torch.equal(run.task.train_idx, tiny_run.task.train_idx)
    assert run.manifest["source"]["logged_losses"]["train_loss"]["verified"]  # and the full check agrees
    from claimlens.cli import main

    assert main(["info", str(run.path)]) == 0


def test_a_stated_split_no_seed_reproduces_is_refused_listing_what_was_tried(tiny_run, tmp_path):
    from tests.test_importers import TINY_CONFIG

    log = tiny_run.log()
    path = _full_run(tiny_run, tmp_path / "f.pth", config={**TINY_CONFIG, "seed": 2, "frac_train": 0.3},
                     train_losses=log["train_loss"].tolist(), test_losses=log["test_loss"].tolist())
    with pytest.raises(CheckpointError, match=r"do not reproduce the file's own logged losses.*seed 2, frac_train "
                                              r"0.3.*other seeds 0–99 at frac_train 0.3, none reproduces them"):
        import_run(path, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_every_checkpoint_the_same_tensor_is_refused_with_the_likely_cause(tiny_run, tmp_path):
    from tests.test_importers import TINY_CONFIG, hooked_state_dict

    final = hooked_state_dict(tiny_run.final())
    torch.save({"state_dicts": [final] * 4, "epochs": [0, 10, 20, 30], "config": dict(TINY_CONFIG)}, tmp_path / "f.pth")
    with pytest.raises(CheckpointError, match=r"all 4 checkpoints .* hold the same weights.*copy.deepcopy"):
        import_run(tmp_path / "f.pth", tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_optimizer_state_is_evidence_against_the_config(tiny_run, tmp_path):
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "initial_lr": 3e-3, "weight_decay": 0.3,
                                                "betas": (0.9, 0.98)}]}
    path = _full_run(tiny_run, tmp_path / "f.pth", optimizer=optimizer)  # the config says weight_decay 1.0
    run = import_run(path, tmp_path / "run", progress=False)
    assert run.spec.train.weight_decay == 0.3 and run.spec.train.betas == (0.9, 0.98)
    assert run.manifest["source"]["config_disagrees_with_optimizer"] == {
        "weight_decay": {"config": 1.0, "optimizer": 0.3}}
    given = import_run(path, tmp_path / "given", spec=tiny_run.spec, progress=False)
    assert given.spec.train.weight_decay == tiny_run.spec.train.weight_decay, "--spec is kept as given"
    assert "weight_decay" in given.manifest["source"]["config_disagrees_with_optimizer"]


# ----------------------------------------------------------------------------- single-checkpoint runs in a session


def _claims_session(run_path: Path, report: Path) -> list[dict]:
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pytest", str(root / "claims"), "-q", "-p", "no:cacheprovider", "--rootdir",
                    str(root), "--run", str(run_path), "--claims-report", str(report)],
                   check=False, capture_output=True, cwd=report.parent)
    return json.loads((report / "claims.json").read_text())["records"]


def test_a_single_checkpoint_run_skips_trajectory_claims_and_info_invents_no_epochs(tiny_run, tmp_path, capsys):
    from claimlens.cli import main
    from tests.test_importers import TINY_CONFIG

    log = tiny_run.log()
    torch.save({"model": tiny_run.final(), "epoch": tiny_run.epochs[-1], "config": dict(TINY_CONFIG),
                "train_losses": log["train_loss"].tolist(), "test_losses": log["test_loss"].tolist()},
               tmp_path / "final.pth")
    run = import_run(tmp_path / "final.pth", tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["info", str(run.path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "cannot tell when this run memorised or generalised" in info["grokking"]["unresolved"]
    assert main(["info", str(run.path)]) == 0
    assert "grokking   1 checkpoint: claimlens cannot tell" in capsys.readouterr().out
    records = _claims_session(run.path, tmp_path / "rep")
    from claimlens.families import CLAIMS

    assert records
    for r in records:
        if CLAIMS[r["claim_id"]].task == "repeated_subsequence":  # the induction claims: another task, skipped first
            assert r["outcome"] == "skipped" and "claim about the repeated subsequence task" in r["message"]
        elif CLAIMS[r["claim_id"]].min_checkpoints > 1:
            assert r["outcome"] == "skipped" and "needs ≥ 10 checkpoints" in r["message"], r["claim_id"]
        else:
            assert "needs ≥" not in (r["message"] or ""), r["claim_id"]


@pytest.mark.slow
def test_a_final_2022_layout_model_with_its_training_state_imports_and_its_final_claims_are_judged(tmp_path):
    """The issue's acceptance case: one file, the final model in the 2022 layout, its optimizer and scheduler
    state, its per-epoch loss lists and a config without the split: no spec needed, the logged final losses
    reproduced, the split found, and the final-checkpoint claims judged (on the grokked built-in default run)."""
    from claimlens.builtin import builtin_run
    from tests.test_importers import paper_code_state_dict

    default = builtin_run("default", progress=False)
    log, final, spec = default.log(), default.epochs[-1], default.spec
    torch.save({
        "model": paper_code_state_dict(default.final(), p=spec.task.p), "epoch": final,
        "config": {"p": spec.task.p, "d_model": spec.model.d_model, "num_heads": spec.model.n_heads,
                   "d_head": spec.model.d_head, "d_mlp": spec.model.d_mlp, "act_type": "ReLU", "lr": spec.train.lr,
                   "weight_decay": spec.train.weight_decay},
        "optimizer": {"state": {}, "param_groups": [{"lr": spec.train.lr, "weight_decay": spec.train.weight_decay,
                                                     "betas": tuple(spec.train.betas)}]},
        "scheduler": {"last_epoch": final}, "train_losses": log["train_loss"].tolist(),
        "test_losses": log["test_loss"].tolist()}, tmp_path / "final.pth")
    run = import_run(tmp_path / "final.pth", tmp_path / "run", progress=False)
    assert torch.equal(run.task.train_idx, default.task.train_idx)
    checks = run.manifest["source"]["logged_losses"]
    assert checks["train_loss"]["verified"] and checks["test_loss"]["verified"]
    records = {r["claim_id"]: r for r in _claims_session(run.path, tmp_path / "rep")}
    judged = [c for c in ("logits_are_sum_of_cosines", "key_frequencies_mainline", "neurons_cluster_by_single_frequency",
                          "fourier_ablations_final_model", "embedding_sparse_in_fourier_basis")
              if records[c]["outcome"] in ("passed", "failed")]
    assert len(judged) == 5, {c: records[c]["message"] for c in records}
    assert records["phase_boundaries_mainline"]["outcome"] == "skipped"


def test_e2_08_the_clock_pizza_layout_with_softmax_attention_is_the_source_forward(tmp_path):
    """The layout half of E2-08: with α = 1 the Clock/Pizza forward (2022 layout, no causal mask) and claimlens's
    forward of the converted weights give the same logits at '=', as the refusal note says."""
    from claimlens.config import TransformerConfig
    from claimlens.models import forward
    from claimlens.runs.layouts import to_property_format
    from claimlens.tasks import grid_tokens

    src = generate("E2-08", tmp_path / "src")
    sd = torch.load(src / "eqn_sign1" / "model_p99zdpze5l.pt", weights_only=True)
    model = TransformerConfig(d_model=128, n_heads=4, d_head=32, d_mlp=512)
    params, notes = to_property_format(sd, model, 59, where="E2-08")
    reference = torch.load(src / "reference_logits.pt", weights_only=True)
    ours = forward(params, grid_tokens(59), model).logits
    torch.testing.assert_close(ours, reference["coeff1"][:, :59], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours, reference["coeff0"][:, :59], atol=1e-2), "α = 0 is another function"
    # … and the attention-rate variant is that other function: α = 0 gives the source's constant-attention logits
    pizza = TransformerConfig(d_model=128, n_heads=4, d_head=32, d_mlp=512, attn_rate=0.0, causal=False)
    torch.testing.assert_close(forward(params, grid_tokens(59), pizza).logits, reference["coeff0"][:, :59],
                               rtol=1e-4, atol=1e-4)
    assert any("progress-measures-paper layout" in n for n in notes)
