"""What ``--run`` values mean: a run directory, a spec TOML to train (once) and cache, a curves folder, a sweep
spec (a run set, trained member by member on first use), a built-in curves set (``nanda2022_fractions``) or a
source's own saved model (``zhong2023_model_a``, imported once into the cache), a built-in set of sweep-table
rows (``zhong2023_sweep``) or a run on the Hugging Face Hub (``hf://OWNER/REPO[/PATH][@REVISION]``).

Each kind of input is a class behind :class:`RunInput` (frozen, hashable: the plugin's pytest params): runs
(:class:`RunDir`, :class:`HubRun`, :class:`PublishedModel`, :class:`SpecRun`, :class:`SeedVariant`, :class:`SweepMember`,
:class:`CurvesRun`), run sets (:class:`Sweep`, :class:`CurvesSet`, :class:`TableSet`) and :class:`NoSet` (no set in
the session). Each reads its spec, sweep spec or
manifest at most once (memoised on the object, which the session keeps). Nothing here imports torch but the import
of a checkpoint file from the Hub."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

DEFAULT_SPEC = "default.toml"


def default_session() -> dict[str, frozenset | None]:
    """A plain `pytest claims/` (no --run): the built-in specs (file names in ``claimlens.config.FIXTURES``) with the
    claim families that judge them (None: every family). The default run is judged by every claim about modular
    addition; each family's ``BUILTIN_RUNS`` (in ``families/<family>/fixtures.py``: the pizza and clock models and
    the hackathon's MLP, the induction models, the MLPs of "Grokking with weight decay") only by that family's
    claims."""
    from claimlens.families import FAMILIES, fixtures_of

    out: dict[str, frozenset | None] = {DEFAULT_SPEC: None}
    for family in FAMILIES:
        for spec in getattr(fixtures_of(family), "BUILTIN_RUNS", ()):
            out[spec] = (out.get(spec) or frozenset()) | {family}
    return out


@dataclass(frozen=True)
class RunInput:
    """A ``--run`` value resolved to a label cheaply (without training or torch). Subclasses say what it is; the
    ``kind`` class attribute is the string recorded in claims.json (``runs[].kind``) and nothing branches on it."""

    path: Path
    label: str
    families: frozenset | None = None  # the claim families that judge this run (None: all of them)
    builtin: bool = False  # one of a plain session's built-in runs (default_session)
    # what was read once (spec, sweep spec, manifest): not part of the identity
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    kind: ClassVar[str] = ""
    is_set: ClassVar[bool] = False  # a set of runs (judged by the set claims through the run_set fixture)
    has_weights: ClassVar[bool] = True  # opens to something with checkpoints (False: curves only)
    present: ClassVar[bool] = True  # False: the placeholder of a session without run sets (NoSet)

    def judged_runs(self, seeds: int = 1, only: frozenset = frozenset()) -> list[RunInput]:
        """The runs the per-run claims judge for this input: itself (a run), none (a set), its members (a sweep, only
        those labelled in ``only`` when given), or itself and its other seeds (a spec, ``seeds`` > 1)."""
        return [] if self.is_set else [self]

    def judged_as_set(self, members_only: bool) -> bool:
        """Whether the set claims judge this input (a run set), ``members_only`` when this process judges the
        members of named sweeps (--claims-member), not the sweeps as sets."""
        return self.is_set

    def on(self, device: str, executor: str | None = None) -> RunInput:
        """This input, trained (where it is a spec or a sweep) on ``device`` (``auto``, ``cpu``, ``cuda``: the
        session's ``--claims-device``, whose class is part of the cache key of a trained run) through ``executor``
        (``--claims-executor``; None: ``$CLAIMLENS_EXECUTOR``, else the pool). Returns itself."""
        self._memo["device"] = device
        self._memo["executor"] = executor
        return self

    @property
    def device(self) -> str:
        """The device a spec run is trained on (:meth:`on`; ``auto`` when no session said)."""
        return self._memo.get("device", "auto")

    def _once(self, key: str, read):
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def relabelled(self, label: str) -> RunInput:
        """The same input under another label (two --run values with one name: ``name#2``)."""
        out = dataclasses.replace(self, label=label)
        out._memo.update(self._memo)
        return out

    def judged_by(self, family: str, task: str | None = None, model: str | None = None) -> bool:
        """Whether claims of ``family`` (about ``task``, on models of kind ``model``) judge this run. A plain
        session's built-in run is judged only by the claims about its own task and model kind; a run named with
        --run by every claim (the others skip with the reason)."""
        if self.families is not None and family not in self.families:
            return False
        if not self.builtin:
            return True
        if task not in (None, "any") and self.task_kind() not in (None, task):
            return False
        return model in (None, "any") or self.model_kind() in (None, model)

    def untrained(self) -> bool:
        """Whether opening this input will train it first (only a spec whose run the cache lacks)."""
        return False

    def train_specs(self) -> list:
        """The specs opening this input would train first, ``(label, spec)`` (the session trains them all at once
        before the first test, :func:`claimlens.executor.train_all`): none but for a spec or a sweep."""
        return []

    def epochs(self) -> list[int]:
        """Checkpoint epochs, known without training (none: curves or a set)."""
        return []

    def task_kind(self) -> str | None:
        """The ``task.kind`` of the run, read from its spec or manifest without training (None: a curves run or a
        set, which say nothing about it here)."""
        return None

    def model_kind(self) -> str | None:
        """The ``model.kind`` of the run, read like :meth:`task_kind`."""
        return None

    def axes(self) -> tuple[str, ...] | None:
        """The axes a run set varies, read from its spec without training (None when not a set)."""
        return None

    def describe(self) -> dict:
        """The input as recorded in claims.json (``runs[]``): label, kind, path and what is known of it."""
        return {"label": self.label, "kind": self.kind, "path": str(self.path)}

    def open(self, device: str = "cpu"):
        """The run or run set (trained on first use where it is a spec); a bad input fails the test with
        ``--run PATH: message``."""
        from claimlens.errors import ClaimlensError, SplitUnknown

        try:
            return self._open(device)
        except SplitUnknown:
            raise
        except ClaimlensError as exc:
            pytest.fail(f"--run {self.path}: {exc}", pytrace=False)

    def _open(self, device: str):
        raise NotImplementedError


def _describe_run_dir(out: dict, run_dir: Path, spec) -> dict:
    """``out`` with the manifest fields of the run in ``run_dir`` if there is one (a spec's run carries the spec's
    name even when the cache holds it under another, Run.named; "spec" stays what was trained)."""
    from claimlens.errors import RunError
    from claimlens.runs.manifest import read_manifest

    try:
        m = read_manifest(run_dir)
    except RunError:
        m = None
    if m is not None:
        name = spec.name if spec is not None else m["name"]
        split = m.get("split") or {}
        out.update({"run_dir": str(run_dir), "name": name, "content_hash": m["content_hash"],
                    "spec": m["spec"], "source": m["source"], "n_checkpoints": len(m["checkpoints"]),
                    "split": {"rule": str(split.get("rule", "stored")),
                              **({"reason": str(split["reason"])} if split.get("reason") else {})}})
    return out


@dataclass(frozen=True)
class RunDir(RunInput):
    """A run directory (``run.json`` and its checkpoints)."""

    kind: ClassVar[str] = "run"

    def manifest(self) -> dict:
        from claimlens.runs.manifest import read_manifest

        return self._once("manifest", lambda: read_manifest(self.path))

    def epochs(self) -> list[int]:
        return [c["epoch"] for c in self.manifest()["checkpoints"]]

    def task_kind(self) -> str | None:
        return self.manifest()["spec"].get("task", {}).get("kind", "modular_addition")

    def model_kind(self) -> str | None:
        return self.manifest()["spec"].get("model", {}).get("kind", "transformer")

    def describe(self) -> dict:
        return _describe_run_dir(super().describe(), self.path, None)

    def _open(self, device: str):
        from claimlens.runs.store import Run

        return Run.open(self.path)


@dataclass(frozen=True)
class HubRun(RunDir):
    """A run on the Hugging Face Hub (``hf://OWNER/REPO[/PATH][@REVISION]``), fetched through huggingface_hub when
    ``--run`` is read: a checkpoint file or folder imported into the claimlens cache (``path``: the import, whose
    run.json records the reference, the commit and the file's sha256), or a claimlens run directory in the Hub cache's
    snapshot (``path``: that folder)."""

    reference: str = ""
    hub: dict = field(default_factory=dict, compare=False, hash=False)  # Fetched.provenance()
    kind: ClassVar[str] = "hub"

    def describe(self) -> dict:
        return {**super().describe(), "reference": self.reference, "hub": dict(self.hub)}


@dataclass(frozen=True)
class PublishedModel(RunInput):
    """A source's own saved model shipped with claimlens (``zhong2023_model_a``: a checkpoint file and its sidecar
    config, listed in ``claimlens/reference/*/models/published.toml``), imported into the cache on first use."""

    description: str = ""
    kind: ClassVar[str] = "published"

    def _sidecar(self) -> dict:
        import json

        def read() -> dict:
            stem = self.path.stem
            config = self.path.with_name(f"config_{stem.removeprefix('model_')}.json")
            return json.loads(config.read_text()) if config.is_file() else {}

        return self._once("sidecar", read)

    def untrained(self) -> bool:
        return False  # an import of one file takes a second: no notice

    def epochs(self) -> list[int]:
        epoch = self._sidecar().get("epoch")
        return [int(epoch)] if isinstance(epoch, int) else []

    def task_kind(self) -> str | None:
        return "modular_addition"

    def model_kind(self) -> str | None:
        return "transformer"

    def describe(self) -> dict:
        from claimlens.builtin import imported_run_path

        out = super().describe()
        out["provenance"] = self.description
        return _describe_run_dir(out, imported_run_path(self.path, self.label), None)

    def _open(self, device: str):
        from claimlens.builtin import ensure_imported

        return ensure_imported(self.path, self.label, progress=False)


@dataclass(frozen=True)
class _Trained(RunInput):
    """A run made from a spec (trained and cached on first use): subclasses say where the spec comes from."""

    def spec(self):
        """The :class:`claimlens.config.RunSpec` (read once)."""
        return self._once("spec", self._read_spec)

    def _read_spec(self):
        raise NotImplementedError

    def untrained(self) -> bool:
        """Whether the cache lacks this spec's run complete. Cheap: reads the spec and a manifest."""
        from claimlens.builtin import is_cached

        try:
            return not is_cached(self.spec(), self.device)
        except Exception:  # noqa: BLE001 - opening the run reports a bad spec properly; this is only a notice
            return False

    def train_specs(self) -> list:
        """The specs opening this input trains first, ``(label, spec)``: its own, when the cache lacks it."""
        return [(self.label, self.spec())] if self.untrained() else []

    def epochs(self) -> list[int]:
        return self.spec().train.checkpoint_epochs

    def task_kind(self) -> str | None:
        return self.spec().task.kind

    def model_kind(self) -> str | None:
        return self.spec().model.kind

    def describe(self) -> dict:
        from claimlens.builtin import cached_run_path

        spec = self.spec()
        return _describe_run_dir(super().describe(), cached_run_path(spec, self.device), spec)

    def _open(self, device: str):
        from claimlens.builtin import ensure_run
        from claimlens.errors import RunError

        if "train_error" in self._memo:  # the session's training of it failed: said once, not trained again
            raise RunError(f"training failed: {self._memo['train_error']}")
        return ensure_run(self.spec(), device=device)


@dataclass(frozen=True)
class SpecRun(_Trained):
    """A spec TOML (``path``), trained and cached on first use."""

    kind: ClassVar[str] = "spec"

    def _read_spec(self):
        from claimlens.config import RunSpec

        return RunSpec.from_toml(self.path)

    def judged_runs(self, seeds: int = 1, only: frozenset = frozenset()) -> list[RunInput]:
        return [self, *seed_refs(self, seeds)] if seeds > 1 else [self]


@dataclass(frozen=True)
class SeedVariant(_Trained):
    """The spec at ``path`` with ``train.seed = seed`` (from --claims-seeds)."""

    seed: int = 0
    kind: ClassVar[str] = "seed"

    def _read_spec(self):
        return seed_variant(self.path, self.seed)


@dataclass(frozen=True)
class SweepMember(_Trained):
    """One run of the sweep spec at ``path``: the member labelled ``member``."""

    member: str = ""
    kind: ClassVar[str] = "member"

    def _read_spec(self):
        from claimlens.runsets import SweepSpec

        return next(m.spec for m in SweepSpec.from_toml(self.path).members() if m.label == self.member)


@dataclass(frozen=True)
class CurvesRun(RunInput):
    """A curves folder (``index.toml`` and digitised or logged curves; no weights)."""

    kind: ClassVar[str] = "curves"
    has_weights: ClassVar[bool] = False

    def describe(self) -> dict:
        from claimlens import reference

        out = super().describe()
        run = reference.load(self.path)
        out.update({"name": run.name, "content_hash": run.content_hash, "provenance": run.description})
        return out

    def _open(self, device: str):
        from claimlens import reference

        return reference.load(self.path)


@dataclass(frozen=True)
class Sweep(RunInput):
    """A sweep spec TOML: a run set, its members trained on first use."""

    kind: ClassVar[str] = "sweep"
    is_set: ClassVar[bool] = True

    def sweep(self):
        """The :class:`claimlens.runsets.SweepSpec` (read once)."""
        from claimlens.runsets import SweepSpec

        return self._once("sweep", lambda: SweepSpec.from_toml(self.path))

    def members(self) -> list[SweepMember]:
        """Its runs, as inputs judged by the per-run claims (each with its spec already read)."""
        out = []
        for m in self.sweep().members():
            member = SweepMember(self.path, m.label, member=m.label)
            member._memo["spec"] = m.spec
            member._memo["device"] = self.device
            member._memo["executor"] = self._memo.get("executor")
            out.append(member)
        return out

    def judged_runs(self, seeds: int = 1, only: frozenset = frozenset()) -> list[RunInput]:
        """Its members (those labelled in ``only`` when given). Raises :class:`pytest.UsageError` for a label in
        ``only`` that is not a member."""
        members = self.members()
        unknown = only - {m.label for m in members}
        if unknown:
            raise pytest.UsageError(f"--claims-member {sorted(unknown)}: not members of the sweep {self.label!r} "
                                    f"({[m.label for m in members]})")
        return [m for m in members if not only or m.label in only]

    def judged_as_set(self, members_only: bool) -> bool:
        return not members_only

    def axes(self) -> tuple[str, ...] | None:
        return tuple(self.sweep().axes)

    def describe(self) -> dict:
        from claimlens.builtin import cached_run_path

        out, sweep = super().describe(), self.sweep()
        out.update({"name": sweep.name, "provenance": sweep.description, "axes": list(sweep.axes),
                    "members": [{"label": m.label, "values": m.values,
                                 "run_dir": str(cached_run_path(m.spec, self.device)),
                                 "spec_hash": m.spec.hash} for m in sweep.members()]})
        return out

    def untrained(self) -> bool:
        return bool(self.train_specs())

    def train_specs(self) -> list:
        from claimlens.builtin import is_cached

        return [(m.label, m.spec) for m in self.sweep().members() if not is_cached(m.spec, self.device)]

    def _open(self, device: str):
        from claimlens.errors import RunError
        from claimlens.runsets import ensure_set

        if "train_error" in self._memo:
            raise RunError(f"training failed: {self._memo['train_error']}")
        return ensure_set(self.sweep(), device=device, executor=self._memo.get("executor"))


@dataclass(frozen=True)
class CurvesSet(RunInput):
    """A set of curves runs: a curves folder whose index names an axis, or a built-in one by name."""

    kind: ClassVar[str] = "curves_set"
    is_set: ClassVar[bool] = True
    has_weights: ClassVar[bool] = False

    def _set(self):
        """The :class:`claimlens.runsets.RunSet` (loaded once)."""
        from claimlens.runsets import curves_set

        return self._once("set", lambda: curves_set(self.path if self.path.is_dir() else self.label))

    def axes(self) -> tuple[str, ...] | None:
        return tuple(self._set().axes)

    def describe(self) -> dict:
        out = super().describe()
        found = self._set().describe()
        out.update({"name": found["name"], "provenance": found["description"], "axes": found["axes"],
                    "members": [{"label": m["name"], "values": m["values"], "content_hash": m["content_hash"]}
                                for m in found["members"]]})
        return out

    def _open(self, device: str):
        return self._set()


@dataclass(frozen=True)
class TableSet(RunInput):
    """A built-in set of sweep-table rows, by name (``zhong2023_sweep``): runs known only by the values their source
    measured (no weights, no curves), judged by the set claims only. ``path``: the folder of the tables."""

    table: str = ""  # the set's name in claimlens.reference.tables.SETS
    kind: ClassVar[str] = "table_set"
    is_set: ClassVar[bool] = True
    has_weights: ClassVar[bool] = False

    def _tables(self):
        """The :class:`claimlens.reference.tables.Tables` (read once)."""
        from claimlens.reference.tables import load_tables

        return self._once("tables", lambda: load_tables(self.table))

    def axes(self) -> tuple[str, ...] | None:
        from claimlens.runsets import TABLE_AXES

        return TABLE_AXES

    def describe(self) -> dict:
        """The set as claims.json records it: provenance, and per table its rows, its 1-layer rows and how many
        pass the catalogue's filter (the rows themselves are not listed: thousands of them)."""
        from claimlens.errors import ClaimlensError
        from claimlens.reference.tables import FILTER_TEXT
        from claimlens.runsets import TABLE_AXES

        out = super().describe()
        try:
            tables = self._tables()
        except ClaimlensError as exc:  # the claims saw the same error; the report says it too
            out["provenance"] = f"unreadable: {exc}"
            return out
        counts = tables.counts()

        def n(x: int) -> str:
            return f"{x:,}".replace(",", " ")

        summary = "; ".join(f"{c['file']}: {n(c['rows'])} rows, {n(c['one_layer'])} with 1 layer, "
                            f"{n(c['filtered'])} pass the filter" for c in counts)
        out.update({"name": tables.name, "content_hash": tables.content_hash, "axes": list(TABLE_AXES),
                    "provenance": f"{tables.description}. {summary} (filter: {FILTER_TEXT})",
                    "tables": counts, "filter": FILTER_TEXT})
        return out

    def _open(self, device: str):
        from claimlens.runsets import table_set

        return self._once("set", lambda: table_set(self.table))


@dataclass(frozen=True)
class _Absent(RunInput):
    """A placeholder parameter: nothing to judge (``present`` False); the fixture skips, saying why."""

    path: Path = Path(".")
    label: str = "none"
    has_weights: ClassVar[bool] = False
    present: ClassVar[bool] = False

    def _open(self, device: str):
        raise NotImplementedError(f"nothing to open: {type(self).__name__} is a placeholder")


@dataclass(frozen=True)
class NoRun(_Absent):
    """The ``run`` parameter of a session whose inputs are all run sets: the per-run claims skip, saying so."""

    kind: ClassVar[str] = "no_run"


@dataclass(frozen=True)
class NoSet(_Absent):
    """The ``run_set`` parameter of a session without run sets: the test skips, saying how to get one."""

    kind: ClassVar[str] = "no_set"


def resolve_refs(values: list[str]) -> list[RunInput]:
    """The inputs ``--run`` names (``values``: paths or built-in names), in order, labels made unique (``name#2``);
    none: the built-in runs of a plain session. A bad value raises :class:`pytest.UsageError` saying what --run
    takes."""
    from claimlens.config import FIXTURES

    if not values:
        if not (FIXTURES / DEFAULT_SPEC).is_file():
            raise pytest.UsageError(f"no --run given and the built-in default spec {DEFAULT_SPEC} is not in {FIXTURES}")
        return [SpecRun(FIXTURES / spec, Path(spec).stem, families=families, builtin=True)
                for spec, families in default_session().items() if (FIXTURES / spec).is_file()]
    refs, seen = [], set()
    for value in values:
        if value.startswith("hf://"):  # a run on the Hugging Face Hub (never a local path: Path would fold the //)
            refs.append(_labelled(_hub_input(value), seen))
            continue
        path = Path(value)
        references = _references()
        if not path.exists() and value in _curves_sets():
            refs.append(CurvesSet(Path(value), value))
            seen.add(value)
            continue
        published = _published()
        if not path.exists() and value in published:
            file, description = published[value]
            ref = PublishedModel(file, value, description=description)
        elif not path.exists() and value in references:
            path = references[value]  # a built-in reference by name: --run nanda2022
        elif not path.exists() and _builtin_spec(value) is not None:
            path = _builtin_spec(value)  # a built-in spec by name: --run pizza is fixtures/pizza.toml
        if value in published and not Path(value).exists():
            pass  # a published model by name: --run zhong2023_model_a
        elif not path.exists() and value in _table_sets():  # a built-in set of sweep-table rows by name
            ref = TableSet(_reference_root() / _table_sets()[value], value, table=value)
        elif path.is_dir() and not (path / "run.json").is_file() and _is_set_dir(path):
            ref = CurvesSet(path, path.name)
        elif path.is_dir() and not (path / "run.json").is_file() and (
                (path / "index.toml").is_file() or path.name in references):
            ref = CurvesRun(path, path.name)
        elif path.is_dir():
            from claimlens.errors import RunError
            from claimlens.runs.manifest import MANIFEST, read_manifest

            if not (path / MANIFEST).is_file():
                weights = [f for pattern in ("*.pt", "*.pth", "*.ckpt", "*.bin", "*.safetensors")
                           for f in path.glob(pattern)]
                hint = (f"; it holds {len(weights)} checkpoint file{'s' if len(weights) != 1 else ''}: make a run of them with `claimlens import "
                        f"{value} --spec SPEC.toml --out RUN`, then --run RUN" if weights else
                        "; --run takes a run directory (`claimlens train SPEC.toml --out RUN` or `claimlens import`)")
                raise pytest.UsageError(f"--run {value}: directory has no run.json; it is not a claimlens run "
                                        f"(nor a curves folder with an index.toml){hint}")
            try:
                manifest = read_manifest(path)
            except RunError as exc:
                raise pytest.UsageError(f"--run {value}: run.json is not a valid manifest ({exc})") from None
            ref = RunDir(path, str(manifest["name"]))
            ref._memo["manifest"] = manifest
        elif path.is_file() and path.suffix == ".toml":
            from claimlens.runsets import is_sweep_toml

            if is_sweep_toml(path):
                ref = _sweep_ref(path, value)
            else:
                ref = SpecRun(path, path.stem)
                ref._memo["spec"] = _check_spec(path, value)
        elif not path.exists():
            raise pytest.UsageError(
                f"--run {value}: no such file or directory, and not a built-in run "
                f"({', '.join(sorted([*_builtin_names(), *references, *_curves_sets(), *_table_sets(), *published]))})"
                f". --run takes a run "
                f"directory, a spec or sweep .toml (trained on first use; the built-in ones are in fixtures/, named "
                f"without .toml), a curves folder, a reference or a run on the Hugging Face Hub "
                f"(hf://OWNER/REPO[/PATH][@REVISION]); "
                f"make a run with `claimlens train SPEC.toml --out RUN` or `claimlens import CHECKPOINTS --out RUN`")
        else:
            from claimlens.runs.importers import CHECKPOINT_SUFFIXES

            raise pytest.UsageError(
                f"--run {value}: a file that is not a run: --run takes a run directory, a spec or sweep .toml file, "
                f"a curves folder or a built-in reference or published model "
                f"({', '.join(sorted([*references, *_curves_sets(), *_table_sets(), *published]))}). "
                f"Checkpoints ({', '.join(CHECKPOINT_SUFFIXES)}) become a run with "
                f"`claimlens import {value} --out RUN`, then `--run RUN`")
        refs.append(_labelled(ref, seen))
    return refs


def _labelled(ref: RunInput, seen: set[str]) -> RunInput:
    """``ref`` under a label no earlier --run value has (``name#2``), which ``seen`` then holds."""
    label = ref.label
    n = 2
    while label in seen:
        label, n = f"{ref.label}#{n}", n + 1
    seen.add(label)
    return ref.relabelled(label) if label != ref.label else ref


def _hub_input(value: str) -> RunInput:
    """``--run hf://OWNER/REPO[/PATH][@REVISION]``: fetched now through huggingface_hub (its cache; offline, only
    the cache) so that a bad reference is a usage error before collection. A checkpoint file, or a folder of them, is
    imported into the claimlens cache once (keyed by the file's sha256 and the commit); a claimlens run directory on
    the Hub is judged where the Hub cache holds it; a curves folder like a local one. Imports torch only for an
    import."""
    from claimlens.errors import ClaimlensError
    from claimlens.runs import hub

    try:
        fetched = hub.fetch(hub.parse(value))
    except ClaimlensError as exc:  # its message starts with the reference
        raise pytest.UsageError(f"--run {exc}") from None
    ref, local = fetched.ref, fetched.local
    provenance = fetched.provenance()
    if local.is_dir() and (local / "run.json").is_file():
        inner = resolve_refs([str(local)])[0]
        return HubRun(local, inner.label, reference=value, hub=provenance)
    if local.is_dir() and (local / "index.toml").is_file():  # a curves folder (or set): as a local one
        return resolve_refs([str(local)])[0].relabelled(ref.run_name)
    import hashlib

    from claimlens.builtin import ensure_imported

    key = f"{fetched.sha256 or ref.repo_type + ':' + ref.repo_id + '/' + ref.path}@{fetched.commit}"
    try:
        run = ensure_imported(local, ref.run_name, digest=hashlib.sha256(key.encode()).hexdigest(), hub=provenance)
    except ClaimlensError as exc:
        raise pytest.UsageError(f"--run {value}: {exc}") from None
    return HubRun(run.path, run.name, reference=value, hub=provenance)


def _check_spec(path: Path, value: str):
    """The spec named with --run, read now: a bad field is a usage error (one line, exit 4), not a collection
    traceback."""
    from claimlens.config import RunSpec
    from claimlens.errors import ClaimlensError

    try:
        return RunSpec.from_toml(path)
    except ClaimlensError as exc:  # the spec's messages start with its path: said once
        raise pytest.UsageError(f"--run {value}: {str(exc).removeprefix(f'{path}: ')}") from None


def _builtin_names() -> list[str]:
    """The names of the built-in specs (``fixtures/*.toml``)."""
    from claimlens.config import FIXTURES

    return [p.stem for p in FIXTURES.glob("*.toml")] if FIXTURES.is_dir() else []


def _builtin_spec(name: str) -> Path | None:
    """The built-in spec ``fixtures/<name>.toml`` (``default``, ``pizza``, …), or None."""
    from claimlens.config import FIXTURES

    path = FIXTURES / f"{name}.toml"
    return path if "/" not in name and path.is_file() else None


def seed_variant(spec_path: Path, seed: int):
    """The spec of ``spec_path`` with ``train.seed = seed``, named ``<name>_s<seed>`` (a seed of the same recipe)."""
    import dataclasses

    from claimlens.config import RunSpec

    spec = RunSpec.from_toml(spec_path)
    return dataclasses.replace(spec, name=f"{spec.name}_s{seed}",
                               train=dataclasses.replace(spec.train, seed=seed)).validate()


def seed_refs(ref: SpecRun, n: int) -> list[SeedVariant]:
    """Seeds 0 … n−1 of a spec run but its own (``n − 1`` variants; ``ref`` is the seed its spec says)."""
    base = ref.spec()
    seeds = [s for s in range(n) if s != base.train.seed][: max(n - 1, 0)]
    return [SeedVariant(ref.path, f"{base.name}_s{s}", ref.families, builtin=ref.builtin, seed=s) for s in seeds]


def _sweep_ref(path: Path, value: str) -> Sweep:
    from claimlens.errors import SpecError
    from claimlens.runsets import SweepSpec

    try:
        sweep = SweepSpec.from_toml(path)
    except SpecError as exc:
        raise pytest.UsageError(f"--run {value}: {exc}") from None
    ref = Sweep(path, sweep.name)
    ref._memo["sweep"] = sweep
    return ref


def member_refs(ref: Sweep) -> list[SweepMember]:
    """The runs of a sweep, as inputs judged by the per-run claims."""
    return ref.members()


def builtin_sweeps() -> list[Sweep]:
    """The built-in sweeps (``fixtures/sweeps/*.toml``, the full-size ``*_full.toml`` left out)."""
    from claimlens.config import FIXTURES

    folder = FIXTURES / "sweeps"
    return [_sweep_ref(p, str(p)) for p in sorted(folder.glob("*.toml")) if not p.stem.endswith("_full")] \
        if folder.is_dir() else []


def _is_set_dir(path: Path) -> bool:
    """A curves folder whose index names an axis and values (read without torch)."""
    import tomllib

    try:
        spec = tomllib.loads((path / "index.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return "axis" in spec and "values" in spec


def _curves_sets() -> tuple[str, ...]:
    return ("nanda2022_fractions",)


def _published() -> dict[str, tuple[Path, str]]:
    """The sources' own saved models shipped with claimlens, by run name: ``(checkpoint file, description)`` from
    ``claimlens/reference/*/models/published.toml`` (read without torch)."""
    import tomllib

    out = {}
    for index in sorted(_reference_root().glob("*/models/published.toml")):
        for name, entry in tomllib.loads(index.read_text()).items():
            out[name] = (index.parent / entry["file"], entry.get("description", ""))
    return out


def _table_sets() -> dict[str, str]:
    """The built-in sets of sweep-table rows by name, with the folder (under ``claimlens/reference``) of their
    tables (``claimlens.reference.tables.SETS``, named here without importing torch)."""
    return {"zhong2023_sweep": "zhong2023"}


def _reference_root() -> Path:
    import claimlens

    return Path(claimlens.__file__).resolve().parent / "reference"


def _references() -> dict[str, Path]:
    """Built-in curves runs by name (``claimlens/reference/<name>/index.toml``), found without importing torch."""
    root = _reference_root()
    return {p.name: p for p in sorted(root.iterdir()) if (p / "index.toml").is_file()} if root.is_dir() else {}
