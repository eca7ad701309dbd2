import pytest

from claimlens.config import RunSpec
from claimlens.errors import SpecError
from conftest import ROOT


def test_builtin_specs_load_and_validate():
    names = sorted(p.stem for p in (ROOT / "fixtures").glob("*.toml"))
    assert {"default", "paper"} <= set(names)
    for name in names:
        spec = RunSpec.from_toml(ROOT / "fixtures" / f"{name}.toml")
        assert spec.name == name


def test_paper_spec_is_the_mainline_configuration():
    spec = RunSpec.from_toml(ROOT / "fixtures" / "paper.toml")
    assert (spec.task.p, spec.task.frac_train, spec.task.split_seed) == (113, 0.3, 0)
    m = spec.model
    assert (m.d_model, m.n_heads, m.d_head, m.d_mlp, m.act_fn) == (128, 4, 32, 512, "relu")
    t = spec.train
    assert (t.lr, t.weight_decay, t.betas, t.warmup_steps, t.epochs, t.checkpoint_every) == (
        1e-3, 1.0, (0.9, 0.98), 10, 40_000, 100)


def test_round_trip_and_hash():
    spec = RunSpec.from_toml(ROOT / "fixtures" / "default.toml")
    again = RunSpec.from_dict(spec.to_dict())
    assert again == spec and again.hash == spec.hash
    renamed = RunSpec.from_dict({**spec.to_dict(), "name": "other", "description": "x"})
    assert renamed.hash == spec.hash, "name and description do not change the weights"
    changed = RunSpec.from_dict({**spec.to_dict(), "train": {**spec.to_dict()["train"], "lr": 0.5}})
    assert changed.hash != spec.hash


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"name": "x", "task": {"p": 1}}, "task.p must be an integer ≥ 3; got 1"),
        ({"name": "x", "task": {"frac_train": 1.5}}, "task.frac_train must be in (0, 1); got 1.5"),
        ({"name": "x", "trian": {}}, "unknown key(s) ['trian']"),
        ({"name": "x", "train": {"lr": "fast"}}, "lr must be a number, got 'fast'"),
        ({"name": "x", "train": {"epochs": 10, "checkpoint_every": 20}}, "train.checkpoint_every must be in [1, epochs=10]"),
        ({"name": "x", "model": {"kind": "rnn"}}, "model.kind must be 'transformer', 'mlp' or 'attn_only'; got 'rnn'"),
        ({"name": "x", "model": {"kind": "mlp", "hidden": []}}, "model.hidden must be a non-empty list"),
    ],
)
def test_bad_specs_name_the_key_and_value(data, fragment):
    with pytest.raises(SpecError) as info:
        RunSpec.from_dict(data)
    assert fragment in str(info.value)


def test_bad_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="bad.toml.*not valid TOML"):
        RunSpec.from_toml(bad)
    with pytest.raises(SpecError, match="does not exist"):
        RunSpec.from_toml(tmp_path / "missing.toml")
