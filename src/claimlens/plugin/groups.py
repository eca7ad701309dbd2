"""``pytest -n N --dist loadgroup``: every test of one run in one worker, so that each worker evaluates only its own
runs (the analyses of a run are computed once, in the worker that judges it).

pytest-xdist's own ``loadgroup`` groups the tests it finds marked ``xdist_group`` by a suffix it appends to their
node ids in the workers (``…[run=a]@run-a``). On pytest 9.2 with pytest-xdist 3.8 that suffix no longer takes (pytest
keeps a node's id in ``_id``; xdist writes ``_nodeid``), so marked tests are spread over every worker. claimlens groups by the run each
test judges instead, on the controller, from the ``run=<label>`` / ``set=<label>`` part of the test id the plugin
itself gives (:func:`claimlens.plugin.pytest_generate_tests`): nothing depends on how xdist rewrites ids, and test
ids (the records, the baselines) are the same as in a serial session. A suffix xdist did append is honoured first.
"""

from __future__ import annotations

import re

import pytest
from xdist.scheduler import LoadGroupScheduling

_FALLBACK = re.compile(r"(?:^|-)(run|set)=(.+?)(?:-epoch=-?\d+)?$")


def run_group(nodeid: str, labels: dict[str, list[str]]) -> str | None:
    """The group of a test id: ``run-<label>`` for a test of the run ``label`` (``test_x[run=a]``,
    ``test_y[run=a-epoch=100]``), ``set-<label>`` for a test of a run set, None for any other test. ``labels``:
    the known labels by kind (``run``, ``set``), matched longest first (a label may hold ``-``); without them, the
    label is read up to an ``-epoch=`` part."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    params = nodeid[nodeid.index("[") + 1:-1]
    for kind in ("run", "set"):
        for label in sorted(labels.get(kind, []), key=len, reverse=True):
            token = f"{kind}={label}"
            at = params.find(token)
            while at != -1:
                end = at + len(token)
                if (at == 0 or params[at - 1] == "-") and (end == len(params) or params[end] == "-"):
                    return f"{kind}-{label}"
                at = params.find(token, at + 1)
    match = _FALLBACK.search(params)
    return f"{match.group(1)}-{match.group(2)}" if match else None


class RunGroupScheduling(LoadGroupScheduling):
    """xdist's ``loadgroup`` scheduling with one work unit per run (or run set) the tests judge."""

    def __init__(self, config: pytest.Config, log=None) -> None:
        super().__init__(config, log)
        self._labels: dict[str, list[str]] | None = None

    def _known_labels(self) -> dict[str, list[str]]:
        if self._labels is None:
            from claimlens.plugin import session

            state = session.of(self.config)
            try:
                self._labels = {"run": [r.label for r in state.runs()], "set": [r.label for r in state.sets()]}
            except pytest.UsageError:  # the workers report it; the ids alone still group
                self._labels = {}
        return self._labels

    def _split_scope(self, nodeid: str) -> str:
        scope = super()._split_scope(nodeid)
        if scope != nodeid:  # an xdist_group suffix that did take
            return scope
        return run_group(nodeid, self._known_labels()) or nodeid
