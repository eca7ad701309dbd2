"""Training through an executor: every run a session, ``claimlens train`` or ``claimlens train-sweep`` trains goes
through :func:`train_all`, which hands the runs the cache lacks to one :class:`Executor`.

* ``pool`` (the default): a local process pool over the machine's cores, ``workers`` processes (default: the number
  of cores) of ``cores // workers`` intra-op threads each, so that processes × threads = cores. A single run is
  trained in the calling process with the same thread count (no process to start), so it gets the same bits.
* ``serial``: one run after another in the calling process, with its own torch thread count.
* ``dask``: Dask distributed (``pip install 'claimlens[dask]'``): a ``LocalCluster`` of ``cores`` one-thread workers
  (``dask``, ``dask:local``), or the running scheduler at an address (``dask:tcp://HOST:8786``, or the address
  alone); for SLURM/PBS, start the scheduler and workers with dask-jobqueue (README, "Training on a cluster").

Chosen by ``--claims-executor`` (pytest), ``--executor`` (the CLI) or ``$CLAIMLENS_EXECUTOR``; :func:`from_option`
reads the values. Every executor trains into the shared cache (``$CLAIMLENS_CACHE_DIR``, passed to the workers, which
must see the same folder), through :func:`claimlens.builtin.ensure_run`: its file lock makes one trainer per run,
however many sessions or workers ask for it.

Each run records in run.json's ``source`` the intra-op thread count it trained with (``threads``: CPU results depend
on it), the device it trained on and the executor (``executor``). The same spec trained with the same thread count
on the same machine gives the same checkpoints whichever executor trains it (tests/test_executor.py).

A run that fails to train is a :class:`TrainResult` with its ``error``; the others still finish.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claimlens.config import RunSpec
from claimlens.errors import ClaimlensError

ENV = "CLAIMLENS_EXECUTOR"  # the executor when no option names one
DEFAULT = "pool"
KINDS = ("pool", "pool:N", "serial", "dask", "dask:local", "dask:ADDRESS")


class ExecutorError(ClaimlensError):
    """An executor that cannot be made: an unknown name, or Dask asked for and not installed."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class TrainJob:
    """One run to train: ``spec`` on ``device`` into the cache, or into the run directory ``out`` when given
    (``claimlens train --out``). ``label``: how reports name it (a sweep member's label; default the spec's name)."""

    spec: RunSpec
    device: str = "auto"
    out: str | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.spec.name


@dataclass
class TrainResult:
    """What became of one :class:`TrainJob`: the run directory and its content hash, or the ``error`` (one line,
    ``Type: message``) that stopped it. ``trained``: False when the cache already held it (nothing was done).
    ``threads``, ``device``: what it trained with (run.json's ``source``); ``seconds``: wall time in the worker."""

    label: str
    path: str | None = None
    content_hash: str | None = None
    error: str | None = None
    trained: bool = True
    seconds: float = 0.0
    threads: Any = None
    device: str | None = None
    executor: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _train_job(job: TrainJob, cache: str | None, threads: int | None, executor: str,
               progress: bool = False) -> TrainResult:
    """Train one job where this runs (the calling process, a pool process or a Dask worker), with ``threads``
    intra-op threads (None: the process's own), into ``cache`` (None: this process's). ``progress``: a bar over its
    epochs (in the calling process only). Never raises: an error is the result's ``error``."""
    import torch

    t0 = time.perf_counter()
    before = torch.get_num_threads()
    saved_cache = os.environ.get("CLAIMLENS_CACHE_DIR")
    try:
        if cache is not None:
            os.environ["CLAIMLENS_CACHE_DIR"] = cache
        if threads is not None:
            torch.set_num_threads(threads)
        provenance = {"executor": executor}
        if job.out is not None:
            from claimlens.training import Trainer

            run = Trainer(job.spec, job.out, device=job.device, progress=progress, provenance=provenance).train()
        else:
            from claimlens.builtin import ensure_run

            run = ensure_run(job.spec, device=job.device, progress=progress, provenance=provenance)
        source = run.manifest["source"]
        return TrainResult(job.name, str(run.path), run.content_hash, seconds=time.perf_counter() - t0,
                           threads=source.get("threads"), device=source.get("device"),
                           executor=str(source.get("executor", "")))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        return TrainResult(job.name, error=_one_line(exc), seconds=time.perf_counter() - t0, threads=threads,
                           executor=executor)
    finally:
        if threads is not None:
            torch.set_num_threads(before)
        if cache is not None:
            if saved_cache is None:
                os.environ.pop("CLAIMLENS_CACHE_DIR", None)
            else:
                os.environ["CLAIMLENS_CACHE_DIR"] = saved_cache


def _one_line(exc: BaseException) -> str:
    """A claimlens error's own message; any other exception's type and message."""
    return str(exc) if isinstance(exc, ClaimlensError) else f"{type(exc).__name__}: {exc}"


def _init_worker(threads: int) -> None:
    """A pool process: ``threads`` intra-op threads (and as many for the inter-op pool, which torch otherwise sizes
    to the cores)."""
    import torch

    torch.set_num_threads(threads)


@dataclass
class Executor:
    """Trains a list of :class:`TrainJob` somewhere; :meth:`map` returns one :class:`TrainResult` per job, in order,
    and never raises for a failing job. ``done`` (optional) is called with each result as it arrives; ``progress``:
    a bar over the epochs of each run trained in the calling process."""

    name: str = ""

    def describe(self) -> str:
        return self.name

    def map(self, jobs: Sequence[TrainJob], done=None, progress: bool = False) -> list[TrainResult]:
        raise NotImplementedError


@dataclass
class SerialExecutor(Executor):
    """One job after another in this process, with ``threads`` intra-op threads (None: the process's own)."""

    name: str = "serial"
    threads: int | None = None

    def describe(self) -> str:
        import torch

        threads = self.threads or torch.get_num_threads()
        return f"serially in this process ({threads} thread{'s' * (threads != 1)})"

    def map(self, jobs, done=None, progress=False):
        out = []
        for job in jobs:
            result = _train_job(job, None, self.threads, self.name, progress)
            out.append(result)
            if done is not None:
                done(result)
        return out


@dataclass
class PoolExecutor(Executor):
    """A process pool of ``workers`` processes (default: the cores) with ``threads`` intra-op threads each (default:
    ``cores // workers``, at least 1). A single job, and jobs on a GPU (several small runs sharing one GPU gain
    little, and each process would hold its own CUDA context), are trained in this process with the same thread
    count."""

    name: str = "pool"
    workers: int = 0
    threads: int = 0

    def __post_init__(self):
        n = cores()
        self.workers = self.workers or n
        self.threads = self.threads or max(1, n // self.workers)

    def describe(self) -> str:
        return (f"on a pool of {self.workers} process{'es' * (self.workers != 1)} × {self.threads} "
                f"thread{'s' * (self.threads != 1)}")

    def map(self, jobs, done=None, progress=False):
        from claimlens.training import device_class

        local = [i for i, job in enumerate(jobs) if device_class(job.device) != "cpu"]
        remote = [i for i in range(len(jobs)) if i not in local]
        if len(remote) <= 1 or self.workers == 1:
            local, remote = list(range(len(jobs))), []
        results: dict[int, TrainResult] = {}
        if remote:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: a fork of a process whose torch thread pools are running can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(self.workers, len(remote)), mp_context=context, initializer=_init_worker,
                                     initargs=(self.threads,)) as pool:
                futures = {pool.submit(_train_job, jobs[i], str(_cache()), self.threads, self.name): i
                           for i in remote}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
                        results[i] = TrainResult(jobs[i].name, error=_one_line(exc),
                                                 threads=self.threads, executor=self.name)
                    if done is not None:
                        done(results[i])
        for i in local:
            results[i] = _train_job(jobs[i], None, self.threads, self.name, progress)
            if done is not None:
                done(results[i])
        return [results[i] for i in range(len(jobs))]


@dataclass
class DaskExecutor(Executor):
    """Dask distributed: the scheduler at ``address``, or (``address`` None) a ``LocalCluster`` of ``workers``
    processes (default: the cores) with one task thread each, made for this call and closed after it. Each task trains
    with ``threads`` intra-op threads (default: ``cores // workers`` on a LocalCluster, 1 on a scheduler's workers:
    start them with ``--nthreads 1``). The workers write into this process's cache folder, which they must see at the
    same path (a shared file system on a cluster)."""

    name: str = "dask"
    address: str | None = None
    workers: int = 0
    threads: int = 0

    def __post_init__(self):
        n = cores()
        self.workers = self.workers or n
        self.threads = self.threads or (max(1, n // self.workers) if self.address is None else 1)

    def describe(self) -> str:
        where = (f"a Dask LocalCluster of {self.workers} worker{'s' * (self.workers != 1)}" if self.address is None
                 else f"the Dask scheduler at {self.address}")
        return f"on {where} × {self.threads} thread{'s' * (self.threads != 1)}"

    def map(self, jobs, done=None, progress=False):
        if not jobs:
            return []
        distributed = _dask()
        # distributed writes its workers' settings (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, …) into this process's
        # environment, where every process spawned later (a training pool) would inherit them: an aggressive malloc
        # trim made pooled training 1.4–1.6× slower per run after a Dask sweep (bench/bench_training.py). Restored below.
        environ = dict(os.environ)
        cluster = None
        if self.address is None:
            import logging

            cluster = distributed.LocalCluster(n_workers=min(self.workers, len(jobs)), threads_per_worker=1,
                                               processes=True, dashboard_address=None,
                                               silence_logs=logging.ERROR)
        try:
            client = distributed.Client(cluster if cluster is not None else self.address)
        except OSError as exc:
            if cluster is not None:
                cluster.close()
            os.environ.clear()
            os.environ.update(environ)
            raise ExecutorError(f"cannot reach the Dask scheduler at {self.address!r}: {exc}") from None
        results: dict[int, TrainResult] = {}
        try:
            cache = str(_cache())
            futures = [client.submit(_train_job, job, cache, self.threads, self.name, pure=False,
                                     key=f"claimlens-train-{i}-{job.spec.key()[:12]}-{os.getpid()}-{time.time_ns()}")
                       for i, job in enumerate(jobs)]
            index = {f.key: i for i, f in enumerate(futures)}
            for future in distributed.as_completed(futures):
                i = index[future.key]
                try:
                    results[i] = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker lost (KilledWorker), a task that did not unpickle
                    results[i] = TrainResult(jobs[i].name, error=_one_line(exc), executor=self.name)
                if done is not None:
                    done(results[i])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
            os.environ.clear()
            os.environ.update(environ)
        return [results[i] for i in range(len(jobs))]


def _dask():
    """``dask.distributed``, imported on first use; :class:`ExecutorError` saying how to install it when missing."""
    try:
        import dask.distributed as distributed  # noqa: PLR0402 - import fails when the submodule is missing
    except ImportError:
        raise ExecutorError("the dask executor needs Dask distributed, which is not installed: pip install "
                            "'claimlens[dask]' (or 'dask[distributed]'); the default executor is the local pool "
                            "(--claims-executor pool)") from None
    return distributed


def _cache() -> Path:
    from claimlens._io import cache_dir

    return cache_dir().resolve()


def from_option(value: str | None = None) -> Executor:
    """The executor ``value`` names (None or empty: ``$CLAIMLENS_EXECUTOR``, else ``pool``): ``pool``, ``pool:N``
    (N processes), ``serial``, ``dask`` / ``dask:local`` (a LocalCluster; ``dask:local:N``: N workers),
    ``dask:ADDRESS`` or a bare scheduler address (``tcp://HOST:8786``). Raises :class:`ExecutorError` (one line)
    for anything else; Dask is imported only when the executor is used."""
    given = value if value else os.environ.get(ENV) or DEFAULT
    text = given.strip()
    where = f"executor {given!r}" + (f" (from ${ENV})" if not value and os.environ.get(ENV) else "")

    def count(part: str) -> int:
        if not part.isdigit() or int(part) < 1:
            raise ExecutorError(f"{where}: {part!r} is not a number of workers (a positive integer)")
        return int(part)

    if text == "serial":
        return SerialExecutor()
    if text == "pool":
        return PoolExecutor()
    if text.startswith("pool:"):
        return PoolExecutor(workers=count(text[len("pool:"):]))
    if text in ("dask", "dask:local"):
        return DaskExecutor()
    if text.startswith("dask:local:"):
        return DaskExecutor(workers=count(text[len("dask:local:"):]))
    text = text.removeprefix("dask:")
    if "://" in text:
        return DaskExecutor(address=text)
    raise ExecutorError(f"{where} is not one of {', '.join(KINDS)} (or a Dask scheduler address, tcp://HOST:PORT)")


@dataclass
class Trained:
    """The results of :func:`train_all`, in the order of its jobs, and how long it took."""

    results: list[TrainResult] = field(default_factory=list)
    seconds: float = 0.0
    executor: str = ""

    @property
    def failed(self) -> list[TrainResult]:
        return [r for r in self.results if not r.ok]


def train_all(jobs: Iterable[TrainJob], executor: Executor | str | None = None, *, progress: bool = True,
              desc: str = "train") -> Trained:
    """Train every job whose run the cache lacks (a job with ``out`` always goes to the executor), through
    ``executor`` (an :class:`Executor`, a name for :func:`from_option`, or None: ``$CLAIMLENS_EXECUTOR``, else the
    pool); the cached ones are results with ``trained = False``. One progress bar counts runs. Raises only for an
    executor that cannot be made (:class:`ExecutorError`) or a cache that cannot be written
    (:class:`claimlens.errors.CacheNotWritable`, before any training); a run that fails is its result's ``error``."""
    from claimlens.builtin import cached_run_path, check_cache_writable, is_cached

    jobs = list(jobs)
    if not isinstance(executor, Executor):
        executor = from_option(executor)
    t0 = time.perf_counter()
    results: dict[int, TrainResult] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        if job.out is None and is_cached(job.spec, job.device):
            results[i] = TrainResult(job.name, str(cached_run_path(job.spec, job.device)), trained=False)
        else:
            todo.append(i)
    if any(jobs[i].out is None for i in todo):
        names = [jobs[i].name for i in todo if jobs[i].out is None]
        check_cache_writable(f"the run{'s' * (len(names) > 1)} {', '.join(names)} must be trained")
    bar = None
    if progress and len(todo) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{desc}: {len(todo)} run{'s' * (len(todo) != 1)} {executor.describe()}",
                   unit="run", dynamic_ncols=True)

    def done(result: TrainResult) -> None:  # the callers report each result (a failure with its error)
        if bar is not None:
            bar.update(1)

    try:
        for i, result in zip(todo, executor.map([jobs[i] for i in todo], done, progress)):
            results[i] = result
    finally:
        if bar is not None:
            bar.close()
    return Trained([results[i] for i in range(len(jobs))], time.perf_counter() - t0, executor.describe())
