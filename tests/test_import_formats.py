"""The formats and environments of the round-3 cases (../shared/cases E3-06 … E3-11): sharded checkpoints (FSDP2
DTensors, torch.distributed.checkpoint directories), TransformerLens 4 bridge keys, wrapper prefixes in every format,
the stored dtype, a cache that cannot be written, xdist grouping by run, and run names that say which run they are.
Every input is generated here, small (p = 23)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import claimlens
from claimlens.errors import CheckpointError
from claimlens.models import fingerprint, forward
from claimlens.runs.importers import import_run, source_name
from claimlens.tasks import grid_tokens
from conftest import ROOT, tiny_spec

pytest_plugins = ["pytester"]

P = 23
EPOCHS = (0, 10, 20)


def spec(name: str = "tiny"):
    return tiny_spec(name, epochs=20, checkpoint_every=10)


def params(seed: int):
    from claimlens.models import init_params

    return init_params(spec().model, P, seed)


def write_spec(folder: Path, name: str = "tiny") -> Path:
    s = spec(name)
    m = s.model
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.toml").write_text(textwrap.dedent(f"""\
        name = "{name}"
        [task]
        p = {P}
        frac_train = {s.task.frac_train}
        split_seed = {s.task.split_seed}
        [model]
        d_model = {m.d_model}
        n_heads = {m.n_heads}
        d_head = {m.d_head}
        d_mlp = {m.d_mlp}
        [train]
        epochs = 20
        checkpoint_every = 10
        """))
    return folder / "spec.toml"


def same_weights(run, seeds: range | None = None) -> bool:
    seeds = range(len(EPOCHS)) if seeds is None else seeds
    return [fingerprint(run.checkpoint(e)) for e in run.epochs] == [fingerprint(params(s)) for s in seeds]


def python(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(claimlens.__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", script, *args], check=True, env=env, capture_output=True, text=True)


# ----------------------------------------------------------------------------- E3-07 sharded checkpoints

# FSDP2's model.state_dict() holds DTensors; a fake process group (no network) builds them in one process.
DTENSOR_WRITER = """
import sys, torch, torch.distributed as dist
from pathlib import Path
from torch.testing._internal.distributed.fake_pg import FakeStore
from claimlens.config import TransformerConfig
from claimlens.models import init_params
world, out = int(sys.argv[1]), Path(sys.argv[2])
dist.init_process_group("fake", rank=0, world_size=world, store=FakeStore())
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard
mesh = init_device_mesh("cpu", (world,))
cfg = TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64)
out.mkdir(parents=True, exist_ok=True)
for i, epoch in enumerate((0, 10, 20)):
    sd = {}
    for k, v in init_params(cfg, 23, i).items():
        local = v.chunk(world)[0].clone()   # rank 0's shard (the whole tensor on a mesh of one)
        sd[k] = DTensor.from_local(local, mesh, [Shard(0)], shape=v.shape, stride=v.stride(), run_check=False)
    torch.save({"model": sd, "epoch": epoch}, out / f"epoch_{epoch}.pt")
dist.destroy_process_group()
"""


def test_e3_07_fsdp2_dtensor_state_dicts_are_read_as_full_tensors(tmp_path):
    pytest.importorskip("torch.distributed.tensor")
    python(DTENSOR_WRITER, "1", str(tmp_path / "fsdp2"))
    write_spec(tmp_path / "fsdp2")
    run = import_run(tmp_path / "fsdp2", tmp_path / "run", progress=False)
    assert run.epochs == list(EPOCHS) and same_weights(run)
    assert any("read 16 DTensors" in c for c in run.manifest["source"]["conversions"])


def test_e3_07_one_ranks_shard_is_refused_naming_the_format_and_the_conversion(tmp_path):
    pytest.importorskip("torch.distributed.tensor")
    python(DTENSOR_WRITER, "2", str(tmp_path / "fsdp2"))
    write_spec(tmp_path / "fsdp2")
    with pytest.raises(CheckpointError) as info:
        import_run(tmp_path / "fsdp2", tmp_path / "run", progress=False)
    msg = str(info.value)
    assert "one rank's shard of a DTensor" in msg and "over 2 ranks" in msg and "full_tensor()" in msg
    assert "truncated or corrupt" not in msg and "\n" not in msg
    assert not (tmp_path / "run").exists()


def dcp_save(state: dict, folder: Path) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(state, checkpoint_id=str(folder))


def test_e3_07_dcp_directories_are_read_without_a_process_group(tmp_path):
    pytest.importorskip("torch.distributed.checkpoint")
    for i, epoch in enumerate(EPOCHS):
        dcp_save({"model": params(i)}, tmp_path / "dcp" / f"step_{epoch}")
    write_spec(tmp_path / "dcp")
    run = import_run(tmp_path / "dcp", tmp_path / "run", progress=False)
    assert run.epochs == list(EPOCHS) and same_weights(run)
    assert run.manifest["source"]["epoch_source"] == ["file name"]
    assert any("torch.distributed.checkpoint (DCP)" in c for c in run.manifest["source"]["conversions"])
    # one DCP directory is one checkpoint: its stored epoch, else --final-epoch (never a number in its name)
    dcp_save({"model": params(2), "epoch": 20}, tmp_path / "one")
    single = import_run(tmp_path / "one", tmp_path / "single", spec=spec(), progress=False)
    assert single.epochs == [20] and fingerprint(single.final()) == fingerprint(params(2))
    assert not torch.distributed.is_initialized()


def test_e3_07_a_dcp_metadata_asking_for_code_is_refused_without_running_it(tmp_path):
    pytest.importorskip("torch.distributed.checkpoint")
    dcp_save({"model": params(0)}, tmp_path / "evil")
    sentinel = tmp_path / "ran"
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    payload = pickle.dumps(Evil())
    (tmp_path / "evil" / ".metadata").write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"\.metadata of this torch\.distributed\.checkpoint \(DCP\) directory "
                                              r"asks for .*system.*dcp_to_torch"):
        import_run(tmp_path / "evil", tmp_path / "run", spec=spec(), final_epoch=0, progress=False)
    assert not sentinel.exists()


def test_e3_07_a_distcp_file_alone_is_named_as_part_of_its_directory(tmp_path):
    pytest.importorskip("torch.distributed.checkpoint")
    dcp_save({"model": params(0)}, tmp_path / "d")
    shard = next((tmp_path / "d").glob("*.distcp"))
    with pytest.raises(CheckpointError, match=r"one file of a torch\.distributed\.checkpoint \(DCP\) directory: "
                                              r"import the directory"):
        import_run(shard, tmp_path / "run", spec=spec(), final_epoch=0, progress=False)


# ----------------------------------------------------------------------------- E3-09 TransformerLens 4 bridge keys


def test_e3_09_tl4_bridge_state_dicts_convert_and_give_the_same_logits(tmp_path):
    from claimlens.models import build_bridge

    folder = tmp_path / "bridge"
    write_spec(folder)
    logits = {}
    for i, epoch in enumerate(EPOCHS):
        bridge = build_bridge(spec().model, P, params(i))
        torch.save(bridge.state_dict(), folder / f"epoch_{epoch}.pt")  # embed.weight, blocks.0.attn.q.weight, …
        with torch.no_grad():
            logits[epoch] = bridge(grid_tokens(P))[:, -1]
    assert "blocks.0.attn.q.weight" in torch.load(folder / "epoch_0.pt", weights_only=True)
    run = import_run(folder, tmp_path / "run", progress=False)
    assert same_weights(run)
    for epoch in EPOCHS:
        ours = forward(run.checkpoint(epoch), grid_tokens(P), run.spec.model).logits
        torch.testing.assert_close(ours, logits[epoch], rtol=1e-5, atol=1e-5)
    assert any("TransformerLens 4 TransformerBridge" in c for c in run.manifest["source"]["conversions"])


# ----------------------------------------------------------------------------- E3-10 wrapper prefixes everywhere


def _lightning(sd, epoch):
    return {"epoch": epoch, "global_step": epoch * 7, "pytorch-lightning_version": "2.5.0",
            "state_dict": {"model." + k: v for k, v in sd.items()}, "optimizer_states": [], "lr_schedulers": []}


@pytest.mark.parametrize("layout", ["compiled_safetensors", "lightning_ckpt", "ddp_compiled_pt"])
def test_e3_10_a_prefix_every_key_carries_is_stripped_in_every_format(tmp_path, layout):
    folder = tmp_path / layout
    write_spec(folder)
    for i, epoch in enumerate(EPOCHS):
        sd = params(i)
        if layout == "compiled_safetensors":
            save_file({"_orig_mod." + k: v for k, v in sd.items()}, folder / f"epoch_{epoch}.safetensors")
        elif layout == "lightning_ckpt":
            torch.save(_lightning(sd, epoch), folder / f"epoch={epoch}-step={epoch * 7}.ckpt")
        else:
            torch.save({"model": {"module._orig_mod." + k: v for k, v in sd.items()}}, folder / f"epoch_{epoch}.pt")
    run = import_run(folder, tmp_path / "run", progress=False)
    assert run.epochs == list(EPOCHS) and same_weights(run)
    expected = {"compiled_safetensors": ["_orig_mod."], "lightning_ckpt": ["model."],
                "ddp_compiled_pt": ["_orig_mod.", "module."]}[layout]
    assert run.manifest["source"]["stripped_prefixes"] == expected
    assert all(any(f"prefix {p!r}" in c for c in run.manifest["source"]["conversions"]) for p in expected)


@pytest.mark.parametrize("container", ["full_run", "single_safetensors", "single_lightning"])
def test_e3_10_prefixes_in_full_run_and_single_files(tmp_path, container):
    if container == "full_run":
        source = tmp_path / "full_run_data.pth"
        torch.save({"state_dicts": [{"model." + k: v for k, v in params(i).items()} for i in range(3)],
                    "epochs": list(EPOCHS)}, source)
        kwargs = {}
    elif container == "single_safetensors":
        source = tmp_path / "final.safetensors"
        save_file({"_orig_mod." + k: v for k, v in params(0).items()}, source)
        kwargs = {"final_epoch": 20}
    else:
        source = tmp_path / "last.ckpt"
        torch.save(_lightning(params(0), 20), source)
        kwargs = {}
    run = import_run(source, tmp_path / "run", spec=spec(), progress=False, **kwargs)
    assert same_weights(run, range(len(run.epochs)))
    assert run.manifest["source"]["stripped_prefixes"] == (["_orig_mod."] if "safetensors" in container else
                                                           ["model."])


def test_e3_10_a_prefix_only_some_keys_carry_is_kept(tmp_path):
    folder = tmp_path / "mixed"
    write_spec(folder)
    sd = {("model." + k if k.startswith("embed") else k): v for k, v in params(0).items()}
    save_file(sd, folder / "epoch_0.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected \['model\.embed\.W_E'\]"):
        import_run(folder, tmp_path / "run", progress=False)


# ----------------------------------------------------------------------------- E3-11 stored dtype


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_e3_11_the_stored_dtype_is_recorded_and_shown(tmp_path, dtype, capsys):
    from claimlens.cli import main

    source = tmp_path / f"full_run_{dtype}.pth"
    torch.save({"state_dicts": [{k: v.to(getattr(torch, dtype)) for k, v in params(i).items()} for i in range(3)],
                "epochs": list(EPOCHS)}, source)
    run = import_run(source, tmp_path / "run", spec=spec(), progress=False)
    assert run.manifest["source"]["stored_dtype"] == dtype
    assert run.final()["embed.W_E"].dtype == torch.float32
    expected = {k: v.to(getattr(torch, dtype)).float() for k, v in params(2).items()}
    assert fingerprint(run.final()) == fingerprint(expected), "bf16/fp16 → float32 is exact"
    assert main(["info", str(run.path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("weights"))
    assert line == ("weights    stored as float32" if dtype == "float32" else
                    f"weights    stored as {dtype} by the source; held as float32 (exactly: every such value is a "
                    f"float32)")


def test_e3_11_a_folder_of_mixed_dtypes_says_so(tmp_path):
    folder = tmp_path / "mixed"
    write_spec(folder)
    for i, epoch in enumerate(EPOCHS):
        dt = torch.bfloat16 if i else torch.float32
        save_file({k: v.to(dt) for k, v in params(i).items()}, folder / f"epoch_{epoch}.safetensors")
    run = import_run(folder, tmp_path / "run", progress=False)
    assert run.manifest["source"]["stored_dtype"] == "bfloat16, float32"


# ----------------------------------------------------------------------------- run names


def _folder_run(folder: Path, seed: int = 0) -> Path:
    write_spec(folder, name="from_the_folder_spec")
    for i, epoch in enumerate(EPOCHS):
        save_file(params(seed + i), folder / f"epoch_{epoch}.safetensors")
    return folder


def test_name_wins_over_the_spec_and_generic_folders_take_their_parents_name(tmp_path):
    a = import_run(_folder_run(tmp_path / "expA" / "checkpoints"), tmp_path / "a", progress=False)
    b = import_run(_folder_run(tmp_path / "expB" / "checkpoints", seed=5), tmp_path / "b", progress=False)
    assert (a.name, b.name) == ("expA", "expB")
    paper = import_run(tmp_path / "expA" / "checkpoints", tmp_path / "p", spec=spec("paper"), progress=False)
    assert paper.name == "paper"
    mine = import_run(tmp_path / "expA" / "checkpoints", tmp_path / "m", spec=spec("paper"), name="mine",
                      progress=False)
    assert mine.name == "mine" and mine.manifest["name"] == "mine" and mine.spec.name == "mine"
    named = import_run(tmp_path / "expB" / "checkpoints", tmp_path / "n", name="mine2", progress=False)
    assert named.name == "mine2"


@pytest.mark.parametrize("path, name", [("runs/grok_p113/checkpoints", "grok_p113"), ("x/ckpts", "x"),
                                        ("exp7/full_run_data.pth", "exp7"), ("exp7/seed3.pth", "seed3"),
                                        ("a/b/c/lightning_logs/checkpoints", "c"), ("my run/ckpt", "my_run")])
def test_source_name(tmp_path, path, name):
    source = tmp_path / path
    if source.suffix:
        source.parent.mkdir(parents=True)
        source.touch()
    else:
        source.mkdir(parents=True)
    assert source_name(source) == name


def test_merge_of_two_runs_with_one_label_says_how_to_name_them(tmp_path):
    from claimlens.report.document import merge

    def doc(content_hash):
        record = {"nodeid": "claims/test_grokking.py::test_x[run=checkpoints]", "claim_id": "x", "run": "checkpoints",
                  "outcome": "passed"}
        return {"runs": [{"label": "checkpoints", "content_hash": content_hash}], "records": [record]}

    with pytest.raises(ValueError) as info:
        merge([doc("a" * 64), doc("b" * 64)])
    msg = str(info.value)
    assert "two different runs are both labelled 'checkpoints'" in msg and "--name NAME" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="the same run judged twice"):
        merge([doc("a" * 64), doc("a" * 64)])


# ----------------------------------------------------------------------------- E3-08 a cache that cannot be written


@pytest.fixture
def unwritable_cache(tmp_path, monkeypatch):
    """A cache directory that cannot be written, whoever runs the tests (root ignores file modes): its path lies
    below a regular file."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(blocker / "cache"))
    return blocker / "cache"


def run_claims(pytester, *args):
    return pytester.runpytest_subprocess(str(ROOT / "claims"), "-p", "no:cacheprovider", "--rootdir", str(ROOT), *args)


def test_e3_08_claims_are_judged_in_memory_when_the_cache_cannot_be_written(pytester, tiny_run, tmp_path,
                                                                              monkeypatch):
    selection = ["-k", "excluded_loss_rises or restricted_loss_falls or trig_loss_all_equals_train"]
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "writable"))
    writable = run_claims(pytester, "--run", str(tiny_run.path), "--claims-report", str(tmp_path / "w"), *selection)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(blocker / "cache"))
    result = run_claims(pytester, "--run", str(tiny_run.path), "--claims-report", str(tmp_path / "r"), *selection)
    out = result.stdout.str()
    assert result.ret == writable.ret and "Traceback" not in out and "NotADirectoryError" not in out
    lines = [ln for ln in out.splitlines() if "cannot be written" in ln]
    assert len(lines) == 1 and "computed in memory" in lines[0] and "CLAIMLENS_CACHE_DIR" in lines[0]

    def outcomes(folder):
        doc = json.loads((folder / "claims.json").read_text())
        return sorted((r["nodeid"], r["outcome"]) for r in doc["records"])

    assert outcomes(tmp_path / "r") == outcomes(tmp_path / "w") and outcomes(tmp_path / "r")


def test_e3_08_a_run_to_train_into_an_unwritable_cache_is_one_error_before_any_work(pytester, tmp_path,
                                                                                    unwritable_cache):
    spec_path = write_spec(tmp_path / "specs").rename(tmp_path / "specs" / "tiny.toml")
    result = run_claims(pytester, "--run", str(spec_path), "--claims-report", str(tmp_path / "rep"), "-k", "trig")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert re.search(r"ERROR: claimlens: the cache .* cannot be written \(Not a directory\) and the run tiny is not "
                     r"in it and must be trained first: set CLAIMLENS_CACHE_DIR", err)
    assert "Traceback" not in err + result.stdout.str() and not (tmp_path / "rep").exists()


def test_e3_08_a_read_only_cache_serves_the_runs_it_holds_and_keeps_nothing_new(tmp_path, monkeypatch, tiny_run):
    """A CI-populated cache mounted read-only: its runs open without a lock file, a missing one is refused before
    training, and an analysis is returned from memory (simulated: the write probe and the lock fail as a read-only
    mount makes them fail; root ignores file modes)."""
    import filelock

    from claimlens import _io, builtin
    from claimlens.core.cache import AnalysisCache
    from claimlens.errors import CacheNotWritable
    from claimlens.training import Trainer

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    s = spec("ro")
    Trainer(s, builtin.cached_run_path(s), progress=False).train()  # what CI put there

    def read_only(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(_io, "_CACHE_UNWRITABLE", {str(tmp_path / "cache"): "Read-only file system"})
    monkeypatch.setattr(filelock, "FileLock", read_only)
    assert builtin.ensure_run(s, progress=False).name == "ro"
    with pytest.raises(CacheNotWritable, match=r"cannot be written \(Read-only file system\) and the run of spec "
                                               r"'other' is not in it and must be trained"):
        builtin.ensure_run(dataclasses.replace(s, name="other", train=dataclasses.replace(s.train, seed=99)))
    cache = AnalysisCache("series", 1)
    assert cache.save(tiny_run, {"a": 1}, {"x": torch.zeros(2)}, {}) is None
    assert cache.load(tiny_run, {"a": 1}) is None


def test_e3_08_a_failed_cache_write_is_noted_and_the_analysis_kept_in_memory(tmp_path, monkeypatch, tiny_run):
    from claimlens import _io
    from claimlens.core import cache as cache_module
    from claimlens.core.cache import AnalysisCache

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_io, "_CACHE_UNWRITABLE", {})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "save_tensors", full)
    assert AnalysisCache("series", 1).save(tiny_run, {"a": 1}, {"x": torch.zeros(2)}, {}) is None
    assert _io.cache_unwritable() == "No space left on device"


# ----------------------------------------------------------------------------- E3-06 xdist grouping by run


def test_loadgroup_keeps_each_runs_tests_in_one_worker(pytester, tiny_run, tmp_path):
    pytest.importorskip("xdist")
    result = run_claims(pytester, "--run", str(tiny_run.path), "--run", str(tiny_run.path), "-n", "2", "--dist",
                        "loadgroup", "-v", "-k", "trig_loss_all_equals_train or grokking_delayed",
                        "--claims-report", str(tmp_path))
    workers: dict[str, set[str]] = {}
    for line in result.stdout.lines:
        match = re.match(r"\[(gw\d+)\] .*(?:PASSED|FAILED|SKIPPED|ERROR) .*\[run=(tiny(?:#2)?)(?:-epoch=\d+)?\]", line)
        if match:
            workers.setdefault(match.group(2), set()).add(match.group(1))
    assert set(workers) == {"tiny", "tiny#2"}, result.stdout.str()[-3000:]
    assert all(len(w) == 1 for w in workers.values()), f"a run's tests ran in several workers: {workers}"
    nodeids = [r["nodeid"] for r in json.loads((tmp_path / "claims.json").read_text())["records"]]
    assert nodeids and not any("@" in n for n in nodeids), "test ids are those of a serial session"


@pytest.mark.parametrize("nodeid, group", [
    ("claims/test_grokking.py::test_x[run=a-b-epoch=100]", "run-a-b"),
    ("claims/test_grokking.py::test_x[run=a-b]", "run-a-b"),
    ("claims/test_grokking.py::test_x[run=a]", "run-a"),
    ("claims/test_sets.py::test_y[set=sweep]", "set-sweep"),
    ("claims/test_grokking.py::test_x[3-run=a-epoch=5]", "run-a"),
    ("tests/test_other.py::test_z", None),
    ("tests/test_other.py::test_z[1-2]", None),
])
def test_run_group_of_a_test_id(nodeid, group):
    pytest.importorskip("xdist")
    from claimlens.plugin.groups import run_group

    assert run_group(nodeid, {"run": ["a", "a-b"], "set": ["sweep"]}) == group
    if group is not None and "3-" not in nodeid:
        assert run_group(nodeid, {}) == group, "without the labels, the id alone"
