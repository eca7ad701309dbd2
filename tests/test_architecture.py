"""The layering of claimlens: data flows one way (store → analysis → series → claims → records → report),
and a claims session runs each checkpoint's forward pass once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "claimlens"

# Lowest first. A module may import only from layers strictly below its own (and from its own package):
# no upward imports (the store importing the trainer) and no sideways ones (the report taking a helper from
# the plugin). Lazy imports inside functions count too.
LAYERS = [
    "claimlens.errors",
    "claimlens._io",
    "claimlens.config",
    "claimlens.tasks",
    "claimlens.metrics",
    "claimlens.series",
    "claimlens.rules",
    "claimlens.thresholds",
    "claimlens.models",
    "claimlens.runs",
    "claimlens.reference",
    "claimlens.training",
    "claimlens.builtin",
    "claimlens.runsets",
    "claimlens.analysis",
    "claimlens.report",
    "claimlens.plugin",
    "claimlens.cli",
]


def _unit(module: str) -> str:
    """The layer a module belongs to (``claimlens.metrics.fourier`` → ``claimlens.metrics``)."""
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return module


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.rsplit(".", node.level - (1 if path.name == "__init__.py" else 0))[0]
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names if node.module == "claimlens"}
    return {m for m in found if m.startswith("claimlens.") and m != "claimlens.__version__"}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _modules() if m != "claimlens" and _unit(m) not in LAYERS)
    assert not unplaced, f"modules without a layer in LAYERS: {unplaced}"


def test_imports_only_point_down_the_layers():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    bad = []
    for module, path in _modules().items():
        if module == "claimlens":
            continue
        here = _unit(module)
        for target in _imports(path, module):
            there = _unit(target)
            if there != here and rank.get(there, -1) >= rank[here]:
                bad.append(f"{module} imports {target} ({there} is not below {here})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_importing_the_plugin_or_reading_a_manifest_imports_no_torch():
    code = ("import sys, claimlens.plugin, claimlens.runs.manifest, claimlens.report.document; "
            "print(sorted(m for m in ('torch', 'transformer_lens', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"imported {out}"


COUNTER = '''
import json, os
import claimlens.models as models

_forward = models.forward
CALLS = {}

def counting_forward(params, tokens, cfg, *, cache=False):
    p = int(params["unembed.W_U"].shape[-1])
    if tokens.shape[0] == p * p:  # a forward pass over the whole input grid
        key = repr(float(params["embed.W_E"].double().sum()))
        CALLS[key] = CALLS.get(key, 0) + 1
    return _forward(params, tokens, cfg, cache=cache)

models.forward = counting_forward

def pytest_sessionfinish(session):
    with open(os.environ["FORWARD_COUNTS"], "w") as fh:
        json.dump(CALLS, fh)
'''


def test_a_claims_session_runs_each_checkpoints_forward_once(tiny_run, tmp_path):
    """Every claim but the LLC ones (whose SGLD chains run their own forward passes) on a fresh cache: the
    full-grid forward pass of each checkpoint runs exactly once, the final checkpoint's included."""
    (tmp_path / "forward_counter.py").write_text(COUNTER)
    counts = tmp_path / "counts.json"
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path), "FORWARD_COUNTS": str(counts),
           "CLAIMLENS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), "--run", str(tiny_run.path), "-q",
                           "-k", "not llc", "-p", "forward_counter", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                           "--claims-report", str(tmp_path / "report")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert counts.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = json.loads(counts.read_text())
    assert len(calls) == len(tiny_run.epochs), f"{len(calls)} checkpoints forwarded of {len(tiny_run.epochs)}"
    assert max(calls.values()) == 1, f"checkpoints forwarded more than once: {sorted(calls.values())[-5:]}"
