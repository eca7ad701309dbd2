"""Training through an executor (claimlens.executor): the local process pool and Dask give the same runs as serial
training at the same thread count, bit for bit; a member that fails is reported with its error and the others
finish; `claimlens train-sweep`; the executor option; the device class in the cache key (CPU keys unchanged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from claimlens import cli
from claimlens.builtin import cached_run_path
from claimlens.config import RunSpec
from claimlens.errors import RunError
from claimlens.executor import (
    DaskExecutor,
    ExecutorError,
    PoolExecutor,
    SerialExecutor,
    TrainJob,
    from_option,
    train_all,
)
from claimlens.runsets import SweepSpec, ensure_set
from conftest import tiny_spec, with_train

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


def _specs(n: int, epochs: int = 40) -> list[RunSpec]:
    return [with_train(tiny_spec(f"s{seed}"), seed=seed, epochs=epochs) for seed in range(n)]


def _checkpoints(path: str) -> list[str]:
    manifest = json.loads((Path(path) / "run.json").read_text())
    return [c["sha256"] for c in manifest["checkpoints"]]


def _sweep(tmp_path: Path, n: int = 3, epochs: int = 30) -> Path:
    base = tiny_spec()
    (tmp_path / "tiny.toml").write_text(
        'name = "tiny"\n[task]\np = 23\nfrac_train = 0.5\nsplit_seed = 1\n[model]\nd_model = 32\nn_heads = 4\n'
        f'd_head = 8\nd_mlp = 64\n[train]\nepochs = {epochs}\ncheckpoint_every = 10\nlr = 3e-3\nseed = 7\n')
    assert RunSpec.from_toml(tmp_path / "tiny.toml").hash == with_train(base, epochs=epochs).hash
    path = tmp_path / "sweep.toml"
    path.write_text(f'name = "seeds"\nbase = "tiny.toml"\n[axes]\n"train.seed" = {list(range(n))}\n')
    return path


@pytest.mark.slow
def test_the_pool_trains_the_same_runs_as_serial_training_at_the_same_thread_count(tmp_path, monkeypatch, capsys):
    """Three runs in a pool of two processes × 1 thread and one after another in this process with 1 thread: the
    same checkpoints (sha256 of every file) and content hashes; run.json records the thread count and executor,
    and `claimlens info` says where the run was trained."""
    specs = _specs(3)
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "serial"))
    serial = train_all([TrainJob(s, "cpu") for s in specs], SerialExecutor(threads=1), progress=False)
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "pool"))
    pool = train_all([TrainJob(s, "cpu") for s in specs], PoolExecutor(workers=2, threads=1), progress=False)
    assert not serial.failed and not pool.failed
    assert [r.content_hash for r in pool.results] == [r.content_hash for r in serial.results]
    assert [_checkpoints(r.path) for r in pool.results] == [_checkpoints(r.path) for r in serial.results]
    assert len({r.content_hash for r in pool.results}) == 3  # three seeds: three different runs
    assert all(Path(r.path).parent.parent == tmp_path / "pool" for r in pool.results)  # into the shared cache
    for result, executor in [(serial.results[0], "serial"), (pool.results[0], "pool")]:
        source = json.loads((Path(result.path) / "run.json").read_text())["source"]
        assert (source["threads"], source["executor"], source["device_class"]) == (1, executor, "cpu")
    again = train_all([TrainJob(s, "cpu") for s in specs], PoolExecutor(workers=2, threads=1), progress=False)
    assert [r.trained for r in again.results] == [False] * 3  # cached: nothing trained twice
    capsys.readouterr()
    assert cli.main(["info", pool.results[0].path]) == 0
    assert "source     trained on cpu, 1 thread, pool" in capsys.readouterr().out


@pytest.mark.slow
def test_a_sweep_through_dask_gives_the_members_and_hashes_of_serial_training(tmp_path, monkeypatch):
    """A LocalCluster made for the call, and a running scheduler given by its address."""
    sweep = SweepSpec.from_toml(_sweep(tmp_path))
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "serial"))
    serial = ensure_set(sweep, device="cpu", progress=False, executor=SerialExecutor(threads=1))
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "dask"))
    import os

    environ = dict(os.environ)
    dask = ensure_set(sweep, device="cpu", progress=False, executor=DaskExecutor(workers=2, threads=1))
    # distributed's worker settings (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS) do not leak into this process, where a
    # training pool spawned later would inherit them (a malloc trim that slowed pooled training 1.4–1.6×)
    assert dict(os.environ) == environ
    assert dask.labels == serial.labels == ["seeds-seed=0", "seeds-seed=1", "seeds-seed=2"]
    assert [v for v, _ in dask.members] == [v for v, _ in serial.members]
    assert [r.content_hash for _, r in dask.members] == [r.content_hash for _, r in serial.members]
    assert [_checkpoints(r.path) for _, r in dask.members] == [_checkpoints(r.path) for _, r in serial.members]
    assert all(r.manifest["source"]["executor"] == "dask" for _, r in dask.members)
    # a running scheduler, by its address (Client(address)), as on a cluster: the same runs again
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "scheduler"))
        remote = ensure_set(sweep, device="cpu", progress=False, executor=f"dask:{cluster.scheduler_address}")
    assert [r.content_hash for _, r in remote.members] == [r.content_hash for _, r in serial.members]
    assert all(r.path.parent.parent == tmp_path / "scheduler" for _, r in remote.members)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["pool:2", "dask:local:2"])
def test_a_member_that_fails_is_reported_with_its_error_and_the_others_finish(tmp_path, monkeypatch, capsys,
                                                                              executor):
    """`claimlens train-sweep`: a member whose cache folder is taken by a file fails with that error, the other two
    are trained (exit 1); a second call trains nothing more and reports the same failure."""
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    path = _sweep(tmp_path)
    members = SweepSpec.from_toml(path).members()
    blocked = cached_run_path(members[1].spec, "cpu")
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a run directory")
    code = cli.main(["train-sweep", str(path), "--executor", executor, "--device", "cpu", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1, out
    lines = {line.split()[1]: line for line in out.splitlines() if line.split()[:1] in (["trained"], ["failed"])}
    assert lines["seeds-seed=1"].startswith("failed") and "NotADirectoryError" in lines["seeds-seed=1"], out
    assert lines["seeds-seed=0"].startswith("trained") and lines["seeds-seed=2"].startswith("trained"), out
    assert "2 trained, 0 cached, 1 failed" in out
    assert cli.main(["train-sweep", str(path), "--executor", executor, "--device", "cpu", "--quiet"]) == 1
    assert "0 trained, 2 cached, 1 failed" in capsys.readouterr().out
    with pytest.raises(RunError, match=r"1 of 3 members failed to train: seeds-seed=1: NotADirectoryError"):
        ensure_set(SweepSpec.from_toml(path), device="cpu", progress=False, executor=executor)


@pytest.mark.parametrize(("value", "kind", "attrs"), [
    ("serial", SerialExecutor, {}),
    ("pool", PoolExecutor, {}),
    ("pool:3", PoolExecutor, {"workers": 3}),
    ("dask", DaskExecutor, {"address": None}),
    ("dask:local:2", DaskExecutor, {"address": None, "workers": 2}),
    ("dask:tcp://10.0.0.1:8786", DaskExecutor, {"address": "tcp://10.0.0.1:8786", "threads": 1}),
    ("tls://scheduler:8786", DaskExecutor, {"address": "tls://scheduler:8786"}),
])
def test_the_executor_option_names_an_executor(value, kind, attrs):
    executor = from_option(value)
    assert type(executor) is kind and all(getattr(executor, k) == v for k, v in attrs.items())


def test_the_pool_and_a_local_cluster_share_the_cores_out(monkeypatch):
    """processes × threads = cores (at least one thread each)."""
    monkeypatch.setattr("claimlens.executor.cores", lambda: 8)
    assert (PoolExecutor().workers, PoolExecutor().threads) == (8, 1)
    assert (PoolExecutor(workers=2).workers, PoolExecutor(workers=2).threads) == (2, 4)
    assert (PoolExecutor(workers=16).threads, DaskExecutor(workers=4).threads) == (1, 2)


def test_the_executor_comes_from_the_environment_and_a_bad_one_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("CLAIMLENS_EXECUTOR", "serial")
    assert isinstance(from_option(None), SerialExecutor) and isinstance(from_option("pool"), PoolExecutor)
    monkeypatch.setenv("CLAIMLENS_EXECUTOR", "threads")
    with pytest.raises(ExecutorError, match=r"^executor 'threads' \(from \$CLAIMLENS_EXECUTOR\) is not one of pool"):
        from_option(None)
    with pytest.raises(ExecutorError, match=r"'0' is not a number of workers"):
        from_option("pool:0")


def test_dask_missing_is_one_clear_error(monkeypatch):
    for name in ("dask", "dask.distributed"):  # the import fails as when Dask is not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ExecutorError, match=r"needs Dask distributed, which is not installed: pip install "
                                            r"'claimlens\[dask\]'"):
        DaskExecutor().map([TrainJob(tiny_spec(), "cpu")])


def test_a_bad_executor_option_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--claims-executor", "slurm", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--claims-executor: executor 'slurm' is not one of pool*"])


def test_a_device_that_is_not_there_is_a_usage_error_before_anything_runs(pytester):
    """--claims-device tpu (not a torch device) or cuda on a machine without one: one line and exit 4 at start-up,
    not a traceback from the session's end with no report."""
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--claims-device", "tpu", "-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--claims-device: device 'tpu' is not a torch device; use cpu, cuda, cuda:N or auto*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_the_device_class_is_in_the_cache_key_of_a_gpu_run_only():
    """CPU runs keep the key they had (the spec's hash, pinned in test_config.py); a CUDA run of the same spec has
    another; the key is a function of the spec's hash and the class, nothing else."""
    spec = tiny_spec()
    assert spec.key() == spec.key("cpu") == spec.hash
    assert spec.key("cuda") != spec.hash and spec.key("cuda") == with_train(spec).key("cuda")
    assert spec.key("cuda") != spec.key("mps") and spec.key("cuda") != with_train(spec, seed=8).key("cuda")
    with pytest.raises(Exception, match="device class must be a torch device type"):
        spec.key("cuda:0")


def test_auto_trains_on_cuda_when_it_is_available_and_keys_the_run_by_it(monkeypatch, tmp_path):
    """No GPU here: torch is told CUDA is available, and the path of an `auto` run is the CUDA key's; `cpu` keeps the
    CPU's."""
    import torch

    from claimlens import training

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path))
    spec = tiny_spec()
    training._device_class.cache_clear()
    try:
        assert training.device_class("auto") == "cpu" or torch.cuda.is_available()
        assert cached_run_path(spec, "auto").name == f"tiny-{spec.key(training.device_class('auto'))[:16]}"
        training._device_class.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert training.device_class("auto") == training.device_class("cuda") == "cuda"
        assert cached_run_path(spec, "auto").name == f"tiny-{spec.key('cuda')[:16]}"
        assert cached_run_path(spec, "cpu").name == f"tiny-{spec.hash[:16]}"
    finally:
        training._device_class.cache_clear()


def test_a_run_begun_on_one_device_class_is_not_resumed_on_another(tmp_path):
    from claimlens.runs.store import RunWriter
    from claimlens.tasks import ModularAddition
    from claimlens.training import Trainer

    spec = tiny_spec()
    RunWriter.create(tmp_path / "run", spec, ModularAddition.from_config(spec.task),
                     {"kind": "trained", "device": "cuda:0", "device_class": "cuda", "threads": 1})
    with pytest.raises(RunError, match=r"holds a run begun on cuda; resume it there \(--device cuda\)"):
        Trainer(spec, tmp_path / "run", device="cpu", progress=False).train()


def test_the_runs_table_says_where_each_run_was_trained():
    from claimlens.report.html import _trained_on

    assert _trained_on({"source": {"kind": "trained", "device": "cpu", "device_class": "cpu", "threads": 1,
                                   "executor": "pool"}}) == "cpu, 1 thread, pool"
    assert _trained_on({"source": {"kind": "trained", "device": "cuda:0", "device_class": "cuda", "threads": 8,
                                   "executor": "dask"}}) == "cuda, 8 threads, dask"
    assert _trained_on({"source": {"kind": "trained", "device": "cpu"}}) == "cpu"  # an older claimlens's run
    assert _trained_on({"source": {"kind": "imported"}}) == "imported" and _trained_on({}) == ""


@pytest.mark.slow
def test_a_session_trains_its_missing_runs_up_front_and_a_failure_is_its_claims_error(pytester, tmp_path,
                                                                                     monkeypatch):
    """`pytest claims/ --run SWEEP.toml`: the two members are trained before the first test on the pool (one line
    names them, one says what became of them); the member that could not be trained is named there, and its claims
    are errors with that message while the other member is judged."""
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    path = _sweep(tmp_path, n=2, epochs=120)  # 13 checkpoints: enough for the trajectory claim
    blocked = cached_run_path(SweepSpec.from_toml(path).members()[1].spec, "cpu")
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a run directory")
    root = Path(__file__).resolve().parents[1]
    result = pytester.runpytest_subprocess(str(root / "claims" / "test_grokking.py"), "-p", "no:cacheprovider",
                                           "--rootdir", str(root), "--run", str(path), "-k", "grokking_delayed",
                                           "--claims-executor", "pool:2", "--claims-report", str(tmp_path / "rep"))
    result.stdout.fnmatch_lines([
        "claimlens: first use of 2 runs (seeds-seed=0, seeds-seed=1): trained now on CPU on a pool of 2 processes *",
        "claimlens: trained 1 of 2 runs in * s: failed: seeds-seed=1: NotADirectoryError*"])
    records = {r["run"]: r for r in json.loads((tmp_path / "rep" / "claims.json").read_text())["records"]}
    assert records["seeds-seed=0"]["outcome"] in ("passed", "failed")  # judged
    assert records["seeds-seed=1"]["outcome"] == "error"
    assert "training failed: NotADirectoryError" in records["seeds-seed=1"]["message"]
    runs = {r["label"]: r for r in json.loads((tmp_path / "rep" / "claims.json").read_text())["runs"]}
    assert runs["seeds-seed=0"]["source"]["executor"] == "pool" and runs["seeds-seed=0"]["source"]["threads"] == 1
