"""What a claim test records as evidence (the ``evidence`` fixture); it becomes part of the test's record
in ``claims.json`` (:func:`claimlens.report.document.build_record`).

Pure Python (no torch import): tensors are accepted through their ``tolist()`` method.
"""

from __future__ import annotations

import math
from typing import Any


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):
        x = x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else (1e308 if x > 0 else -1e308)
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


class Evidence:
    """The ``evidence`` fixture: what one claim test was judged on.

    >>> evidence.series("test_loss", epochs, values, log=True)                       # doctest: +SKIP
    >>> evidence.measure("delay ratio", 16.4, threshold=5, op=">=", epoch=1440)      # doctest: +SKIP
    >>> evidence.phase_lines({"t1": 200, "t2": 1200, "t3": 2160})                    # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._series: list[dict[str, Any]] = []
        self._measurements: list[dict[str, Any]] = []
        self._phases: dict[str, Any] = {}
        self._notes: list[str] = []

    def series(self, name: str, epochs: Any, values: Any, *, label: str = "", log: bool = False) -> None:
        epochs, values = _plain(epochs), _plain(values)
        if len(epochs) != len(values):
            raise ValueError(f"series {name!r}: {len(epochs)} epochs but {len(values)} values")
        self._series.append({"name": name, "label": label, "epochs": epochs, "values": values, "log_scale": log})

    def measure(self, name: str, value: Any, *, threshold: Any = None, op: str | None = None,
                epoch: int | None = None, label: str = "") -> bool | None:
        """Record a scalar and, if a threshold is given, whether it passes (``op`` one of >=, <=, >, <, ==)."""
        value, threshold = _plain(value), _plain(threshold)
        passed = None
        if threshold is not None and op is not None and value is not None:
            passed = {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold,
                      "<": value < threshold, "==": value == threshold}[op]
        self._measurements.append({"name": name, "value": value, "threshold": threshold, "op": op,
                                   "epoch": epoch, "label": label, "passed": passed})
        return passed

    def phase_lines(self, phases: dict[str, Any]) -> None:
        self._phases.update({k: v for k, v in phases.items() if v is not None})

    def note(self, text: str) -> None:
        self._notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"series": self._series, "measurements": self._measurements,
                "phases": self._phases, "notes": self._notes}
