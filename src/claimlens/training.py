"""The trainer: full-batch AdamW on modular addition (or minibatches of sequences for the induction toy), writing
through the run store.

One epoch is one optimiser step on all training pairs. At epoch ``e`` the parameters are those
after ``e`` steps; the log row for ``e`` holds their train/test loss and accuracy (cross entropy
in float64), and the checkpoint for ``e`` holds them too. Deterministic: the same spec on the same
machine with the same intra-op thread count (``torch.get_num_threads()``, recorded in run.json's ``source.threads``:
CPU kernels split their sums by it) gives bit-identical checkpoints, and a run killed at any point and started again continues
from its last checkpoint as if it had never stopped.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from claimlens import __version__
from claimlens._io import load_tensors, save_tensors
from claimlens.config import RunSpec
from claimlens.core.losses import cross_entropy_f64
from claimlens.errors import RunError
from claimlens.models import forward, frozen_params, init_params
from claimlens.runs.manifest import MANIFEST
from claimlens.runs.store import RESUME, Run, RunWriter
from claimlens.tasks import ModularAddition, RepeatedSubsequence

Callback = Callable[[int, dict[str, float]], None]


def lr_factor(step: int, warmup_steps: int) -> float:
    """``min(step / warmup_steps, 1)``, step counted from 0 as in the paper's LambdaLR."""
    return 1.0 if warmup_steps == 0 else min(step / warmup_steps, 1.0)


def minibatch_rows(seed: int, step: int, n: int, batch_size: int) -> torch.Tensor:
    """Rows of the training set for one minibatch step, drawn with replacement. Seeded by (seed, step)
    alone, so a resumed run draws the same batches as an uninterrupted one."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n, (batch_size,), generator=gen)


def resolve_device(device: str) -> torch.device:
    """The torch device ``device`` names: ``auto`` is CUDA when available, else the CPU. Raises :class:`RunError`
    for CUDA where there is none, or a name torch does not know."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"device {device!r} was asked for but CUDA is not available here; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise RunError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or auto") from None


def device_class(device: str) -> str:
    """The class of ``device`` (``"cpu"``, ``"cuda"``, ``"mps"``: the torch device type, no index), the part of a
    run's cache key that says where it was trained (:meth:`claimlens.config.RunSpec.key`). ``cpu`` is answered
    without importing torch; ``auto`` asks torch whether CUDA is available (once per process)."""
    if device == "cpu":
        return "cpu"
    return _device_class(device)


@functools.cache
def _device_class(device: str) -> str:
    return resolve_device(device).type


class Trainer:
    """Trains one spec into one run directory.

    >>> Trainer(RunSpec.from_toml("fixtures/default.toml"), "runs/default").train()  # doctest: +SKIP
    """

    def __init__(self, spec: RunSpec, out: str | Path, *, device: str = "cpu", progress: bool = True,
                 callbacks: tuple[Callback, ...] = (), provenance: dict | None = None):
        self.spec = spec.validate()
        self.out = Path(out)
        self.device = resolve_device(device)
        self.progress = progress
        self.callbacks = callbacks
        self.provenance = dict(provenance or {})  # recorded in run.json's source (e.g. the executor that trained it)

    def train(self) -> Run:
        if self.spec.task.is_sequences:
            return self._train_sequences()
        spec, device = self.spec, self.device
        task = ModularAddition.from_config(spec.task)
        writer, params, opt_state, start = self._start_or_resume(task)

        tokens, labels = task.tokens.to(device), task.labels.to(device)
        tr, te = task.train_idx.to(device), task.test_idx.to(device)
        x_train, y_train, x_test, y_test = tokens[tr], labels[tr], tokens[te], labels[te]
        params, trainable, optimizer = self._parameters(params, opt_state)
        cfg = spec.train

        def step(epoch: int, checkpoint: bool):
            if cfg.batch_size:
                with torch.no_grad():
                    logits = forward(params, x_train, spec.model).logits
                rows = minibatch_rows(cfg.seed, epoch, len(y_train), cfg.batch_size).to(device)
                loss_for_step = cross_entropy_f64(forward(params, x_train[rows], spec.model).logits, y_train[rows])
                loss = cross_entropy_f64(logits, y_train)
            else:
                logits = forward(params, x_train, spec.model).logits
                loss = loss_for_step = cross_entropy_f64(logits, y_train)
            with torch.no_grad():
                test_logits = forward(params, x_test, spec.model).logits
                row = {
                    "epoch": epoch,
                    "train_loss": loss.item(),
                    "test_loss": cross_entropy_f64(test_logits, y_test).item(),
                    "train_acc": (logits.argmax(-1) == y_train).double().mean().item(),
                    "test_acc": (test_logits.argmax(-1) == y_test).double().mean().item(),
                }
            return row, loss_for_step

        def postfix(row):
            return {"train": f"{row['train_loss']:.2e}", "test": f"{row['test_loss']:.2e}",
                    "test_acc": f"{row['test_acc']:.3f}"}

        return self._loop(writer, params, optimizer, trainable, start, step, postfix, unit="epoch")

    def _train_sequences(self) -> Run:
        """The induction toy: one step per "epoch" on ``batch_size`` sequences (fresh, or drawn from the finite
        training set); next-token cross entropy on the scored positions (:class:`RepeatedSubsequence`).

        Log rows: ``train_loss`` / ``train_acc`` of the step's batch (measured before the update, as for modular
        addition); ``test_loss`` / ``test_acc`` on the held-out sequences at checkpoint steps only (NaN between:
        with fresh data the batch itself is never-seen data)."""
        from claimlens.models.attn_only import forward as attn_forward

        spec, device, cfg = self.spec, self.device, self.spec.train
        task = RepeatedSubsequence.from_config(spec.task)
        writer, params, opt_state, start = self._start_or_resume(task)
        params, trainable, optimizer = self._parameters(params, opt_state)
        held_out = task.held_out()
        held_tokens, held_scored = held_out.tokens.to(device), task.scored(held_out).to(device)

        def loss_acc(tokens, scored):
            logits = attn_forward(params, tokens, spec.model)[:, :-1][scored]  # [n_scored, d_vocab]
            targets = tokens[:, 1:][scored]
            return cross_entropy_f64(logits, targets), (logits.argmax(-1) == targets).double().mean()

        def step(n: int, checkpoint: bool):
            batch = task.train_batch(cfg.seed, n, cfg.batch_size)
            loss, acc = loss_acc(batch.tokens.to(device), task.scored(batch).to(device))
            row = {"epoch": n, "train_loss": loss.item(), "test_loss": math.nan, "train_acc": acc.item(),
                   "test_acc": math.nan}
            if checkpoint:
                with torch.no_grad():
                    test_loss, test_acc = loss_acc(held_tokens, held_scored)
                row.update(test_loss=test_loss.item(), test_acc=test_acc.item())
            return row, loss

        def postfix(row):
            return {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}

        return self._loop(writer, params, optimizer, trainable, start, step, postfix, unit="step")

    def _parameters(self, params, opt_state):
        """The parameters on the device (frozen ones without gradients), the trainable names, and the optimiser
        (its state restored when resuming)."""
        spec, device = self.spec, self.device
        frozen = frozen_params(spec.model, spec.modulus)
        params = {k: v.to(device).requires_grad_(k not in frozen) for k, v in params.items()}
        trainable = [k for k in params if k not in frozen]
        optimizer = self._optimizer([params[k] for k in trainable])
        if opt_state is not None:
            _restore_optimizer(optimizer, trainable, opt_state, device)
        return params, trainable, optimizer

    def _loop(self, writer: RunWriter, params, optimizer, trainable, start: int, step, postfix, *, unit: str) -> Run:
        """Epochs ``start … epochs``: ``step(epoch, is_checkpoint) → (log row, loss to step on)``, the log and the
        checkpoints written through ``writer``, then the optimiser step (none after the last epoch)."""
        cfg = self.spec.train
        schedule = set(cfg.checkpoint_epochs)
        pending: list[dict[str, float]] = []
        bar = _progress(start, cfg.epochs, self.spec.name, self.progress, unit=unit)
        t0 = time.perf_counter()
        for epoch in range(start, cfg.epochs + 1):
            row, loss_for_step = step(epoch, epoch in schedule)
            pending.append(row)
            for callback in self.callbacks:
                callback(epoch, row)
            if epoch in schedule:
                self._checkpoint(writer, epoch, params, optimizer, trainable, pending)
                pending = []
            if bar is not None:
                bar.update(1)
                if epoch % 50 == 0 or epoch == cfg.epochs:  # the bar ends on the final values
                    bar.set_postfix(**postfix(row))
            if epoch == cfg.epochs:
                break
            optimizer.param_groups[0]["lr"] = cfg.lr * lr_factor(epoch, cfg.warmup_steps)
            optimizer.zero_grad(set_to_none=True)
            loss_for_step.backward()
            optimizer.step()
        if bar is not None:
            bar.close()
        writer.set_source(train_seconds=round(writer.manifest["source"].get("train_seconds", 0.0)
                                              + time.perf_counter() - t0, 3))
        return writer.finish()

    # -- pieces

    def _optimizer(self, tensors: list[torch.Tensor]) -> torch.optim.Optimizer:
        cfg = self.spec.train
        kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return kind(tensors, lr=cfg.lr * lr_factor(0, cfg.warmup_steps), betas=tuple(cfg.betas),
                    weight_decay=cfg.weight_decay)

    def _start_or_resume(self, task: ModularAddition | RepeatedSubsequence):
        spec = self.spec
        if (self.out / MANIFEST).exists():
            writer = RunWriter.reopen(self.out)
            stored = writer.manifest
            if stored["spec_hash"] != spec.hash:
                raise RunError(
                    f"{str(self.out)!r} holds a run of a different spec (hash {stored['spec_hash'][:12]}, "
                    f"this spec {spec.hash[:12]}); choose another --out"
                )
            if stored["status"] == "complete":
                raise RunError(f"{str(self.out)!r} already holds the complete run {stored['name']!r}")
            was = stored["source"].get("device_class") or str(stored["source"].get("device", "cpu")).split(":")[0]
            if was != self.device.type:
                raise RunError(f"{str(self.out)!r} holds a run begun on {was}; resume it there (--device {was}): "
                               f"on {self.device.type} its numbers would differ from the part already trained")
            resume_file = self.out / RESUME
            if resume_file.exists():
                state = load_tensors(resume_file, what=f"resume state of {str(self.out)!r}")
                start = int(state.pop("__epoch__").item())
                params = {k[len("param/"):]: v for k, v in state.items() if k.startswith("param/")}
                opt_state = {k: v for k, v in state.items() if not k.startswith("param/")}
            else:  # killed before the first checkpoint was complete: start again from init
                start, params, opt_state = 0, init_params(spec.model, spec.modulus, spec.train.seed), None
            writer.truncate_log(before_epoch=start)
            threads = torch.get_num_threads()
            if threads not in _as_list(stored["source"].get("threads")):  # resumed with another thread count
                writer.set_source(threads=[*_as_list(stored["source"].get("threads")), threads])
            return writer, params, opt_state, start
        # threads: the intra-op thread count (CPU results depend on it: the same spec with another count gives other
        # bits); device_class: the part of the run's cache key that says where it was trained
        source = {"kind": "trained", "device": str(self.device), "device_class": self.device.type,
                  "threads": torch.get_num_threads(), **self.provenance, "torch": torch.__version__,
                  "claimlens": __version__, "machine": platform.machine(), "train_seconds": 0.0}
        writer = RunWriter.create(self.out, spec, task, source)
        return writer, init_params(spec.model, spec.modulus, spec.train.seed), None, 0

    def _checkpoint(self, writer: RunWriter, epoch: int, params, optimizer, trainable, rows) -> None:
        # Order matters for resuming: checkpoint file and manifest first (the commit), then the
        # log rows, then the resume state. A kill between two steps leaves a consistent run.
        writer.add_checkpoint(epoch, {k: v.detach() for k, v in params.items()})
        writer.append_log(rows)
        state = {f"param/{k}": v.detach() for k, v in params.items()}
        for i, name in enumerate(trainable):
            s = optimizer.state.get(optimizer.param_groups[0]["params"][i], {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in s:
                    state[f"opt/{name}/{key}"] = torch.as_tensor(s[key]).detach()
        state["__epoch__"] = torch.tensor(epoch)
        save_tensors(self.out / RESUME, state)


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def _restore_optimizer(optimizer: torch.optim.Optimizer, trainable: list[str], state: dict, device) -> None:
    for i, name in enumerate(trainable):
        keys = {key: state.get(f"opt/{name}/{key}") for key in ("exp_avg", "exp_avg_sq", "step")}
        if any(v is None for v in keys.values()):
            continue  # no step taken yet when the state was saved
        param = optimizer.param_groups[0]["params"][i]
        optimizer.state[param] = {
            "step": keys["step"].clone(),  # torch keeps the step as a CPU float tensor
            "exp_avg": keys["exp_avg"].to(device).clone(),
            "exp_avg_sq": keys["exp_avg_sq"].to(device).clone(),
        }


def _progress(start: int, epochs: int, name: str, enabled: bool, unit: str = "epoch"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs + 1, initial=start, desc=f"train {name}", unit=unit, dynamic_ncols=True)
