"""Are two claims.json files the same report? Exact comparison for refactors that must change no verdict or value.

    python scripts/same_report.py BEFORE.json AFTER.json [--rtol R]

Records are matched by their test id without the file (``test_excluded_loss_rises[run=default]``), so a claim that
moved to another claims file is still the same record. Everything in a record is compared exactly (floats bit for
bit; ``--rtol R``: numbers to relative R) except its ``nodeid``, its ``duration`` and fields that only AFTER has (new fields, listed). At the document
level the provenance (creation time, versions, machine, git commit) is ignored, and paths of the built-in specs are
compared from their ``fixtures/`` folder on (the two reports may come from two clones); runs are matched by
label. Exits 0 when the reports
agree, 1 listing every difference otherwise. Unlike ``claimlens diff`` (a baseline gate with tolerances), this
allows no tolerance at all.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

IGNORED_RECORD_KEYS = {"nodeid", "duration"}
PROVENANCE = {"created", "versions", "machine", "git_commit"}


def _normalise(x: Any) -> Any:
    """Paths of built-in specs from ``fixtures/`` on; everything else as it is."""
    if isinstance(x, str):
        return re.sub(r"^.*/(fixtures/[^ ]*)$", r"\1", x)
    if isinstance(x, list):
        return [_normalise(v) for v in x]
    if isinstance(x, dict):
        return {k: _normalise(v) for k, v in x.items()}
    return x


def _same_number(a: Any, b: Any, rtol: float) -> bool:
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return numbers and math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b))


def _diff(a: Any, b: Any, where: str, out: list[str], new_fields: set[str], rtol: float = 0.0) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(f"{where}.{key}: missing after")
            elif key not in a:
                new_fields.add(re.sub(r"\[[^]]*\]", "[]", f"{where}.{key}"))
            else:
                _diff(a[key], b[key], f"{where}.{key}", out, new_fields, rtol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items before, {len(b)} after")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{where}[{i}]", out, new_fields, rtol)
    elif (type(a) is not type(b) or a != b) and not (rtol and _same_number(a, b, rtol)):
        out.append(f"{where}: {a!r:.80} before, {b!r:.80} after")


def _test_id(record: dict) -> str:
    return record["nodeid"].split("::", 1)[-1]


def compare(before: dict, after: dict, rtol: float = 0.0) -> tuple[list[str], set[str], int]:
    """The differences (one line each), the new fields of AFTER and the number of records matched."""
    out: list[str] = []
    new_fields: set[str] = set()
    a_top = {k: v for k, v in before.items() if k not in PROVENANCE and k != "records"}
    b_top = {k: v for k, v in after.items() if k not in PROVENANCE and k != "records"}
    for top in (a_top, b_top):  # the runs judged are a set: matched by label, whatever order they were named in
        top["runs"] = {r.get("label"): r for r in top.get("runs", [])}
    _diff(_normalise(a_top), _normalise(b_top), "document", out, new_fields, rtol)
    a_rec = {_test_id(r): r for r in before["records"]}
    b_rec = {_test_id(r): r for r in after["records"]}
    for test in sorted(set(a_rec) - set(b_rec)):
        out.append(f"{test}: only before")
    for test in sorted(set(b_rec) - set(a_rec)):
        out.append(f"{test}: only after")
    for test in sorted(set(a_rec) & set(b_rec)):
        x = {k: v for k, v in a_rec[test].items() if k not in IGNORED_RECORD_KEYS}
        y = {k: v for k, v in b_rec[test].items() if k not in IGNORED_RECORD_KEYS}
        _diff(_normalise(x), _normalise(y), test, out, new_fields, rtol)
    return out, {re.sub(r"^test_[^.]*\.", "record.", f) for f in new_fields}, len(set(a_rec) & set(b_rec))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rtol", type=float, default=0.0, help="numbers equal to this relative tolerance (default 0)")
    args = parser.parse_args(argv)
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    differences, new_fields, matched = compare(before, after, args.rtol)
    print(f"{matched} records matched ({len(before['records'])} before, {len(after['records'])} after)")
    if new_fields:
        print("new fields (after only): " + ", ".join(sorted(new_fields)))
    if differences:
        print(f"{len(differences)} differences:")
        for line in differences:
            print("  " + line)
        return 1
    print("identical except provenance, node ids, durations and new fields")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
