"""Shared fixtures for the tool's own tests: small real runs trained once per session.

Shapes are checked: before anything imports them, the modules whose functions carry jaxtyping annotations
(:data:`SHAPE_CHECKED`) are put under jaxtyping's import hook with beartype, so every call the test-suite makes to
them checks the shapes and dtypes of its arguments and result (``docs/shapes.md``). ``CLAIMLENS_SHAPE_CHECKS=0``
turns the hook off (for timing it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import jaxtyping
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every metric module: the pure Fourier/loss/weight functions of the core and each family's metrics.py.
SHAPE_CHECKED = ["claimlens.core.fourier", "claimlens.core.losses", "claimlens.core.weights",
                 *sorted(f"claimlens.families.{m.parent.name}.metrics"
                         for m in (ROOT / "src" / "claimlens" / "families").glob("*/metrics.py"))]
SHAPE_CHECKS = os.environ.get("CLAIMLENS_SHAPE_CHECKS", "1") != "0"

# Installed once per process that runs tests: the session's own, or each pytest-xdist worker (``-n 2``: a worker
# inherits the controller's environment, so the variable names the process *role* that installed it, and a worker
# installs its own). This module is also imported again in that process (as ``tests.conftest``) and by the scripts
# some tests run in a subprocess (which inherit the variable and the role): both skip it.
_ROLE = os.environ.get("PYTEST_XDIST_WORKER", "main")
_INSTALLED_BY = os.environ.get("CLAIMLENS_SHAPE_CHECKS_INSTALLED_BY")
if SHAPE_CHECKS and (_INSTALLED_BY is None or _INSTALLED_BY.partition(":")[2] != _ROLE):
    _early = [m for m in SHAPE_CHECKED if m in sys.modules]
    if _early:  # the hook only instruments modules imported after it: fail rather than check nothing
        raise RuntimeError(f"{_early} were imported before tests/conftest.py installed the shape checks")
    if importlib.util.find_spec("beartype") is None:
        raise RuntimeError("the shape checks need beartype: pip install -e '.[dev]' (or CLAIMLENS_SHAPE_CHECKS=0)")
    # PEP 484's numeric tower: an int is a valid float, as for any static type checker.
    jaxtyping.install_import_hook(SHAPE_CHECKED, "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")
    os.environ["CLAIMLENS_SHAPE_CHECKS_INSTALLED_BY"] = f"{os.getpid()}:{_ROLE}"

from claimlens.config import MLPConfig, ModularAdditionTask, RunSpec, TrainConfig, TransformerConfig


@contextlib.contextmanager
def no_shape_checks():
    """Calls inside run unchecked, as outside the test-suite: for tests of a function's own error on a bad shape."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)


def tiny_spec(name: str = "tiny", **train) -> RunSpec:
    """A transformer small enough to train in about a second (p=23)."""
    return RunSpec(
        name=name,
        task=ModularAdditionTask(p=23, frac_train=0.5, split_seed=1),
        model=TransformerConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
        train=TrainConfig(**{"epochs": 120, "checkpoint_every": 10, "lr": 3e-3, "seed": 7, **train}),
    ).validate()


def tiny_mlp_spec(name: str = "tiny-mlp", combine: str = "sum") -> RunSpec:
    return RunSpec(
        name=name,
        task=ModularAdditionTask(p=23, frac_train=0.5),
        model=MLPConfig(d_embed=16, hidden=(32, 32), combine=combine),
        train=TrainConfig(epochs=60, checkpoint_every=20, lr=3e-3),
    ).validate()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from claimlens.training import Trainer

    return Trainer(tiny_spec(), tmp_path_factory.mktemp("runs") / "tiny", progress=False).train()


@pytest.fixture(scope="session")
def tiny_mlp_run(tmp_path_factory):
    from claimlens.training import Trainer

    return Trainer(tiny_mlp_spec(), tmp_path_factory.mktemp("runs") / "tiny-mlp", progress=False).train()


def with_train(spec: RunSpec, **changes) -> RunSpec:
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **changes)).validate()
