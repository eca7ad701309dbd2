"""What ``--run`` values mean: a run directory, or a spec TOML to train (once) and cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_SPEC = "fixtures/default.toml"


@dataclass(frozen=True)
class RunRef:
    """A run named on the command line, resolved to a label cheaply (without training or torch)."""

    path: Path
    kind: str  # "run" (a run directory), "spec" (a TOML spec, trained and cached on first use) or "curves"
    label: str

    def epochs(self) -> list[int]:
        """Checkpoint epochs, known without training: from the manifest, or from the spec (none for curves)."""
        if self.kind == "curves":
            return []
        if self.kind == "run":
            from claimlens.runs.manifest import read_manifest

            return [c["epoch"] for c in read_manifest(self.path)["checkpoints"]]
        from claimlens.config import RunSpec

        return RunSpec.from_toml(self.path).train.checkpoint_epochs

    def describe(self) -> dict:
        """The run as recorded in claims.json (manifest fields if it exists on disk)."""
        out = {"label": self.label, "kind": self.kind, "path": str(self.path)}
        if self.kind == "curves":
            from claimlens import reference

            run = reference.load(self.path)
            out.update({"name": run.name, "content_hash": run.content_hash, "provenance": run.description})
            return out
        run_dir = self.path
        if self.kind == "spec":
            from claimlens.builtin import cached_run_path
            from claimlens.config import RunSpec

            run_dir = cached_run_path(RunSpec.from_toml(self.path))
        from claimlens.errors import RunError
        from claimlens.runs.manifest import read_manifest

        try:
            m = read_manifest(run_dir)
        except RunError:
            m = None
        if m is not None:
            out.update({"run_dir": str(run_dir), "name": m["name"], "content_hash": m["content_hash"],
                        "spec": m["spec"], "source": m["source"], "n_checkpoints": len(m["checkpoints"])})
        return out

    def open(self, device: str = "cpu"):
        from claimlens.errors import ClaimlensError

        try:
            if self.kind == "curves":
                from claimlens import reference

                return reference.load(self.path)
            if self.kind == "run":
                from claimlens.runs.store import Run

                return Run.open(self.path)
            from claimlens.builtin import ensure_run
            from claimlens.config import RunSpec

            return ensure_run(RunSpec.from_toml(self.path), device=device)
        except ClaimlensError as exc:
            pytest.fail(f"--run {self.path}: {exc}", pytrace=False)


def resolve_refs(values: list[str], rootdir: Path) -> list[RunRef]:
    if not values:
        default = rootdir / DEFAULT_SPEC
        if not default.is_file():
            raise pytest.UsageError(f"no --run given and the built-in default spec {DEFAULT_SPEC} is not under {rootdir}")
        values = [str(default)]
    refs, seen = [], set()
    for value in values:
        path = Path(value)
        references = _references()
        if not path.exists() and value in references:
            path = references[value]  # a built-in reference by name: --run nanda2022
        if path.is_dir() and not (path / "run.json").is_file() and (
                (path / "index.toml").is_file() or path.name in references):
            ref = RunRef(path, "curves", path.name)
        elif path.is_dir():
            from claimlens.errors import RunError
            from claimlens.runs.manifest import MANIFEST, read_manifest

            if not (path / MANIFEST).is_file():
                raise pytest.UsageError(f"--run {value}: directory has no run.json; it is not a claimlens run "
                                        f"(nor a curves folder with an index.toml)")
            try:
                name = read_manifest(path)["name"]
            except RunError as exc:
                raise pytest.UsageError(f"--run {value}: run.json is not a valid manifest ({exc})") from None
            ref = RunRef(path, "run", str(name))
        elif path.is_file() and path.suffix == ".toml":
            ref = RunRef(path, "spec", path.stem)
        else:
            raise pytest.UsageError(f"--run {value}: expected a run directory, a spec .toml file, a curves folder or "
                                    f"a built-in reference ({', '.join(sorted(references))})")
        label = ref.label
        n = 2
        while label in seen:
            label, n = f"{ref.label}#{n}", n + 1
        seen.add(label)
        refs.append(RunRef(ref.path, ref.kind, label))
    return refs


def _references() -> dict[str, Path]:
    """Built-in curves runs by name (``claimlens/reference/<name>/index.toml``), found without importing torch."""
    import claimlens

    root = Path(claimlens.__file__).resolve().parent / "reference"
    return {p.name: p for p in sorted(root.iterdir()) if (p / "index.toml").is_file()} if root.is_dir() else {}
