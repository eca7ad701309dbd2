"""The claimlens pytest plugin (registered through the ``pytest11`` entry point).

Hooks only; importing it is cheap (no torch). It adds the ``--run`` option and the ``run`` fixture:
a test that takes ``run`` is parametrized over every run given with ``--run`` (or the built-in
default run), with ids ``run=<name>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claimlens.plugin.runs import RunRef, resolve_refs

RUN_REFS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claimlens", "claimlens: claims about training runs")
    group.addoption(
        "--run", action="append", dest="claimlens_runs", default=[], metavar="PATH",
        help="run to judge: a run directory, or a spec TOML (trained on first use and cached). "
             "Repeatable. Default: the built-in default run (fixtures/default.toml).",
    )
    group.addoption(
        "--claims-device", dest="claimlens_device", default="cpu", metavar="DEVICE",
        help="device for training a spec given to --run on first use (cpu, cuda, auto). Default: cpu.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id, statement, source): a published claim judged by this test")
    given = config.getoption("claimlens_runs")
    # Explicit --run values are checked now, so that a typo is a usage error before collection;
    # the default run is resolved lazily, only if a test asks for a run.
    config.stash[RUN_REFS] = resolve_refs(given, rootdir=Path(str(config.rootpath))) if given else None


def _refs(config: pytest.Config) -> list[RunRef]:
    refs = config.stash[RUN_REFS]
    if refs is None:
        refs = resolve_refs(config.getoption("claimlens_runs"), rootdir=Path(str(config.rootpath)))
        config.stash[RUN_REFS] = refs
    return refs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "run" in metafunc.fixturenames:
        refs = _refs(metafunc.config)
        metafunc.parametrize("run", refs, ids=[f"run={r.label}" for r in refs], indirect=True, scope="session")


@pytest.fixture(scope="session")
def run(request: pytest.FixtureRequest):
    """The :class:`claimlens.runs.Run` under test (trained and cached first if given as a spec)."""
    ref: RunRef = request.param
    return ref.open(device=request.config.getoption("claimlens_device"))
