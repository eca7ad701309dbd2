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


@pytest.mark.parametrize("text", ["", "# a comment only\n", 'name = "mine"\ndescription = "d"\n'])
def test_a_spec_file_that_states_no_table_is_refused_not_trained_with_every_default(tmp_path, text):
    """An empty file would otherwise be the paper's 40 000-epoch recipe, trained without a word."""
    empty = tmp_path / "empty.toml"
    empty.write_text(text)
    with pytest.raises(SpecError, match=r"empty.toml.*states no \[task\], \[model\] or \[train\].*40 000 epochs"):
        RunSpec.from_toml(empty)
    (tmp_path / "one.toml").write_text(text + "[train]\nepochs = 10\ncheckpoint_every = 5\n")
    assert RunSpec.from_toml(tmp_path / "one.toml").train.epochs == 10


# The hash of every built-in spec and sweep member, as computed before the task and model kinds were split into one
# class each (commit ca5591f): the cached runs and analyses are keyed by it, so it must never change.
SPEC_HASHES = {
    'clock.toml': 'e6944fba9c3929497da05f5392af92f390ba93f0343bd85e14214fde60f9649b',
    'default.toml': '4ef1317b52ac15ab42dc4e0790b1b373c6e7637d2f414721d03cee0c53aa5bcf',
    # the induction specs changed on purpose with Revision 3's layout (task.max_gap: gaps 0 … 18 between repeats);
    # their hashes before it are FIRST_LAYOUT_HASHES, which run directories trained on the first layout keep
    'induction_1l.toml': '300cebe8cc55b0af5cb94d85faac4adba80560e124b2acef538e2d834bf17af8',
    'induction_2l.toml': 'a958ed23f72f084de37afa180b76817a23cb9d6bf369dfd3c59ae1b9ea783311',
    'induction_finite.toml': '234bdc43f6d39b4636360f237c84067f00062baf957b7e81ba6677ff2bae7ca2',
    'llc_mlp.toml': 'c762347adb6807c99ede88e38e57bb40396084f846383caaf4a4fd12e17bdf7d',
    'mlp_concat.toml': '3e9661aa4fe668e0cd394f239a1cee84b1dc87de402c18a681742897b2cbd7bd',
    'mlp_long.toml': 'e6a4dc759f01e393fa25f6c46455b7f9a3cd5b41a31dc836efcc15c2a189806c',
    'mlp_sum.toml': '7725f2260e1db228f106a4ee792cd75a11565a6d6816ab1172879399fa0fe528',
    'no_weight_decay.toml': '616791724cd0e3548f412b206acf8692d46d94cf4569f7d7782d37a229af729f',
    'nv_mlp.toml': 'd8ec632c78fcb89e74432447b7db0850d9bbba629e818613c4153d4a985dfd61',
    'paper.toml': 'a29fe441b1b0ef143ec70f17bdc3d5ef924967d71a3087f81a3c9195a93c5ade',
    'pizza.toml': '08c555e85aeb60469954adee1c716426e5085cd05da6fbb82e1fa5a18709dd3a',
    'sweeps/attention_rate.toml:attention_rate-attn_rate=0.0': '08c555e85aeb60469954adee1c716426e5085cd05da6fbb82e1fa5a18709dd3a',
    'sweeps/attention_rate.toml:attention_rate-attn_rate=0.25': 'dbe8597c34533641d33527e40428b21f27654033c0c1a8b6293c78f31348cab5',
    'sweeps/attention_rate.toml:attention_rate-attn_rate=0.5': 'fcc304b7f1f45c62551f6bd9d674a494e496b00a215f38cceca29d3cc8c327f1',
    'sweeps/attention_rate.toml:attention_rate-attn_rate=0.75': '21dce9da361ff94a60a932cea3bdbba184aff22ed521cbc2774225d2b7c32f8e',
    'sweeps/attention_rate.toml:attention_rate-attn_rate=1.0': 'e6944fba9c3929497da05f5392af92f390ba93f0343bd85e14214fde60f9649b',
    'sweeps/attention_rate_d64.toml:attention_rate_d64-attn_rate=0.0': '3ce50d05504c183a085af8405b56a04a85ee6270e66c5c805f4691eb23be11ea',
    'sweeps/attention_rate_d64.toml:attention_rate_d64-attn_rate=0.25': 'e115210676758d5f6672bb038ff48c081092c21abf9944da21d0183410f8a8aa',
    'sweeps/attention_rate_d64.toml:attention_rate_d64-attn_rate=0.5': 'b3a6762a579dab25e8f9ea380e6d4cf0659ec9485e3c80e8d09e0b5b17606ee8',
    'sweeps/attention_rate_d64.toml:attention_rate_d64-attn_rate=0.75': '4888e3e7c4ca1a67f123b658d91a4c5cf1d2931b8f96bf22ecafdf7c7c5069f5',
    'sweeps/attention_rate_d64.toml:attention_rate_d64-attn_rate=1.0': '874364bf41e015704a8d2736b8facf5ee12c9068775e02bc501d4c8083ddaa60',
    'sweeps/data_fraction.toml:data_fraction-frac_train=0.3': 'd1a7f90438f3d6f30e9db0aaf4476ba976bbcb770b564383ecbc2533968334c3',
    'sweeps/data_fraction.toml:data_fraction-frac_train=0.4': '4ef1317b52ac15ab42dc4e0790b1b373c6e7637d2f414721d03cee0c53aa5bcf',
    'sweeps/data_fraction.toml:data_fraction-frac_train=0.6': '29449ad062326bc32038639c852dd3e3bd88a5a28b823b877147a8a36846a550',
    'sweeps/data_fraction.toml:data_fraction-frac_train=0.8': '9aa9109fa9cdcd3d7a84eca6526fdcd90f38f30753548c67d9792b317b42d42b',
    'sweeps/llc_p.toml:llc_p-p=23': '29e6121bf0023734979d46e4424511f84e9fabe69c555c025a8527de38efcf55',
    'sweeps/llc_p.toml:llc_p-p=31': '065c5bf92f22938499a10fbb1c1cda9f8a991f71829338906b77e3dac65ea3ec',
    'sweeps/llc_p.toml:llc_p-p=41': 'b47f951c57928adc2e4c7dbf6df8ad70eacda032bc3e63c09dddeaf8402264be',
    'sweeps/llc_p.toml:llc_p-p=53': 'd8ec632c78fcb89e74432447b7db0850d9bbba629e818613c4153d4a985dfd61',
    'sweeps/llc_p.toml:llc_p-p=61': '7663fd71e763dfda34c868d700437a33e10554432c4b05f5d8bca3093dd36d29',
    'sweeps/weight_decay.toml:weight_decay-weight_decay=0.0': '616791724cd0e3548f412b206acf8692d46d94cf4569f7d7782d37a229af729f',
    'sweeps/weight_decay.toml:weight_decay-weight_decay=0.3': '5de552962d9dae13c1545a0faa0ccd8bf3f45040b241a56249b786c150ad6aec',
    'sweeps/weight_decay.toml:weight_decay-weight_decay=1.0': '4ef1317b52ac15ab42dc4e0790b1b373c6e7637d2f414721d03cee0c53aa5bcf',
    'sweeps/weight_decay.toml:weight_decay-weight_decay=3.0': 'f7215fb486187c5b253110a5400b8b83cd5369be0ed88aba6cb28ee57839e15b',
}


def _builtin_specs():
    from claimlens.config import FIXTURES
    from claimlens.runsets import SweepSpec

    for path in sorted(FIXTURES.glob("*.toml")):
        yield path.name, RunSpec.from_toml(path)
    for path in sorted((FIXTURES / "sweeps").glob("*.toml")):
        for member in SweepSpec.from_toml(path).members():
            yield f"sweeps/{path.name}:{member.label}", member.spec


def test_every_builtin_spec_keeps_its_hash():
    got = {key: spec.hash for key, spec in _builtin_specs()}
    assert got == SPEC_HASHES


def test_every_builtin_spec_round_trips_through_its_dict():
    for key, spec in _builtin_specs():
        again = RunSpec.from_dict(spec.to_dict())
        assert again == spec and again.hash == spec.hash == SPEC_HASHES[key], key


# run.json "spec" dicts written before the kinds were split (an MLP spec's to_dict(); the cached induction_1l run's)
OLD_SPEC_DICTS = [
    {"name": "llc_mlp", "task": {"p": 53, "frac_train": 0.4, "split_seed": 0, "kind": "modular_addition", "d_vocab": 128, "seq_len": 85, "repeat_len": 16, "n_repeats": 3, "n_sequences": 0}, "model": {"kind": "mlp", "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512, "attn_bias": False, "unembed_bias": False, "attn_rate": 1.0, "equals_token": True, "causal": True, "n_layers": 1, "layer_norm": False, "d_vocab": 0, "n_ctx": 0, "d_embed": 12, "hidden": [48], "combine": "concat", "act_fn": "gelu", "frozen": []}, "train": {"epochs": 25000, "lr": 0.005, "weight_decay": 0.002, "betas": [0.9, 0.999], "warmup_steps": 0, "optimizer": "adam", "checkpoint_every": 250, "seed": 0, "batch_size": 128}, "description": "LLC-paper MLP: p=53, frac 0.4, embed 12, GELU hidden 48, Adam lr 5e-3 L2 2e-3, batch 128, 25k steps", "expect": {"groks": True}},
    {"name": "induction_1l", "task": {"p": 113, "frac_train": 0.3, "split_seed": 0, "kind": "repeated_subsequence", "d_vocab": 128, "seq_len": 85, "repeat_len": 16, "n_repeats": 3, "n_sequences": 0}, "model": {"kind": "attn_only", "d_model": 48, "n_heads": 4, "d_head": 12, "d_mlp": 512, "attn_bias": False, "unembed_bias": False, "attn_rate": 1.0, "equals_token": True, "causal": True, "n_layers": 1, "layer_norm": True, "d_vocab": 128, "n_ctx": 85, "d_embed": 12, "hidden": [48], "combine": "sum", "act_fn": "relu", "frozen": []}, "train": {"epochs": 1500, "lr": 0.001, "weight_decay": 1.0, "betas": [0.9, 0.999], "warmup_steps": 0, "optimizer": "adamw", "checkpoint_every": 50, "seed": 0, "batch_size": 128}, "description": "1-layer attention-only model on the same data: the control, no induction heads and no phase change", "expect": {"phase_change": False}},
]


# The induction specs' hashes before Revision 3's layout (task.max_gap): a run directory trained on the first layout
# reads its stored spec with max_gap = -1 (that layout) and keeps this hash and its cached analyses.
FIRST_LAYOUT_HASHES = {
    'induction_1l.toml': '7b396e31e11361fd0e58637c9b58967acd8f9223058c943a9b7174d7679ffad0',
    'induction_2l.toml': 'b1474ce6c0e54a1c7b6508ed42684742d39f9cf75020b87c8db587d950c2635f',
    'induction_finite.toml': 'f2571eeaac14f1803a314ceb2dbca27575fb785dc8687afc8f0d857009b4b7ae',
}


@pytest.mark.parametrize("old", OLD_SPEC_DICTS, ids=lambda d: d["name"])
def test_a_spec_dict_written_before_the_split_reads_and_round_trips(old):
    spec = RunSpec.from_dict(old, stored=True)  # as a run directory's run.json is read
    assert spec.to_dict() == old and list(spec.to_dict()["model"]) == list(old["model"])
    key = f"{old['name']}.toml"
    assert spec.hash == FIRST_LAYOUT_HASHES.get(key, SPEC_HASHES[key])


def test_the_first_layout_hashes_are_what_the_builtin_induction_specs_hashed_to_before_max_gap():
    import dataclasses

    from claimlens.config import LEGACY_GAPS

    for key, old_hash in FIRST_LAYOUT_HASHES.items():
        spec = RunSpec.from_toml(ROOT / "fixtures" / key)
        first = dataclasses.replace(spec, task=dataclasses.replace(spec.task, max_gap=LEGACY_GAPS))
        assert first.hash == old_hash and spec.hash == SPEC_HASHES[key] != old_hash, key


def test_a_setting_of_another_kind_is_refused_naming_the_key_and_the_kind():
    from claimlens.config import MLPConfig, model_config

    with pytest.raises(SpecError, match=r"model.d_mlp is a transformer setting.*; got 64"):
        RunSpec.from_dict({"name": "x", "model": {"kind": "mlp", "d_mlp": 64}})
    with pytest.raises(SpecError, match=r"\[model\] \(kind 'mlp'\): unknown key\(s\) \['widths'\]"):
        RunSpec.from_dict({"name": "x", "model": {"kind": "mlp", "widths": [3]}})
    with pytest.raises(SpecError, match=r"task.seq_len is a setting of the repeated-subsequence task"):
        RunSpec.from_dict({"name": "x", "task": {"seq_len": 20}})
    assert model_config(kind="mlp", d_mlp=512) == MLPConfig()  # another kind's setting at its default: ignored
    # at its default *value and type*: `layer_norm = 0` is not false, `p = 113.0` not the integer 113
    with pytest.raises(SpecError, match=r"model.layer_norm .*; got 0"):
        RunSpec.from_dict({"name": "x", "model": {"kind": "transformer", "layer_norm": 0}})
    with pytest.raises(SpecError, match=r"task.p .*; got 113.0"):
        RunSpec.from_dict({"name": "x", "task": {"kind": "repeated_subsequence", "p": 113.0},
                           "model": {"kind": "attn_only"}, "train": {"batch_size": 8}})


def test_a_stored_spec_with_another_kinds_settings_still_opens(tmp_path):
    """Earlier claimlens accepted and ignored another kind's settings (an MLP's d_model): a run directory holding
    such a spec still opens (the settings are dropped; they never changed the weights), a new spec is refused."""
    data = {"name": "old_mlp", "task": {"p": 11}, "model": {"kind": "mlp", "d_model": 64, "hidden": [8]},
            "train": {"epochs": 10, "checkpoint_every": 5}}
    with pytest.raises(SpecError, match="model.d_model"):
        RunSpec.from_dict(data)
    from claimlens.config import MLPConfig

    assert RunSpec.from_dict(data, stored=True).model == MLPConfig(hidden=(8,))
