"""The layering of claimlens: data flows one way (store → analysis → series → claims → records → report),
and a claims session runs each checkpoint's forward pass once."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "claimlens"

# Lowest first. A module may import only from layers strictly below its own (and from its own package):
# no upward imports (the store importing the trainer) and no sideways ones (the report taking a helper from
# the plugin). Lazy imports inside functions count too. A family's fixtures (``families/<family>/fixtures.py``)
# sit above the plugin, whose helpers they use; the plugin registers them by name.
LAYERS = [
    "claimlens.errors",
    "claimlens._io",
    "claimlens.config",
    "claimlens.tasks",
    "claimlens.models",
    "claimlens.core",
    "claimlens.runs",
    "claimlens.reference",
    "claimlens.training",
    "claimlens.builtin",
    "claimlens.executor",
    "claimlens.runsets",
    "claimlens.families",
    "claimlens.thresholds",
    "claimlens.report",
    "claimlens.plugin",
    "claimlens.families.*.fixtures",
    "claimlens.cli",
]
FAMILIES_DIR = PACKAGE / "families"
# The core modules that are pure functions and data (no files, no models, no pytest): what a family's metrics and
# rules may build on.
PURE_CORE = {"claimlens.core.fourier", "claimlens.core.losses", "claimlens.core.weights", "claimlens.core.series",
             "claimlens.core.verdicts", "claimlens.core.sources", "claimlens.core.sampling", "claimlens.core.artifacts"}


def _family(module: str) -> str | None:
    """``claimlens.families.pizza.rules`` → ``pizza``."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["claimlens", "families"] else None


def _unit(module: str) -> str:
    """The layer a module belongs to (``claimlens.core.fourier`` → ``claimlens.core``)."""
    if _family(module) and module.endswith(".fixtures"):
        return "claimlens.families.*.fixtures"
    for layer in sorted(LAYERS, key=len, reverse=True):
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
    """The claimlens modules ``path`` imports: ``from claimlens.core import fourier`` names claimlens.core.fourier,
    ``from claimlens.core.series import Series`` claimlens.core.series."""
    modules = _modules()
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
                found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
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
            same_family = _family(module) is not None and _family(module) == _family(target)
            if there != here and not same_family and rank.get(there, -1) >= rank[here]:
                bad.append(f"{module} imports {target} ({there} is not below {here})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_only_the_bridge_module_imports_transformer_lens():
    importers = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "transformer_lens" or n.startswith("transformer_lens.") for n in names):
                importers.append(module)
    assert sorted(set(importers)) == ["claimlens.models.bridge"]


def test_every_family_has_its_folder_its_claims_file_and_its_name_on_its_specs():
    from claimlens.core.verdicts import ClaimSpec
    from claimlens.families import FAMILIES, rules_of

    folders = sorted(p.name for p in FAMILIES_DIR.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(FAMILIES)
    for family in FAMILIES:
        assert (ROOT / "claims" / f"test_{family}.py").is_file(), f"family {family} has no claims/test_{family}.py"
        specs = [s for s in vars(rules_of(family)).values() if isinstance(s, ClaimSpec)]
        assert specs, f"family {family} declares no claim"
        assert {s.family for s in specs} == {family}, f"{family}: specs carry {sorted({s.family for s in specs})}"


def test_no_family_imports_another_and_metrics_and_rules_stay_pure():
    """A family builds on the core only; its metrics are pure tensor functions (the pure core, its own metrics),
    its rules pure functions of numbers and series (the pure core, its own metrics' result types)."""
    bad = []
    for module, path in _modules().items():
        family = _family(module)
        if family is None:
            continue
        role = module.rsplit(".", 1)[-1]
        for target in _imports(path, module):
            other = _family(target)
            if other is not None and other != family:
                bad.append(f"{module} imports another family: {target}")
            if role in ("metrics", "rules"):
                allowed = PURE_CORE | {f"claimlens.families.{family}.metrics", "claimlens.core", "claimlens.families",
                                       f"claimlens.families.{family}"}
                if target not in allowed and not target.startswith(tuple(m + "." for m in PURE_CORE)):
                    bad.append(f"{module} ({role}: pure) imports {target}")
    for module, path in _modules().items():
        if module in PURE_CORE:
            bad += [f"{module} (pure core) imports {t}" for t in _imports(path, module)
                    if t not in PURE_CORE and t not in ("claimlens.core", "claimlens.errors")]
    assert not bad, "\n".join(sorted(bad))


def test_claims_files_import_only_their_family_the_core_and_the_plugin():
    bad = []
    for path in sorted((ROOT / "claims").glob("test_*.py")):
        family = path.stem.removeprefix("test_")
        for target in _imports(path, f"claims.{path.stem}"):
            other = _family(target)
            if other is not None and other != family:
                bad.append(f"claims/{path.name} imports another family: {target}")
    assert not bad, "\n".join(bad)


# What a run input or an opened run is: its class (claimlens.plugin.runs, Run, CurvesRun) and ``has_weights`` say it.
# ``kind`` stays as the string claims.json records; nothing may branch on it. (Model and task kinds,
# ``spec.model.kind == "transformer"``, are another matter and allowed here.)
RUN_KINDS = {"run", "spec", "curves", "member", "seed", "sweep", "curves_set", "table_set", "table_row", "no_set",
             "hub", "published"}


def _run_kind_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing ``x.kind`` or ``getattr(x, "kind", …)`` with one of :data:`RUN_KINDS` (==, !=, in, not in)."""
    def is_kind(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "kind"
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "kind")

    def names_run_kind(node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return node.value in RUN_KINDS
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_run_kind(e) for e in node.elts)
        return False

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(is_kind(a) for a in sides) and any(names_run_kind(b) for b in sides):
                lines.append(node.lineno)
    return lines


def _run_input_type_tests(tree: ast.AST) -> list[int]:
    """Lines calling ``isinstance(x, C)`` with ``C`` one of the run-input classes but their base."""
    from claimlens.plugin import runs

    kinds = {name for name, v in vars(runs).items()
             if isinstance(v, type) and issubclass(v, runs.RunInput) and v is not runs.RunInput}
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
            and len(node.args) == 2 and any(isinstance(n, ast.Name) and n.id in kinds for n in ast.walk(node.args[1]))]


def test_nothing_branches_on_a_run_kind_string():
    """Run inputs say what they are through their methods and class attributes (``has_weights``, ``is_set``,
    ``present``, ``judged_runs``): no module compares a kind string or tests for one input class."""
    bad = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "claims").rglob("*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for line in _run_kind_comparisons(tree):
            bad.append(f"{path.relative_to(ROOT)}:{line} compares a run's kind with a run-kind string (use its class "
                       f"or has_weights)")
        for line in _run_input_type_tests(tree) if path.name != "runs.py" else []:
            bad.append(f"{path.relative_to(ROOT)}:{line} tests for one kind of run input (give RunInput a method)")
    assert not bad, "\n".join(bad)


def test_the_run_kind_check_finds_what_it_forbids():
    found = _run_kind_comparisons(ast.parse(
        'a = ref.kind == "sweep"\nb = getattr(run, "kind", None) != "curves"\nc = x.kind in ("spec", "seed")\n'
        'd = spec.model.kind == "transformer"\ne = cfg.kind == "attn_only"\n'))
    assert found == [1, 2, 3]


def test_importing_the_plugin_or_reading_a_manifest_imports_no_torch():
    code = ("import sys, claimlens.plugin, claimlens.runs.manifest, claimlens.report.document, claimlens.families; "
            "[claimlens.families.fixtures_of(f) for f in claimlens.families.FAMILIES]; "
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
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])  # keep the code under test
    env = {**os.environ, "PYTHONPATH": path, "FORWARD_COUNTS": str(counts),
           "CLAIMLENS_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), "--run", str(tiny_run.path), "-q",
                           "-k", "not llc", "-p", "forward_counter", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                           "--claims-report", str(tmp_path / "report")],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert counts.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = json.loads(counts.read_text())
    assert len(calls) == len(tiny_run.epochs), f"{len(calls)} checkpoints forwarded of {len(tiny_run.epochs)}"
    assert max(calls.values()) == 1, f"checkpoints forwarded more than once: {sorted(calls.values())[-5:]}"
