"""Search for a default run spec on which the paper runs' phenomena show (issue 15, item 8).

Each candidate is the default spec with some fields changed; each is trained with several seeds (cached like any
built-in run) and judged by ``pytest claims/`` (the learning-coefficient claims left out: they are judged on the
chosen spec alone, being the costly part). The rules are never touched: only the run changes.

    python scripts/default_spec_search.py --seeds 0 1 2 \\
        --candidate "lr1e-3:train.lr=1e-3,train.epochs=5000,train.checkpoint_every=40"

Prints, per candidate and seed, the training time, the phases and the verdict of every target claim (the claims
that pass on ≥ 2 of 3 paper seeds and failed on the old default) with its failed checks, then every claim whose
verdict differs from the old default's; keeps every row in a JSON file (``--json``) and tabulates it as Markdown
(``--markdown``, with ``--reference`` claims.json files on top: the paper seeds' come from
``PAPER=1 scripts/reference_runs.sh``). Candidates whose training exceeds ``--max-train-s`` (the issue's 2-minute
budget) are marked "over budget" in the log, the JSON and the table, not dropped. Every candidate is checked before
the first one trains.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

from claimlens.builtin import FIXTURES, cached_run_path, ensure_run
from claimlens.config import RunSpec
from claimlens.errors import ClaimlensError
from claimlens.runs.manifest import read_manifest
from claimlens.runs.store import MANIFEST

TARGETS = (
    "excluded_loss_rises_during_circuit_formation",
    "gini_fourier_sparsity_jumps_in_cleanup",
    "commutativity_symmetric_weights_and_neurons",
    "neuron_logit_map_is_rank_10",
    "neurons_cluster_by_single_frequency",
)
ROOT = Path(__file__).resolve().parents[1]


NAME = re.compile(r"[A-Za-z0-9_.-]+")


def parse_candidate(text: str) -> tuple[str, dict[str, object]]:
    name, _, body = text.partition(":")
    if not name or not body:
        raise SystemExit(f"--candidate {text!r}: expected NAME:section.key=value,... (e.g. lr1e-3:train.lr=1e-3)")
    if not NAME.fullmatch(name):
        raise SystemExit(f"--candidate {text!r}: the name {name!r} may hold only letters, digits, '_', '.' and '-'")
    changes = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or "." not in key:
            raise SystemExit(f"--candidate {text!r}: {item!r} is not section.key=value")
        if key == "train.seed":
            raise SystemExit(f"--candidate {text!r}: give seeds with --seeds, not train.seed")
        try:
            changes[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise SystemExit(f"--candidate {text!r}: {value.strip()!r} is not a TOML value (a number, true/false or "
                             f"a quoted string)") from None
    return name, changes


def make_spec(name: str, changes: dict[str, object], seed: int, out: Path | None) -> Path | RunSpec:
    """The default spec with ``changes`` and ``seed``, checked; written to ``out/search_<name>_s<seed>.toml`` (its
    path returned) or, with ``out=None``, only checked (the spec returned)."""
    data = tomllib.loads((FIXTURES / "default.toml").read_text())
    data.pop("description", None)
    for key, value in {**changes, "train.seed": seed}.items():
        section, field = key.split(".", 1)
        if section not in data or field not in data[section]:
            raise SystemExit(f"candidate {name!r}: {key} is not a field of fixtures/default.toml (a candidate "
                             f"changes the default spec's own fields)")
        data[section][field] = value
    data["name"] = f"search_{name}_s{seed}"
    data["description"] = f"default-spec search candidate {name} ({changes}), seed {seed}"
    try:
        spec = RunSpec.from_dict(data, source=f"candidate {name!r}").validate()
    except ClaimlensError as exc:
        raise SystemExit(f"candidate {name!r}: {exc}") from None
    if out is None:
        return spec
    lines = [f'name = "{spec.name}"', f"description = {json.dumps(data['description'])}"]
    for section in ("task", "model", "train", "expect"):
        if section in data:
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in data[section].items()]
    path = out / f"{spec.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _complete(path: Path) -> bool:
    """A finished run is in the cache (an interrupted one is resumed, and its time counts as training)."""
    try:
        return (path / MANIFEST).exists() and read_manifest(path).get("status") == "complete"
    except ClaimlensError:
        return False


def judge(spec_path: Path, report: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "claims/", "-q", "-p", "no:cacheprovider", "--run", str(spec_path),
           "--claims-report", str(report), "--ignore", "claims/test_llc.py"]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"})
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest failed on {spec_path} (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return json.loads((report / "claims.json").read_text())


def _number(x) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def failed_checks(doc: dict) -> dict[str, str]:
    """Every failed check of each failed target claim, as 'name measured op threshold' (or the claim's message
    where no check failed, e.g. a phase the run never reached)."""
    out = {}
    for r in doc["records"]:
        if r["claim_id"] in TARGETS and r["outcome"] in ("failed", "error"):
            failed = [m for m in r["measurements"] if m.get("status") == "failed"]
            text = "; ".join(" ".join([m["name"][:50], _number(m.get("value"))]
                                      + ([m["op"], _number(m.get("threshold"))] if m.get("op") else []))
                             for m in failed)
            out[r["claim_id"]] = text or (r.get("message") or "").splitlines()[0][:200]
    return out


def verdicts(doc: dict) -> dict[str, str]:
    out: dict[str, Counter] = {}
    for r in doc["records"]:
        out.setdefault(r["claim_id"], Counter())[r["outcome"]] += 1
    return {c: ("F" if n["failed"] else "P" if n["passed"] else "S") for c, n in out.items()}


def train_flat_epoch(doc: dict) -> int | None:
    """First checkpoint at which the train loss is within 10× of its value at t2: when memorisation has settled, on
    the scale of the excluded-loss rule's check 'train loss change t1→t2 ≤ 1 order of magnitude'."""
    r = next((r for r in doc["records"] if r["claim_id"] == TARGETS[0]), None)
    t2 = (r or {}).get("phases", {}).get("t2")
    series = [x for x in (r or {}).get("series", []) if x["name"] == "train_loss"]
    if t2 is None or not series:
        return None
    epochs, values = series[0]["epochs"], series[0]["values"]
    at_t2 = values[min(range(len(epochs)), key=lambda i: abs(epochs[i] - t2))]
    return next(e for e, v in zip(epochs, values, strict=True) if v <= 10 * at_t2)


def summarise(doc: dict, base: dict[str, str]) -> dict:
    v = verdicts(doc)
    phases = next((r["phases"] for r in doc["records"] if r["claim_id"] == "phase_boundaries_mainline"), None)
    return {"phases": phases, "train_flat": train_flat_epoch(doc), "targets": {c: v.get(c, "-") for c in TARGETS},
            "failed_checks": failed_checks(doc),
            "moved": {c: f"{base[c]}->{v[c]}" for c in sorted(base) if c in v and v[c] != base[c] and "llc" not in c}}


def markdown(rows: list[dict], max_train_s: float) -> str:
    """The rows as a Markdown table: P passed, F failed, S skipped, – not reached or not measured."""
    head = ["run", "changes from the default", "train (s)", "checkpoints", "t1", "t2", "t3",
            "train loss settled (≤ 10× its t2 value)", "settled − t1", *[f"`{c}`" for c in TARGETS]]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in rows:
        ph = r.get("phases") or {}
        flat, t1 = r.get("train_flat"), ph.get("t1")
        train_s = r.get("train_s")
        train = "–" if train_s is None else f"{train_s:.0f}" + (" (over budget)" if train_s > max_train_s else "")
        cells = [r["candidate"] + (f" s{r['seed']}" if r["seed"] != "" else ""),
                 ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "–", train, str(r.get("checkpoints", "–")),
                 *(str(ph.get(k) if ph.get(k) is not None else "–") for k in ("t1", "t2", "t3")),
                 "–" if flat is None else str(flat), "–" if flat is None or t1 is None else f"{flat - t1:+d}",
                 *(r["targets"][c] for c in TARGETS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", action="append", default=[], help="NAME:section.key=value,...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "default_search")
    ap.add_argument("--json", type=Path, help="keep the results in this JSON file (a run measured again replaces its "
                                             "row; its training time is kept from when it was trained)")
    ap.add_argument("--reference", type=Path, nargs="*", default=[],
                    help="claims.json of runs to show beside the candidates (e.g. the paper seeds)")
    ap.add_argument("--markdown", type=Path, help="write every row of --json (and --reference) as a Markdown table")
    ap.add_argument("--max-train-s", type=float, default=120.0)
    ap.add_argument("--baseline", type=Path, default=ROOT / "reports" / "reference" / "default" / "claims.json",
                    help="the old default's claims.json, to list the claims whose verdict moved")
    args = ap.parse_args()
    if not args.candidate and not args.markdown:
        ap.error("give --candidate (to measure) or --markdown (to tabulate what --json holds)")
    if args.markdown and not args.candidate and not (args.json and args.json.is_file()):
        ap.error(f"--markdown tabulates the rows of --json, and {args.json} does not exist" if args.json else
                 "--markdown needs --json (the file the measured rows are kept in)")
    missing = [str(p) for p in args.reference if not p.is_file()]
    if missing:
        ap.error(f"--reference: no such file {', '.join(missing)} (the paper seeds' claims.json come from "
                 f"PAPER=1 scripts/reference_runs.sh)")
    candidates = [parse_candidate(c) for c in args.candidate]
    for name, changes in candidates:  # every candidate checked before the first one trains
        for seed in args.seeds:
            make_spec(name, changes, seed, None)
    args.out = args.out.resolve()  # pytest runs from the repository root
    if candidates:
        args.out.mkdir(parents=True, exist_ok=True)
    base = verdicts(json.loads(args.baseline.read_text())) if args.baseline.is_file() else {}
    if candidates and not base:
        print(f"note: no baseline {args.baseline} (scripts/reference_runs.sh writes it); verdicts that moved against "
              f"the default are not listed", flush=True)
    results = json.loads(args.json.read_text()) if args.json and args.json.is_file() else []
    for name, changes in candidates:
        for seed in args.seeds:
            spec_path = make_spec(name, changes, seed, args.out)
            spec = RunSpec.from_toml(spec_path)
            trained = _complete(cached_run_path(spec))
            t0 = time.perf_counter()
            run = ensure_run(spec, progress=False)
            train_s = None if trained else time.perf_counter() - t0
            t0 = time.perf_counter()
            doc = judge(spec_path, args.out / spec.name)
            judge_s = time.perf_counter() - t0
            old = next((r for r in results if (r["candidate"], r["seed"], r["changes"]) == (name, seed, changes)), None)
            if old is None:  # the same name with other changes: a different candidate, its row replaced
                old = next((r for r in results if (r["candidate"], r["seed"]) == (name, seed)), None)
                if old is not None:
                    results.remove(old)
                    old = None
            if old is not None:
                results.remove(old)
                train_s = train_s if train_s is not None else old.get("train_s")
            row = {"candidate": name, "changes": changes, "seed": seed, "train_s": train_s, "judge_s": judge_s,
                   "checkpoints": len(run.epochs), "over_budget": bool(train_s and train_s > args.max_train_s),
                   **summarise(doc, base)}
            results.append(row)
            over = " OVER BUDGET" if train_s and train_s > args.max_train_s else ""
            print(f"{name} s{seed}: train {'cached' if train_s is None else f'{train_s:.0f} s'}{over}, judge "
                  f"{judge_s:.0f} s, {row['checkpoints']} checkpoints, phases {row['phases']}, train loss settled at "
                  f"{row['train_flat']}", flush=True)
            print("   targets " + " ".join(f"{c.split('_')[0]}:{row['targets'][c]}" for c in TARGETS), flush=True)
            for c, text in row["failed_checks"].items():
                print(f"   {c}: {text}", flush=True)
            print(f"   moved vs old default: {row['moved']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    if args.markdown:
        refs = []
        for path in args.reference:
            doc = json.loads(path.read_text())
            label = doc["runs"][0]["label"] if doc.get("runs") else path.parent.name
            n = doc["runs"][0].get("n_checkpoints") if doc.get("runs") else None
            refs.append({"candidate": label, "seed": "", "changes": {}, "train_s": None, "checkpoints": n,
                         **summarise(doc, {})})
        first = {}
        for r in results:
            first.setdefault(r["candidate"], len(first))
        rows = sorted(results, key=lambda r: (first[r["candidate"]], r["seed"]))  # a candidate's seeds together
        args.markdown.write_text(markdown(refs + rows, args.max_train_s))
        print(f"wrote {args.markdown} ({len(refs)} reference runs, {len(results)} candidate runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
