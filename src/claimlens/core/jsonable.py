"""The one conversion of a claim's values into JSON, used wherever a record is made (the ``claim`` fixture's part of
a record, :func:`claimlens.report.document.build_record`, and the plugin's last check before a record travels or is
written). Pure Python: no torch at import."""

from __future__ import annotations

import math
from typing import Any

# JSON has no infinity: an infinite value (a ratio over a zero denominator, an event "never") is written as the
# largest finite double of its sign, so its direction survives; NaN (no value) is written as null.
INFINITY = 1e308


def jsonable(x: Any) -> Any:
    """``x`` as plain JSON values.

    Tensors, numpy arrays and scalars through ``tolist()``; ``NaN`` as ``None``; ``±inf`` as ``±1e308``; tuples as
    lists; dict keys as strings; any other object through ``float()`` when it is a number (``Decimal``), else its
    ``repr`` — a record must always be writable: one odd value never costs the whole report. Never raises."""
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        return None if math.isnan(x) else math.copysign(INFINITY, x)
    if hasattr(x, "tolist") and callable(x.tolist):
        try:
            return jsonable(x.tolist())
        except Exception:  # noqa: BLE001 (an odd object's tolist)
            return repr(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    try:
        return jsonable(float(x))  # Decimal, numpy scalars without tolist, …
    except (TypeError, ValueError):
        return repr(x)
