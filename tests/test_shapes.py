"""The tensor shapes the metric functions promise (docs/shapes.md): every public function of the metric modules is
annotated with jaxtyping in the one vocabulary the doc lists, and the test-suite checks those annotations on every
call (the import hook of ``conftest.py``), so that a wrong shape fails with jaxtyping's message."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import typing

import jaxtyping
import pytest
import torch
from jaxtyping._array_types import _MetaAbstractArray

from claimlens.core import losses
from claimlens.families.grokking import metrics as pm
from claimlens.families.lowrank import metrics as lr
from conftest import ROOT, SHAPE_CHECKED, SHAPE_CHECKS, no_shape_checks

checks_on = pytest.mark.skipif(not SHAPE_CHECKS, reason="shape checks off (CLAIMLENS_SHAPE_CHECKS=0)")


def _source_path(module: str):
    return ROOT / "src" / (module.replace(".", "/") + ".py")


def _functions(module: str):
    """``(qualified name, function)`` of every public function defined in ``module``, and of the public methods,
    properties and (dataclasses) ``__init__`` of its public classes."""
    mod = importlib.import_module(module)
    for name, obj in vars(mod).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if isinstance(member, (classmethod, staticmethod)):
                    member = member.__func__
                elif isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member) and (not attr.startswith("_") or attr == "__init__"):
                    yield f"{name}.{attr}", member


def _parts(annotation):
    """The annotation and everything inside it (unions, containers, tuples, a callable's arguments)."""
    yield annotation
    for arg in typing.get_args(annotation):
        for a in arg if isinstance(arg, list) else [arg]:
            yield from _parts(a)


def _vocabulary() -> set[str]:
    """The axis names of docs/shapes.md's table (first column, in backticks)."""
    table = (ROOT / "docs" / "shapes.md").read_text().split("## The vocabulary", 1)[1]
    names = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


@pytest.mark.parametrize("module", SHAPE_CHECKED)
def test_metric_modules_keep_their_annotations_evaluable(module):
    """No ``from __future__ import annotations``: under it jaxtyping gets strings, and one it cannot resolve checks
    nothing (a shape string written without quotes, ``Float[Tensor, N *rest]``, once did exactly that)."""
    tree = ast.parse(_source_path(module).read_text())
    future = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert not future, f"{module} imports from __future__: its annotations would not be checked"


@pytest.mark.parametrize("module", SHAPE_CHECKED)
def test_every_metric_function_is_annotated_in_the_one_vocabulary(module):
    vocabulary = _vocabulary()
    problems = []
    for name, fn in _functions(module):
        hints = inspect.get_annotations(fn, eval_str=True)
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
        missing = [p for p in params + ["return"] if p not in hints and not (name.endswith("__init__") and p == "return")]
        if missing:
            problems.append(f"{name}: no annotation for {missing}")
        for where, ann in hints.items():
            if any(part is torch.Tensor for part in _parts(ann)):
                problems.append(f"{name}({where}): a Tensor without its shape")
            for array in (part for part in _parts(ann) if isinstance(part, _MetaAbstractArray)):
                for dim in array.dim_str.split():
                    names = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim.lstrip("*"))
                    symbolic = not re.fullmatch(r"\*?[A-Za-z_][A-Za-z_0-9]*|\.\.\.|\d+", dim)
                    unknown = [n for n in names if n not in vocabulary and not (symbolic and n in params)
                               and "*" + n not in vocabulary]
                    if unknown and dim not in vocabulary:
                        problems.append(f"{name}({where}): axis {dim!r} is not in docs/shapes.md")
    assert not problems, "\n".join(problems)


# The public functions left unchecked (``@typing.no_type_check``), each for the reason docs/shapes.md gives: the
# hook would check the helpers defined inside them on every SGLD step.
UNCHECKED = {"claimlens.families.llc.metrics.estimate_llc", "claimlens.families.llc.metrics.autograd_loss_and_grad"}


@checks_on
@pytest.mark.parametrize("module", SHAPE_CHECKED)
def test_every_metric_function_is_checked_in_the_test_suite(module):
    exempt = {name for name, fn in _functions(module) if getattr(fn, "__no_type_check__", False)}
    assert {f"{module}.{name}" for name in exempt} <= UNCHECKED, f"unchecked without a reason: {exempt}"
    unchecked = [name for name, fn in _functions(module) if not hasattr(fn, "__wrapped__") and name not in exempt]
    assert not unchecked, f"not under the jaxtyping hook: {unchecked}"


@checks_on
def test_a_metric_called_with_a_wrong_shape_fails_with_jaxtypings_message():
    p = 5
    L = torch.randn(p * p, p, dtype=torch.float64)
    labels = (torch.arange(p).repeat_interleave(p) + torch.arange(p).repeat(p)) % p
    rows = torch.arange(10)
    assert pm.excluded_loss(L, labels, rows, [1, 2], p).shape == (2,)
    with pytest.raises(jaxtyping.TypeCheckError,
                       match=r"(?s)excluded_loss.*parameter 'labels'.*Expected type: .*Int\[Tensor, 'batch'\].*batch=25"):
        pm.excluded_loss(L, labels[:-1], rows, [1, 2], p)  # one label short
    with pytest.raises(jaxtyping.TypeCheckError, match=r"(?s)parameter 'labels'.*Int\[Tensor, 'batch'\]"):
        losses.cross_entropy_f64(L, labels.double())  # float labels
    with pytest.raises(jaxtyping.TypeCheckError, match=r"(?s)trig_variance_fraction.*parameter 'X'"):
        pm.trig_variance_fraction(L.flatten(), [1], p)  # one axis instead of two
    with no_shape_checks():  # unchecked, as outside the test-suite, the same call returns numbers: what the check is for
        assert pm.excluded_loss(L, labels[:-1], rows, [1, 2], p).shape == (2,)


@checks_on
def test_a_function_batched_over_checkpoints_or_not_accepts_both():
    """``singular_values_for`` takes ``n_sv *n_ckpt``: one column of singular values, or one per checkpoint."""
    sv = torch.tensor([[3.0, 1.0], [4.0, 1.0], [0.0, 1.0]])
    assert pm.singular_values_for(0.9, sv).shape == (2,)
    assert pm.singular_values_for(0.9, sv[:, 0]).shape == ()
    assert lr.turning_angles(torch.randn(6, 2, dtype=torch.float64)).shape == (4,)  # n_ckpt − 2 turns
    with pytest.raises(jaxtyping.TypeCheckError, match=r"(?s)largest_turns.*parameter 'epochs'"):
        lr.largest_turns(torch.rand(4), torch.arange(5), 2)  # epochs of n_turns + 2 checkpoints needed


def test_dataclasses_of_tensors_are_checked_too():
    """A dataclass of a metric module checks its fields' shapes against each other when it is built."""
    power = pm.neuron_block_power(torch.randn(25, 3, dtype=torch.float64), 5)
    assert dataclasses.is_dataclass(power)
    if SHAPE_CHECKS:
        with pytest.raises(jaxtyping.TypeCheckError, match="pairs"):
            type(power)(power.total, power.row0, power.col0, power.pairs[..., :2])  # 2 neurons, not 3
