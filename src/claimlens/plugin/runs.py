"""What ``--run`` values mean: a run directory, or a spec TOML to train (once) and cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_SPEC = "fixtures/default.toml"


@dataclass(frozen=True)
class RunRef:
    """A run named on the command line, resolved to a label cheaply (without training or torch)."""

    path: Path
    kind: str  # "run" (a run directory) or "spec" (a TOML spec, trained and cached on first use)
    label: str

    def epochs(self) -> list[int]:
        """Checkpoint epochs, known without training: from the manifest, or from the spec."""
        if self.kind == "run":
            return [c["epoch"] for c in json.loads((self.path / "run.json").read_text())["checkpoints"]]
        from claimlens.config import RunSpec

        t = RunSpec.from_toml(self.path).train
        return sorted(set(range(0, t.epochs + 1, t.checkpoint_every)) | {t.epochs})

    def describe(self) -> dict:
        """The run as recorded in claims.json (manifest fields if it exists on disk)."""
        out = {"label": self.label, "kind": self.kind, "path": str(self.path)}
        run_dir = self.path
        if self.kind == "spec":
            from claimlens.config import RunSpec
            from claimlens.runs.builtin import cached_run_path

            run_dir = cached_run_path(RunSpec.from_toml(self.path))
        manifest = run_dir / "run.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            out.update({"run_dir": str(run_dir), "name": m["name"], "content_hash": m["content_hash"],
                        "spec": m["spec"], "source": m["source"], "n_checkpoints": len(m["checkpoints"])})
        return out

    def open(self, device: str = "cpu"):
        from claimlens.errors import ClaimlensError

        try:
            if self.kind == "run":
                from claimlens.runs.store import Run

                return Run.open(self.path)
            from claimlens.config import RunSpec
            from claimlens.runs.builtin import ensure_run

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
        if path.is_dir():
            manifest = path / "run.json"
            if not manifest.is_file():
                raise pytest.UsageError(f"--run {value}: directory has no run.json; it is not a claimlens run")
            try:
                name = json.loads(manifest.read_text())["name"]
            except (ValueError, KeyError):
                raise pytest.UsageError(f"--run {value}: run.json is not a valid manifest") from None
            ref = RunRef(path, "run", str(name))
        elif path.is_file() and path.suffix == ".toml":
            ref = RunRef(path, "spec", path.stem)
        else:
            raise pytest.UsageError(f"--run {value}: expected a run directory or a spec .toml file")
        label = ref.label
        n = 2
        while label in seen:
            label, n = f"{ref.label}#{n}", n + 1
        seen.add(label)
        refs.append(RunRef(ref.path, ref.kind, label))
    return refs
