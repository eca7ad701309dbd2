"""Small helpers that claim files share (they import pytest, so they live with the plugin)."""

from __future__ import annotations

import pytest


def require_phases(phases, *names: str) -> None:
    """Fail the claim, with its reason, if the run never reached the named phase boundaries."""
    missing = [n for n in names if getattr(phases, n) is None]
    if missing:
        pytest.fail(f"phase boundaries {missing} were not reached in this run ({phases.as_dict()}); "
                    f"the claim is about phases the run does not have", pytrace=False)


def series_of(run_series, name: str, label: str = ""):
    """One row of a run's series as a :class:`claimlens.series.Series` named ``name[label]``."""
    return run_series[name].row(label)
