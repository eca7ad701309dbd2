"""Print the bad-input battery's table (input kind × entry point → outcome): python scripts/bad_input_table.py

Runs every case of tests/battery.py against a tiny freshly trained run (a few seconds) in a temporary folder.
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# a table, not the test-suite: tests/conftest.py's shape checks would refuse the claimlens modules battery imports first
os.environ.setdefault("CLAIMLENS_SHAPE_CHECKS", "0")

from battery import CASES, run_case, table

from claimlens.training import Trainer
from conftest import tiny_spec


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = Trainer(tiny_spec(), Path(tmp) / "tiny", progress=False).train()
        outcomes = []
        for i, case in enumerate(CASES):
            outcomes.append(run_case(case, Path(tmp) / f"case{i}", run))
            print(f"{'ok  ' if outcomes[-1].ok else 'FAIL'} {case.entry}: {case.input}", file=sys.stderr)
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
