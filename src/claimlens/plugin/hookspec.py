"""Hooks that other pytest plugins (or a ``conftest.py``) can implement to extend claimlens's report.

Implement them as plain functions named like the specs below; pytest registers them with the plugin
manager as for any hook. Both are called on the process that writes the report (the xdist controller).
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_claimlens_record(item: pytest.Item, record: dict[str, Any]) -> None:
    """Called with each claim test's record (a dict, see :func:`claimlens.report.document.build_record`)
    right after it is built, on the process that ran the test. Add fields or notes; values must be JSON
    (plain Python numbers, strings, lists, dicts)."""


@pytest.hookspec
def pytest_claimlens_update_document(config: pytest.Config, document: dict[str, Any]) -> None:
    """Called with the session's report document just before ``claims.json`` and the HTML are written
    (after the baseline comparison). Add top-level keys to carry data of your own into the report."""
