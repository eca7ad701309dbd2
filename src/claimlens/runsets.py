"""Run sets: the runs of a sweep, judged together by the claims that are about several runs.

A sweep spec (TOML, e.g. ``fixtures/sweeps/data_fraction.toml``) names a base spec and the axes that vary::

    name = "data_fraction"
    description = "the default recipe at four training fractions"
    base = "../default.toml"            # relative to this file
    [axes]
    "task.frac_train" = [0.3, 0.4, 0.6, 0.8]
    [set]                                # optional: changes applied to every member
    "train.epochs" = 2500

Members are the product of the axes (one run per combination), each the base spec with those fields replaced,
named ``<sweep>-<field>=<value>``; they are trained on first use and cached like built-in runs
(:func:`claimlens.builtin.ensure_run`), several at once through :mod:`claimlens.executor` (``claimlens
train-sweep SWEEP.toml`` trains them without pytest), one progress bar for the set. A curves-only set (the source's own
training-fraction sweep, losses only) comes from :func:`claimlens.reference.load_set`; a set of sweep-table rows
(the source's attention-rate sweeps, measured values only) from :func:`table_set`.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claimlens.config import RunSpec
from claimlens.errors import RunError, SpecError

AXIS_TABLES = ("task", "model", "train")


@dataclass(frozen=True)
class Member:
    """One run of a sweep: its ``label``, the axis ``values`` that make it, and its spec."""

    label: str
    values: dict[str, Any]
    spec: RunSpec


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``base`` spec, ``axes`` (dotted spec field → the values it takes) and changes for every member."""

    name: str
    path: Path
    base: RunSpec
    axes: dict[str, tuple[Any, ...]]
    common: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        """Read and validate a sweep spec. Raises :class:`SpecError` naming the file and the field."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise SpecError(f"sweep spec {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"sweep spec {str(path)!r}: not valid TOML ({exc})") from None
        unknown = sorted(set(data) - {"name", "description", "base", "axes", "set"})
        if unknown:
            raise SpecError(f"sweep spec {str(path)!r}: unknown keys {unknown}; a sweep has name, description, "
                            f"base, [axes] and [set]")
        if not isinstance(data.get("base"), str):
            raise SpecError(f"sweep spec {str(path)!r}: 'base' must name the base spec TOML (relative to the file)")
        base_path = (path.parent / data["base"]).resolve()
        try:
            base = RunSpec.from_toml(base_path)
        except SpecError as exc:
            raise SpecError(f"sweep spec {str(path)!r}: its base: {exc}") from None
        axes = data.get("axes")
        if not isinstance(axes, dict) or not axes:
            raise SpecError(f"sweep spec {str(path)!r}: [axes] must give at least one field and its values, e.g. "
                            f"\"task.frac_train\" = [0.3, 0.6]")
        for key, values in axes.items():
            _check_field(path, key)
            if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
                raise SpecError(f"sweep spec {str(path)!r}: axis {key!r} must be a non-empty list of distinct values")
        common = data.get("set", {})
        if not isinstance(common, dict):
            raise SpecError(f"sweep spec {str(path)!r}: [set] must be a table of field = value")
        for key in common:
            _check_field(path, key)
        sweep = cls(str(data.get("name", path.stem)), path, base, {k: tuple(v) for k, v in axes.items()},
                    dict(common), str(data.get("description", "")))
        sweep.members()  # every member must be a valid spec: refuse now, before any training
        return sweep

    def members(self) -> list[Member]:
        keys = list(self.axes)
        out = []
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            values = dict(zip(keys, combo))
            label = f"{self.name}-" + "-".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())
            spec = _replace(self.base, {**self.common, **values}, name=label, where=f"{self.path} member {label}")
            out.append(Member(label, values, spec))
        return out


def is_sweep_toml(path: str | Path) -> bool:
    """Whether a TOML file is a sweep spec (it has ``base`` and ``[axes]``), without validating it."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return "axes" in data and "base" in data


def _check_field(path: Path, key: str) -> None:
    table, _, name = key.partition(".")
    if table not in AXIS_TABLES or not name:
        raise SpecError(f"sweep spec {str(path)!r}: {key!r} is not a spec field; axes are written as "
                        f"'table.field' with table one of {list(AXIS_TABLES)} (e.g. 'train.weight_decay')")


def _replace(spec: RunSpec, changes: dict[str, Any], *, name: str, where: str) -> RunSpec:
    data = spec.to_dict()
    for key, value in changes.items():
        table, _, field_name = key.partition(".")
        if field_name not in data[table]:
            raise SpecError(f"{where}: {key!r} is not a field of [{table}] (fields: {sorted(data[table])})")
        data[table][field_name] = value
    data["name"] = name
    data.pop("expect", None)  # what the base run is expected to do says nothing of a member
    data["description"] = f"{spec.name} with " + ", ".join(f"{k} = {v}" for k, v in changes.items())
    return RunSpec.from_dict(data, source=where)


@dataclass
class RunSet:
    """Runs judged together: ``members`` are ``(values, run)`` pairs, ``values`` the axis values that make the run
    (``{"task.frac_train": 0.3}``); ``runs`` are :class:`claimlens.runs.Run` or curves-only runs."""

    name: str
    description: str
    axes: tuple[str, ...]
    members: list[tuple[dict[str, Any], Any]]
    # "sweep" (trained from a sweep spec), "curves" (curves-only runs, e.g. the source's) or "table" (rows of a sweep
    # table: measured values only, claimlens.reference.tables)
    kind: str = "sweep"
    labels: list[str] = field(default_factory=list)  # the members' labels (a member may be a run of another name)

    def varies(self, axis: str) -> bool:
        return axis in self.axes and len({repr(v[axis]) for v, _ in self.members}) > 1

    def along(self, axis: str) -> list[tuple[Any, Any]]:
        """``(value, run)`` for the members, sorted by the value of ``axis``."""
        return sorted(((v[axis], run) for v, run in self.members), key=lambda t: t[0])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description, "axes": list(self.axes),
                "members": [{"name": self.labels[i] if i < len(self.labels) else run.name,
                             "run": getattr(run, "manifest", {}).get("name", run.name),  # the cached run reused
                             "values": values, "content_hash": getattr(run, "content_hash", "")}
                            for i, (values, run) in enumerate(self.members)]}


def ensure_set(sweep: SweepSpec, *, device: str = "auto", progress: bool = True, executor: Any = None) -> RunSet:
    """Every member of ``sweep``, those the cache lacks trained first through ``executor``
    (:func:`claimlens.executor.train_all`: None is ``$CLAIMLENS_EXECUTOR``, else the local process pool; one
    progress bar for the set). Raises :class:`RunError` naming every member that failed to train, with its error,
    after the others finished."""
    from claimlens.builtin import ensure_run
    from claimlens.executor import TrainJob, train_all

    members = sweep.members()
    trained = train_all([TrainJob(m.spec, device, label=m.label) for m in members], executor, progress=progress,
                        desc=f"sweep {sweep.name}")
    if trained.failed:
        raise RunError(f"sweep {sweep.name!r}: {len(trained.failed)} of {len(members)} members failed to train: "
                       + "; ".join(f"{r.label}: {r.error}" for r in trained.failed))
    runs = [(m.values, ensure_run(m.spec, device=device, progress=False)) for m in members]
    return RunSet(sweep.name, sweep.description, tuple(sweep.axes), runs, labels=[m.label for m in members])


def curves_set(name: str | Path) -> RunSet:
    """A curves-only set: built-in by name (``nanda2022_fractions``: the source's training-fraction sweep) or a
    folder (:func:`claimlens.reference.load_set`)."""
    from claimlens import reference

    found = reference.load_set(name)
    return RunSet(found.name, found.description, (found.axis,), [({found.axis: v}, run) for v, run in found.members],
                  kind="curves")


TABLE_AXES = ("model.attn_rate", "model.d_model", "model.n_layers")  # what the source's sweep tables vary


def table_set(name: str) -> RunSet:
    """The rows of the built-in sweep tables ``name`` (``zhong2023_sweep``: :func:`claimlens.reference.tables.
    load_tables`) as a run set along :data:`TABLE_AXES`: members ``(row.values(), row)``, each row a
    :class:`claimlens.reference.tables.TableRun` (no weights). A member's values name its ``table``: a set of
    several tables is several sweeps, which a set claim may judge one by one."""
    from claimlens.reference.tables import load_tables

    tables = load_tables(name)
    return RunSet(tables.name, tables.description, TABLE_AXES, [(row.values(), row) for row in tables.rows],
                  kind="table", labels=[row.name for row in tables.rows])
