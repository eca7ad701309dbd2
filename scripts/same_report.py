"""Check that two claims.json files hold the same verdicts and values (timings and provenance aside).

    python scripts/same_report.py before/claims.json after/claims.json [--rtol 1e-12]

Compares, per test id: the outcome and message exactly; every measurement (value and threshold) and every
series value to ``rtol`` relative (``abs`` 1e-300). Prints each difference and exits 1 if there is one. Used to
show that a refactoring changed nothing a user can see.
"""

from __future__ import annotations

import argparse
import json
import math
import sys


def _close(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    return a == b


def compare(old: dict, new: dict, rtol: float) -> list[str]:
    out = []
    a = {r["nodeid"]: r for r in old["records"]}
    b = {r["nodeid"]: r for r in new["records"]}
    for nodeid in sorted(a.keys() ^ b.keys()):
        out.append(f"{nodeid}: only in {'the first' if nodeid in a else 'the second'} report")
    for nodeid in sorted(a.keys() & b.keys()):
        x, y = a[nodeid], b[nodeid]
        for key in ("outcome", "message", "claim_id", "statement", "source", "run", "parameters", "phases", "notes"):
            if x.get(key) != y.get(key):
                out.append(f"{nodeid}: {key} {x.get(key)!r} -> {y.get(key)!r}")
        for key in ("measurements", "series"):
            if not _close(x.get(key), y.get(key), rtol):
                out.append(f"{nodeid}: {key} differ beyond rtol {rtol:g}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rtol", type=float, default=1e-12)
    args = parser.parse_args()
    with open(args.old) as f, open(args.new) as g:
        old, new = json.load(f), json.load(g)
    problems = compare(old, new, args.rtol)
    for line in problems:
        print(line)
    n = len({r["nodeid"] for r in old["records"]} & {r["nodeid"] for r in new["records"]})
    print(f"{n} records compared: {len(problems)} differences (rtol {args.rtol:g})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
