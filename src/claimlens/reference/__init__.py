"""Curves-only runs: per-epoch series without weights, such as the source's own digitised curves.

A curves run is a folder of CSV files (``trace,epoch,value``, one row per drawn vertex) and an ``index.toml``
that says which trace of which file is which claimlens series (see ``nanda2022/index.toml``). The built-in
reference ``nanda2022`` — the grokking run behind the progress-measures claims, digitised from the published
vector figures (provenance in ``nanda2022/README.md``) — ships with claimlens, so ``pytest claims/ --run
nanda2022`` judges the source's curves like any run: the claims that need weights skip with their reason.

Each trace is resampled at the source run's logging cadence between its first and last drawn vertex,
linearly in epoch and, on log axes, linearly in log10 (as the figure's polyline was drawn): plotly dropped
vertices within 0.75 px of the line, so values between vertices are interpolated (accuracy: the README).
"""

from __future__ import annotations

import csv
import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from claimlens.core.series import Series
from claimlens.errors import RunError

ROOT = Path(__file__).resolve().parent
INDEX = "index.toml"
REFERENCES = {p.name: p for p in sorted(ROOT.iterdir()) if (p / INDEX).is_file()}


@dataclass
class CurvesRun:
    """A run made only of curves: ``series`` name → :class:`Series`; no checkpoints, no weights."""

    name: str
    path: Path
    series: dict[str, Series]
    description: str = ""
    keys: list[int] = field(default_factory=list)
    p: int | None = None
    content_hash: str = ""

    kind = "curves"  # recorded in claims.json; nothing branches on it (has_weights says what a run can do)
    has_weights = False  # curves only: no checkpoints to analyse (claimlens.runs.store.Run: True)
    epochs: tuple = ()  # no checkpoints

    def __repr__(self) -> str:
        return f"CurvesRun({self.name!r}, series={sorted(self.series)})"


def is_curves_dir(path: Path) -> bool:
    return (Path(path) / INDEX).is_file()


def reference_path(name: str) -> Path | None:
    """The folder of the built-in reference ``name`` (``nanda2022``), or of a copy with the same name that has
    no index of its own (``shared/reference/nanda2022``): the built-in index is used for it."""
    return REFERENCES.get(name)


def load(path: str | Path, *, index: Path | None = None) -> CurvesRun:
    """Read a curves folder. ``index`` defaults to the folder's own ``index.toml`` (or the built-in reference's
    of the same name). Raises :class:`RunError` naming the file and what is wrong."""
    path = Path(path)
    if index is None:
        index = path / INDEX if (path / INDEX).is_file() else (REFERENCES.get(path.name, path) / INDEX)
    if not index.is_file():
        raise RunError(f"{str(path)!r} has no {INDEX}: a curves run needs one saying which trace of which CSV is "
                       f"which series (see claimlens/reference/nanda2022/{INDEX})")
    try:
        spec = tomllib.loads(index.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{index}: not valid TOML ({exc})") from None
    return _load_index(path, spec, index)


def _load_index(path: Path, spec: dict, index: Path) -> CurvesRun:
    tables: dict[str, dict[str, list[tuple[float, float]]]] = {}
    digest = hashlib.sha256()
    series = {}
    for name, entry in sorted(spec.get("series", {}).items()):
        file = path / entry["file"]
        if entry["file"] not in tables:
            tables[entry["file"]] = _read(file)
            digest.update(file.read_bytes())
        traces = tables[entry["file"]]
        rows = entry.get("rows") or {"": entry["trace"]}
        resampled = []
        for label, trace in rows.items():
            if trace not in traces:
                raise RunError(f"{file}: no trace {trace!r} (index {index} [series.{name}]); traces: {sorted(traces)}")
            resampled.append(_resample(traces[trace], int(entry.get("every", 1)), entry.get("scale") == "log"))
        start = max(r[0][0] for r in resampled)
        end = min(r[0][-1] for r in resampled)
        epochs = [e for e in resampled[0][0] if start <= e <= end]
        data = torch.tensor([[v for e, v in zip(*r) if start <= e <= end] for r in resampled], dtype=torch.float64)
        series[name] = Series(name, torch.tensor(epochs, dtype=torch.int64), data, tuple(rows))
    return CurvesRun(str(spec.get("name", path.name)), path, series, str(spec.get("description", "")),
                     list(spec.get("keys", [])), spec.get("p"), digest.hexdigest())


@dataclass
class CurvesSet:
    """Curves-only runs along one axis: ``members`` are ``(value, CurvesRun)`` pairs sorted by value."""

    name: str
    description: str
    axis: str
    members: list[tuple[float, CurvesRun]]


SETS = {"nanda2022_fractions": ROOT / "nanda2022" / "fractions.toml"}


def load_set(name: str | Path) -> CurvesSet:
    """A curves-only run set: a built-in one by name (:data:`SETS`), or a folder whose ``index.toml`` gives
    ``axis`` (a dotted spec field, e.g. ``task.frac_train``), ``values`` (strings) and ``[series.*]`` entries whose
    ``trace`` holds ``{value}``; one curves run per value (e.g. the losses of a published sweep). Raises
    :class:`RunError` for an unknown name or a broken index, naming the file."""
    if str(name) in SETS:
        index = SETS[str(name)]
    elif Path(name).is_dir():
        index = Path(name) / INDEX
    else:
        raise RunError(f"no curves set {str(name)!r}: neither a built-in one ({sorted(SETS)}) nor a folder with an "
                       f"{INDEX}")
    try:
        spec = tomllib.loads(index.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{index}: not a readable TOML index ({exc})") from None
    missing = [k for k in ("axis", "values", "series") if k not in spec]
    if missing or not isinstance(spec.get("values"), list) or not spec["values"]:
        raise RunError(f"{index}: a curves set's index needs axis, a non-empty list of values and [series.*] "
                       f"entries (missing: {missing or 'values'}; see claimlens/reference/nanda2022/fractions.toml)")
    spec.setdefault("name", index.parent.name)
    spec.setdefault("description", "")
    members = []
    for value in spec["values"]:
        value = str(value)
        try:
            float(value)
        except ValueError:
            raise RunError(f"{index}: value {value!r} is not a number (values are the axis values, e.g. \"0.3\")") \
                from None
        series = {k: {**v, "trace": v["trace"].format(value=value)} for k, v in spec["series"].items()}
        run = _load_index(index.parent, {"name": f"{spec['name']}-{value}", "description": spec["description"],
                                         "series": series}, index)
        members.append((float(value), run))
    return CurvesSet(spec["name"], spec["description"], spec["axis"], sorted(members, key=lambda t: t[0]))


def _read(file: Path) -> dict[str, list[tuple[float, float]]]:
    if not file.is_file():
        raise RunError(f"curves file {str(file)!r} does not exist")
    traces: dict[str, list[tuple[float, float]]] = {}
    with open(file, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"trace", "epoch", "value"} <= set(reader.fieldnames):
            raise RunError(f"{file}: expected the columns trace,epoch,value; got {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            try:
                traces.setdefault(row["trace"], []).append((float(row["epoch"]), float(row["value"])))
            except (TypeError, ValueError):
                raise RunError(f"{file} line {n}: epoch and value must be numbers; got {row}") from None
    return {k: sorted(v) for k, v in traces.items()}


def _resample(vertices: list[tuple[float, float]], every: int, log: bool) -> tuple[list[int], list[float]]:
    """Values at the multiples of ``every`` between the first and last vertex (interpolated; log10 if ``log``)."""
    xs = [x for x, _ in vertices]
    ys = [math.log10(y) if log else y for _, y in vertices]
    first, last = math.ceil(xs[0] / every) * every, math.floor(xs[-1] / every) * every
    epochs = list(range(int(first), int(last) + 1, every))
    out, j = [], 0
    for e in epochs:
        while j + 1 < len(xs) - 1 and xs[j + 1] < e:
            j += 1
        x0, x1, y0, y1 = xs[j], xs[min(j + 1, len(xs) - 1)], ys[j], ys[min(j + 1, len(xs) - 1)]
        y = y0 if x1 == x0 else y0 + (y1 - y0) * (e - x0) / (x1 - x0)
        out.append(10 ** y if log else y)
    return epochs, out
