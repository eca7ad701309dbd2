"""Shared fixtures for the tool's own tests: small real runs trained once per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from claimlens.config import MLPConfig, ModularAdditionTask, RunSpec, TrainConfig, TransformerConfig

ROOT = Path(__file__).resolve().parents[1]


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
