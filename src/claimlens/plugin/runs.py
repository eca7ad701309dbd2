"""What ``--run`` values mean: a run directory, a spec TOML to train (once) and cache, a curves folder, a sweep
spec (a run set, trained member by member on first use) or a built-in curves set (``nanda2022_fractions``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
class RunRef:
    """A run named on the command line, resolved to a label cheaply (without training or torch)."""

    path: Path
    # "run" (a run directory), "spec" (a TOML spec, trained and cached on first use), "curves", "member" (one run
    # of a sweep: path is the sweep spec, member its label), "seed" (a spec with train.seed = member, from
    # --claims-seeds); run sets: "sweep" (a sweep spec), "curves_set"
    kind: str
    label: str
    member: str = ""
    families: frozenset | None = None  # the claim families that judge this run (None: all of them)
    builtin: bool = False  # one of a plain session's built-in runs (DEFAULT_SESSION)

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

    @property
    def is_set(self) -> bool:
        return self.kind in SET_KINDS

    def _spec(self):
        """The :class:`claimlens.config.RunSpec` of a spec, seed variant or sweep member."""
        if self.kind == "spec":
            from claimlens.config import RunSpec

            return RunSpec.from_toml(self.path)
        return self._member_spec()

    def _member_spec(self):
        if self.kind == "seed":
            return seed_variant(self.path, int(self.member))
        from claimlens.runsets import SweepSpec

        return next(m.spec for m in SweepSpec.from_toml(self.path).members() if m.label == self.member)

    def untrained(self) -> bool:
        """Whether opening this run will train it first: a spec, seed variant or sweep member whose run the cache
        does not hold complete (a run directory, curves or a set: False). Cheap: reads the spec and a manifest."""
        if self.kind not in ("spec", "seed", "member"):
            return False
        from claimlens.builtin import is_cached

        try:
            return not is_cached(self._spec())
        except Exception:  # noqa: BLE001 - opening the run reports a bad spec properly; this is only a notice
            return False

    def epochs(self) -> list[int]:
        """Checkpoint epochs, known without training: from the manifest, or from the spec (none for curves)."""
        if self.kind in ("curves", *SET_KINDS):
            return []
        if self.kind == "run":
            from claimlens.runs.manifest import read_manifest

            return [c["epoch"] for c in read_manifest(self.path)["checkpoints"]]
        return self._spec().train.checkpoint_epochs

    def task_kind(self) -> str | None:
        """The ``task.kind`` of the run, read from its spec or manifest without training (None: a curves run or a
        set, which say nothing about it here)."""
        return self._kind_of("task", "modular_addition")

    def model_kind(self) -> str | None:
        """The ``model.kind`` of the run, read like :meth:`task_kind`."""
        return self._kind_of("model", "transformer")

    def _kind_of(self, section: str, default: str) -> str | None:
        """``<section>.kind`` of the run's spec (``default`` where a stored manifest's spec omits it)."""
        if self.kind in ("curves", *SET_KINDS):
            return None
        if self.kind == "run":
            from claimlens.runs.manifest import read_manifest

            return read_manifest(self.path)["spec"].get(section, {}).get("kind", default)
        return getattr(self._spec(), section).kind

    def describe(self) -> dict:
        """The run as recorded in claims.json (manifest fields if it exists on disk)."""
        out = {"label": self.label, "kind": self.kind, "path": str(self.path)}
        if self.kind == "sweep":
            from claimlens.builtin import cached_run_path
            from claimlens.runsets import SweepSpec

            sweep = SweepSpec.from_toml(self.path)
            out.update({"name": sweep.name, "provenance": sweep.description, "axes": list(sweep.axes),
                        "members": [{"label": m.label, "values": m.values, "run_dir": str(cached_run_path(m.spec)),
                                     "spec_hash": m.spec.hash} for m in sweep.members()]})
            return out
        if self.kind == "curves_set":
            from claimlens.runsets import curves_set

            found = curves_set(self.path if self.path.is_dir() else self.label).describe()
            out.update({"name": found["name"], "provenance": found["description"], "axes": found["axes"],
                        "members": [{"label": m["name"], "values": m["values"], "content_hash": m["content_hash"]}
                                    for m in found["members"]]})
            return out
        if self.kind == "curves":
            from claimlens import reference

            run = reference.load(self.path)
            out.update({"name": run.name, "content_hash": run.content_hash, "provenance": run.description})
            return out
        spec = self._spec() if self.kind in ("spec", "member", "seed") else None
        run_dir = self.path
        if spec is not None:
            from claimlens.builtin import cached_run_path

            run_dir = cached_run_path(spec)
        from claimlens.errors import RunError
        from claimlens.runs.manifest import read_manifest

        try:
            m = read_manifest(run_dir)
        except RunError:
            m = None
        if m is not None:
            # a spec's run carries the spec's name even when the cache holds it under another (Run.named); "spec"
            # stays what was trained
            name = spec.name if spec is not None else m["name"]
            out.update({"run_dir": str(run_dir), "name": name, "content_hash": m["content_hash"],
                        "spec": m["spec"], "source": m["source"], "n_checkpoints": len(m["checkpoints"])})
        return out

    def axes(self) -> tuple[str, ...] | None:
        """The axes a run set varies, read from its spec without training (None when not a set)."""
        if self.kind == "sweep":
            from claimlens.runsets import SweepSpec

            return tuple(SweepSpec.from_toml(self.path).axes)
        if self.kind == "curves_set":
            from claimlens.runsets import curves_set

            return tuple(curves_set(self.path if self.path.is_dir() else self.label).axes)
        return None

    def open(self, device: str = "cpu"):
        from claimlens.errors import ClaimlensError

        try:
            if self.kind == "curves":
                from claimlens import reference

                return reference.load(self.path)
            if self.kind == "run":
                from claimlens.runs.store import Run

                return Run.open(self.path)
            if self.kind == "curves_set":
                from claimlens.runsets import curves_set

                return curves_set(self.path if self.path.is_dir() else self.label)
            if self.kind == "sweep":
                from claimlens.runsets import SweepSpec, ensure_set

                return ensure_set(SweepSpec.from_toml(self.path), device=device)
            from claimlens.builtin import ensure_run

            return ensure_run(self._spec(), device=device)
        except ClaimlensError as exc:
            pytest.fail(f"--run {self.path}: {exc}", pytrace=False)


def resolve_refs(values: list[str]) -> list[RunRef]:
    from claimlens.config import FIXTURES

    if not values:
        if not (FIXTURES / DEFAULT_SPEC).is_file():
            raise pytest.UsageError(f"no --run given and the built-in default spec {DEFAULT_SPEC} is not in {FIXTURES}")
        return [RunRef(FIXTURES / spec, "spec", Path(spec).stem, families=families, builtin=True)
                for spec, families in default_session().items() if (FIXTURES / spec).is_file()]
    refs, seen = [], set()
    for value in values:
        path = Path(value)
        references = _references()
        if not path.exists() and value in _curves_sets():
            refs.append(RunRef(Path(value), "curves_set", value))
            seen.add(value)
            continue
        if not path.exists() and value in references:
            path = references[value]  # a built-in reference by name: --run nanda2022
        if path.is_dir() and not (path / "run.json").is_file() and _is_set_dir(path):
            ref = RunRef(path, "curves_set", path.name)
        elif path.is_dir() and not (path / "run.json").is_file() and (
                (path / "index.toml").is_file() or path.name in references):
            ref = RunRef(path, "curves", path.name)
        elif path.is_dir():
            from claimlens.errors import RunError
            from claimlens.runs.manifest import MANIFEST, read_manifest

            if not (path / MANIFEST).is_file():
                weights = [f for pattern in ("*.pt", "*.pth", "*.ckpt", "*.bin", "*.safetensors")
                           for f in path.glob(pattern)]
                hint = (f"; it holds {len(weights)} checkpoint files: make a run of them with `claimlens import "
                        f"{value} --spec SPEC.toml --out RUN`, then --run RUN" if weights else
                        "; --run takes a run directory (`claimlens train SPEC.toml --out RUN` or `claimlens import`)")
                raise pytest.UsageError(f"--run {value}: directory has no run.json; it is not a claimlens run "
                                        f"(nor a curves folder with an index.toml){hint}")
            try:
                name = read_manifest(path)["name"]
            except RunError as exc:
                raise pytest.UsageError(f"--run {value}: run.json is not a valid manifest ({exc})") from None
            ref = RunRef(path, "run", str(name))
        elif path.is_file() and path.suffix == ".toml":
            from claimlens.runsets import is_sweep_toml

            if is_sweep_toml(path):
                ref = _sweep_ref(path, value)
            else:
                _check_spec(path, value)
                ref = RunRef(path, "spec", path.stem)
        elif not path.exists():
            raise pytest.UsageError(
                f"--run {value}: no such file or directory, and not a built-in reference "
                f"({', '.join(sorted([*references, *_curves_sets()]))}). --run takes a run directory, a spec or sweep "
                f".toml (trained on first use; the built-in ones are in fixtures/), a curves folder or a reference; "
                f"make a run with `claimlens train SPEC.toml --out RUN` or `claimlens import CHECKPOINTS --out RUN`")
        else:
            raise pytest.UsageError(f"--run {value}: expected a run directory, a spec .toml file, a sweep .toml file, "
                                    f"a curves folder or a built-in reference "
                                    f"({', '.join(sorted([*references, *_curves_sets()]))})")
        label = ref.label
        n = 2
        while label in seen:
            label, n = f"{ref.label}#{n}", n + 1
        seen.add(label)
        refs.append(RunRef(ref.path, ref.kind, label, ref.member, ref.families))
    return refs


SET_KINDS = ("sweep", "curves_set")


def _check_spec(path: Path, value: str) -> None:
    """A spec named with --run is read now: a bad field is a usage error (one line, exit 4), not a collection
    traceback."""
    from claimlens.config import RunSpec
    from claimlens.errors import ClaimlensError

    try:
        RunSpec.from_toml(path)
    except ClaimlensError as exc:
        raise pytest.UsageError(f"--run {value}: {exc}") from None


def seed_variant(spec_path: Path, seed: int):
    """The spec of ``spec_path`` with ``train.seed = seed``, named ``<name>_s<seed>`` (a seed of the same recipe)."""
    import dataclasses

    from claimlens.config import RunSpec

    spec = RunSpec.from_toml(spec_path)
    return dataclasses.replace(spec, name=f"{spec.name}_s{seed}",
                               train=dataclasses.replace(spec.train, seed=seed)).validate()


def seed_refs(ref: RunRef, n: int) -> list[RunRef]:
    """Seeds 1 … n−1 of a spec run (seed 0 is ``ref`` itself when its spec says seed 0)."""
    from claimlens.config import RunSpec

    base = RunSpec.from_toml(ref.path)
    seeds = [s for s in range(n) if s != base.train.seed][: max(n - 1, 0)]
    return [RunRef(ref.path, "seed", f"{base.name}_s{s}", str(s), ref.families, builtin=ref.builtin) for s in seeds]


def _sweep_ref(path: Path, value: str) -> RunRef:
    from claimlens.errors import SpecError
    from claimlens.runsets import SweepSpec

    try:
        sweep = SweepSpec.from_toml(path)
    except SpecError as exc:
        raise pytest.UsageError(f"--run {value}: {exc}") from None
    return RunRef(path, "sweep", sweep.name)


def member_refs(ref: RunRef) -> list[RunRef]:
    """The runs of a sweep, as refs judged by the per-run claims."""
    from claimlens.runsets import SweepSpec

    return [RunRef(ref.path, "member", m.label, m.label) for m in SweepSpec.from_toml(ref.path).members()]


def builtin_sweeps() -> list[RunRef]:
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


def _references() -> dict[str, Path]:
    """Built-in curves runs by name (``claimlens/reference/<name>/index.toml``), found without importing torch."""
    import claimlens

    root = Path(claimlens.__file__).resolve().parent / "reference"
    return {p.name: p for p in sorted(root.iterdir()) if (p / "index.toml").is_file()} if root.is_dir() else {}
