"""Sweep tables: runs known only by the values their source measured on them (no weights, no curves).

The built-in ones are Zhong et al.'s (2023) released sweeps over the attention rate (``zhong2023/``, provenance,
columns and the catalogue's filter in its README): ``load_tables("zhong2023_sweep")`` gives every row of both
tables as a :class:`TableRun`. The set claim about the attention rate reads them through
:func:`claimlens.runsets.table_set`; the per-run claims never see them (there is nothing to analyse).

This module needs no torch (the ``claimlens.reference`` package imports it for the curves runs); the plugin
describes the set (rows, how many pass the filter) from here.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from claimlens.errors import RunError

ROOT = Path(__file__).resolve().parent

# column → (claimlens name, integer?). The released tables' header, in order (code/train-main.py's config keys and
# the metrics the source computed on each final model).
COLUMNS: dict[str, tuple[str, bool]] = {
    "runid": ("name", False),
    "attn_coeff": ("attn_rate", False),
    "d_model": ("d_model", True),
    "n_heads": ("n_heads", True),
    "n_layers": ("n_layers", True),
    "eqn_sign": ("eqn_sign", True),
    "diff_vocab": ("diff_vocab", True),
    "frac": ("frac_train", False),
    "weight_decay": ("weight_decay", False),
    "lr": ("lr", False),
    "epoch": ("epochs", True),
    "validation_accuracy": ("validation_accuracy", False),
    "training_accuracy": ("training_accuracy", False),
    "circularity": ("circularity", False),
    "gradient_sim": ("gradient_sim", False),
    "distance_irrelevance": ("distance_irrelevance_top_incorrect", False),
}


@dataclass(frozen=True)
class TableRun:
    """One row of a sweep table: a run of ``table`` known by its settings and the values measured on its final
    model. ``attn_rate`` ∈ [0, 1] (the table's ``attn_coeff``); accuracies are fractions; ``circularity`` is
    G-CIRC; ``gradient_sim`` Def. 4.1's gradient symmetricity; ``distance_irrelevance_top_incorrect`` the table's
    ``distance_irrelevance`` column, train-main.py's variant on the largest incorrect logit (not Def. 4.2's)."""

    name: str
    table: str
    attn_rate: float
    d_model: int
    n_heads: int
    n_layers: int
    eqn_sign: int
    diff_vocab: int
    frac_train: float
    weight_decay: float
    lr: float
    epochs: int
    validation_accuracy: float
    training_accuracy: float
    circularity: float
    gradient_sim: float
    distance_irrelevance_top_incorrect: float

    kind: ClassVar[str] = "table_row"  # recorded; nothing branches on it
    has_weights: ClassVar[bool] = False  # no checkpoints: the per-run claims cannot analyse it
    description: ClassVar[str] = "a row of a published sweep table: measured values only"

    def values(self) -> dict[str, Any]:
        """Its settings as dotted spec fields (``model.attn_rate`` …), its inputs (``eqn_sign``, ``diff_vocab``, the
        source's names: a claimlens spec has ``model.equals_token`` and no separate vocabulary for b) and the
        ``table`` it comes from: a run set's member values."""
        return {"model.attn_rate": self.attn_rate, "model.d_model": self.d_model, "model.n_heads": self.n_heads,
                "model.n_layers": self.n_layers, "task.frac_train": self.frac_train,
                "train.weight_decay": self.weight_decay, "train.lr": self.lr, "train.epochs": self.epochs,
                "eqn_sign": self.eqn_sign, "diff_vocab": self.diff_vocab, "table": self.table}

    @property
    def measured(self) -> dict[str, float]:
        """What the source measured on the final model, by claimlens name."""
        return {"validation_accuracy": self.validation_accuracy, "training_accuracy": self.training_accuracy,
                "circularity": self.circularity, "gradient_sim": self.gradient_sim,
                "distance_irrelevance_top_incorrect": self.distance_irrelevance_top_incorrect}


@dataclass(frozen=True)
class Tables:
    """The rows of one or more sweep tables (``files``, in order), with what describes them."""

    name: str
    description: str
    files: tuple[Path, ...]
    rows: tuple[TableRun, ...]
    content_hash: str  # sha256 over the files' bytes, in order

    def counts(self) -> list[dict[str, Any]]:
        """Per table: its file, rows, rows with one layer and rows passing :func:`passes_filter`."""
        out = []
        for file in self.files:
            rows = [r for r in self.rows if r.table == file.stem]
            out.append({"file": file.name, "rows": len(rows), "one_layer": sum(r.n_layers == 1 for r in rows),
                        "filtered": sum(passes_filter(r) for r in rows)})
        return out


# The filter of catalogue Revision 3 (the tables' README): generalised, circular 1-layer runs on [a, b].
FILTER = {"n_layers": 1, "eqn_sign": 0, "diff_vocab": 0, "min_validation_accuracy": 0.99, "min_circularity": 0.9}
FILTER_TEXT = "n_layers 1, eqn_sign 0, diff_vocab 0, validation_accuracy ≥ 0.99, circularity ≥ 0.9"


def passes_filter(row: TableRun) -> bool:
    """Whether a row passes :data:`FILTER` (the set claim applies the same filter with its own thresholds)."""
    return (row.n_layers == FILTER["n_layers"] and row.eqn_sign == FILTER["eqn_sign"]
            and row.diff_vocab == FILTER["diff_vocab"]
            and row.validation_accuracy >= FILTER["min_validation_accuracy"]
            and row.circularity >= FILTER["min_circularity"])


SETS = {
    "zhong2023_sweep": {
        "files": (ROOT / "zhong2023" / "1l_fixedwidth.csv", ROOT / "zhong2023" / "1l_varywidth.csv"),
        "description": "Zhong et al. (2023), The Clock and the Pizza: the released sweep tables over the attention "
                       "rate (fjzzq2002/pizza result/1l_fixedwidth.csv at width 128, result/1l_varywidth.csv over "
                       "widths 32-511; 1 to 4 layers; MIT, claimlens/reference/zhong2023): one row per run, the "
                       "values the source measured on its final model, no weights",
    },
}


def load_tables(name: str) -> Tables:
    """The built-in set of tables ``name`` (:data:`SETS`). Raises :class:`RunError` for an unknown name or a bad
    table (one line naming the file, the column and what to do)."""
    if name not in SETS:
        raise RunError(f"no sweep tables {name!r}: the built-in ones are {sorted(SETS)}")
    entry = SETS[name]
    rows, digest = [], hashlib.sha256()
    for file in entry["files"]:
        rows += read_table(file)
        digest.update(file.read_bytes())
    return Tables(name, entry["description"], tuple(entry["files"]), tuple(rows), digest.hexdigest())


def read_table(file: Path) -> list[TableRun]:
    """Every row of one sweep table (CSV with the columns of :data:`COLUMNS`; more are ignored), as
    :class:`TableRun` of table ``file.stem``. Raises :class:`RunError` for a missing file or column, an empty or
    non-numeric value, or an integer column holding a fraction."""
    file = Path(file)
    what = "the columns of the released result/1l_*.csv of fjzzq2002/pizza (claimlens/reference/zhong2023/README.md)"
    try:
        fh = open(file, newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise RunError(f"sweep table {str(file)!r}: cannot read it ({exc.strerror or exc})") from None
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise RunError(f"sweep table {str(file)!r}: no column {missing[0]!r}"
                           f"{f' (nor {missing[1:]})' if len(missing) > 1 else ''}; a sweep table needs {what}: "
                           f"{', '.join(COLUMNS)}")
        out = []
        for line, row in enumerate(reader, start=2):
            fields: dict[str, Any] = {"table": file.stem}
            for column, (attr, integer) in COLUMNS.items():
                text = (row.get(column) or "").strip()
                if column == "runid":
                    if not text:
                        raise RunError(f"sweep table {str(file)!r} line {line}: column 'runid' is empty; give every "
                                       f"row its run id or remove the row")
                    fields[attr] = text
                    continue
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value) or (integer and not value.is_integer()):
                    raise RunError(f"sweep table {str(file)!r} line {line}: column {column!r} is {text!r}, not "
                                   f"{'an integer' if integer else 'a finite number'}; fix the value or remove the "
                                   f"row")
                fields[attr] = int(value) if integer else value
            out.append(TableRun(**fields))
    if not out:
        raise RunError(f"sweep table {str(file)!r}: no rows; a sweep table has one row per run")
    return out
