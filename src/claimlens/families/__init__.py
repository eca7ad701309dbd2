"""The claim families, one folder each: ``families/<family>/`` with ``metrics.py`` (pure tensor functions),
``analysis.py`` (run → series, cached), ``rules.py`` (the claims' specs and rules, pure) and ``fixtures.py`` (the
family's pytest fixtures and the built-in runs it judges), where the family has them; ``claims/test_<family>.py``
states its claims as tests. A family imports only the core (:mod:`claimlens.core`) and the layers below it, never
another family. A family's name is its folder's, carried on every spec (``ClaimSpec.family``) and record.

``CLAIMS`` maps every built-in claim id to its :class:`~claimlens.core.verdicts.ClaimSpec` (``claimlens thresholds``
prints their thresholds). Importing this package imports no torch; ``CLAIMS`` imports the rule modules.
"""

from __future__ import annotations

import importlib


def _discover() -> tuple[str, ...]:
    """Every sub-package of this package, by name: adding a family is adding its folder."""
    import pkgutil

    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


FAMILIES = _discover()  # ("grokking", "induction", "llc", "lowrank", "mlp", "pizza", "sets")

__all__ = ["CLAIMS", "FAMILIES", "fixtures_of", "rules_of"]


def fixtures_of(family: str):
    """The fixtures module of ``family`` (``claimlens.families.<family>.fixtures``: its pytest fixtures and
    ``BUILTIN_RUNS``), or None for a family with no fixtures of its own (``sets``, whose claims take ``run_set``)."""
    import importlib.util

    name = f"claimlens.families.{family}.fixtures"
    return importlib.import_module(name) if importlib.util.find_spec(name) is not None else None


def rules_of(family: str):
    """The rules module of ``family`` (``claimlens.families.<family>.rules``)."""
    return importlib.import_module(f"claimlens.families.{family}.rules")


def __getattr__(name: str):
    if name == "CLAIMS":
        from claimlens.core.verdicts import ClaimSpec

        claims = {spec.id: spec for family in FAMILIES for spec in vars(rules_of(family)).values()
                  if isinstance(spec, ClaimSpec)}
        globals()["CLAIMS"] = claims
        return claims
    raise AttributeError(f"module 'claimlens.families' has no attribute {name!r}")


def rule_functions(family: str) -> dict[str, list[str]]:
    """claim id -> the names of the functions of ``family``'s rules module bound to it (decorated ``@SPEC.rule``,
    :meth:`claimlens.core.verdicts.ClaimSpec.rule`), read from the module's source without importing it."""
    return {cid: sorted(fns) for cid, (fns, _) in _rule_index(family).items()}


def rule_version(claim_id: str, family: str) -> str:
    """A digest of what decides ``claim_id``'s verdict: its rule functions and the module's functions they call
    (their code, not their docstrings or comments), its thresholds' values and kinds, its ``min_checkpoints`` and
    kind. The reference runs (:mod:`claimlens.report.references`) are stored under it, so a rule changed without
    regenerated references shows (``tests/test_validation.py``). 12 hex digits; ``""`` for a claim whose family has
    no rules module here (a claim of the user's own)."""
    index = _rule_index(family)
    if claim_id not in index:
        return ""
    import hashlib

    _, text = index[claim_id]
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_INDEX: dict[str, dict[str, tuple[set[str], str]]] = {}


def _rule_index(family: str) -> dict[str, tuple[set[str], str]]:
    """claim id -> (its rule functions, the text its version digests), per family, parsed once."""
    if family in _INDEX:
        return _INDEX[family]
    import importlib.util

    spec = importlib.util.find_spec(f"claimlens.families.{family}.rules") if family in FAMILIES else None
    if spec is None or spec.origin is None:
        _INDEX[family] = {}
        return {}
    with open(spec.origin, encoding="utf-8") as f:
        _INDEX[family] = index_rules(f.read())
    return _INDEX[family]


def index_rules(source: str) -> dict[str, tuple[set[str], str]]:
    """claim id -> (its rule functions, the text its version digests) of one rules module's ``source``."""
    import ast

    tree = ast.parse(source)
    consts: dict[str, tuple[str, ast.Call]] = {}  # spec constant -> (claim id, its ClaimSpec(...) call)
    functions: dict[str, ast.FunctionDef] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", None) == "ClaimSpec" and isinstance(node.targets[0], ast.Name):
            cid = next((kw.value.value for kw in node.value.keywords if kw.arg == "id"
                        and isinstance(kw.value, ast.Constant)), None)
            if cid is not None:
                consts[node.targets[0].id] = (cid, node.value)
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node

    def code(fn: ast.FunctionDef) -> str:
        body = fn.body[1:] if fn.body and isinstance(fn.body[0], ast.Expr) and \
            isinstance(getattr(fn.body[0], "value", None), ast.Constant) else fn.body
        return ast.dump(ast.Module(body=body, type_ignores=[])) + ast.dump(fn.args)

    def spec_text(call: ast.Call) -> str:  # what of the spec decides a verdict: thresholds, kind, min_checkpoints
        keep = [kw for kw in call.keywords if kw.arg in ("thresholds", "kind", "min_checkpoints", "model", "task")]
        out = []
        for kw in keep:
            if kw.arg == "thresholds" and isinstance(kw.value, ast.Dict):  # each threshold's name and value only
                for k, v in zip(kw.value.keys, kw.value.values):
                    args = [ast.dump(a) for a in getattr(v, "args", [])[:1]]
                    flags = [ast.dump(x) for x in getattr(v, "keywords", []) if x.arg in ("integer", "positive")]
                    out.append(f"{ast.dump(k)}={args}{flags}")
            else:
                out.append(f"{kw.arg}={ast.dump(kw.value)}")
        return ";".join(out)

    index: dict[str, tuple[set[str], str]] = {}
    for name, fn in functions.items():  # ``@SPEC.rule`` binds a rule to its spec (ClaimSpec.rule)
        for d in fn.decorator_list:
            if isinstance(d, ast.Attribute) and d.attr == "rule" and isinstance(d.value, ast.Name) and \
                    d.value.id in consts:
                index.setdefault(consts[d.value.id][0], (set(), ""))[0].add(name)
    for cid, call in consts.values():
        fns = index.get(cid, (set(), ""))[0]
        seen: set[str] = set()
        todo = sorted(fns)
        while todo:  # the rule functions and, transitively, the module's functions they call
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            todo += [n.id for n in ast.walk(functions[f]) if isinstance(n, ast.Name) and n.id in functions
                     and n.id not in seen]
        index[cid] = (fns, spec_text(call) + "|" + "|".join(code(functions[f]) for f in sorted(seen)))
    return index
