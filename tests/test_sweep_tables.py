"""The source's own sweep tables as the built-in run set ``zhong2023_sweep`` (catalogue Revision 3): the rows load
with their columns, the catalogue's filter keeps 1 947 and 981 runs, the Spearman correlations and medians are the
catalogue's, the set claim about the attention rate passes on them in a session, and a bad table is a one-line
error naming the file, the column and what to do."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from claimlens.core.verdicts import Bound
from claimlens.errors import RunError
from claimlens.families.pizza import rules as PZ
from claimlens.reference import tables as T
from claimlens.runsets import table_set
from conftest import ROOT


@pytest.fixture(scope="module")
def zhong():
    return table_set("zhong2023_sweep")


def _th():
    return {k: Bound(t.value, k, t.source) for k, t in PZ.ATTENTION_RATE_SELECTS.thresholds.items()}


def test_the_tables_ship_with_their_licence_and_readme_and_no_curves_index():
    folder = T.ROOT / "zhong2023"
    assert {p.name for p in folder.iterdir()} >= {"1l_fixedwidth.csv", "1l_varywidth.csv", "LICENSE.pizza",
                                                  "README.md"}
    assert "MIT License" in (folder / "LICENSE.pizza").read_text()
    assert not (folder / "index.toml").exists()  # it would make the folder a curves run
    from claimlens import reference

    assert "zhong2023" not in reference.REFERENCES


def test_the_set_loads_every_row_with_its_values(zhong):
    assert zhong.name == "zhong2023_sweep" and zhong.kind == "table"
    assert len(zhong.members) == 7784 + 6106 and len(set(zhong.labels)) == len(zhong.members)
    assert zhong.varies("model.attn_rate") and zhong.varies("model.d_model") and not zhong.varies("task.frac_train")
    values, row = zhong.members[0]
    assert not row.has_weights and row.table == values["table"] == "1l_fixedwidth"
    # the first data row of result/1l_fixedwidth.csv
    assert (row.name, values["model.attn_rate"], values["model.d_model"], values["model.n_layers"]) == \
        ("9cimpo4ogh", 0.769514692, 128, 1)
    assert row.measured == {"validation_accuracy": 1.0, "training_accuracy": 1.0, "circularity": 0.998771394,
                            "gradient_sim": 0.41165712, "distance_irrelevance_top_incorrect": 0.685640814}
    assert {v["table"] for v, _ in zhong.members} == {"1l_fixedwidth", "1l_varywidth"}
    assert all(0 <= v["model.attn_rate"] <= 1 for v, _ in zhong.members)


def test_the_catalogues_filter_keeps_1947_and_981_runs(zhong):
    tables = T.load_tables("zhong2023_sweep")
    assert tables.counts() == [{"file": "1l_fixedwidth.csv", "rows": 7784, "one_layer": 3801, "filtered": 1947},
                               {"file": "1l_varywidth.csv", "rows": 6106, "one_layer": 2657, "filtered": 981}]
    from claimlens.families.pizza.analysis import sweep_runs

    runs = sweep_runs(zhong)
    for table, n in (("1l_fixedwidth", 1947), ("1l_varywidth", 981)):
        kept, dropped = PZ.generalised_one_layer([r for r in runs if r.sweep == table], 0.99, 0.9)
        assert len(kept) == n, (table, dropped)


def test_the_claim_reproduces_the_catalogues_numbers_on_the_tables(zhong):
    """Revision 3 (and the tables' README): Spearman(α, GS) −0.791 / −0.694, Spearman(α, DI variant) 0.667 / 0.552,
    median GS per α bin 0.993, 0.992, 0.993, 0.763, 0.541 (fixed width). Each table is judged as its own sweep."""
    from claimlens.families.pizza.analysis import sweep_runs

    v = PZ.attention_rate_selects(sweep_runs(zhong), _th())
    assert v.passed and not v.skipped, v.failure_message()
    by = {(c.name, c.label): c for c in v.checks}
    gs = "Spearman correlation of attention rate and gradient symmetricity"
    assert by[(gs, "1l_fixedwidth")].value == pytest.approx(-0.791, abs=5e-4)
    assert by[(gs, "1l_varywidth")].value == pytest.approx(-0.694, abs=5e-4)
    assert by[(gs, "1l_fixedwidth")].status == by[(gs, "1l_varywidth")].status == "passed"
    di = [c for c in v.checks if c.name.startswith("Spearman correlation of attention rate and distance")]
    assert [(c.label, round(c.value, 3), c.source_value) for c in di] == [("1l_fixedwidth", 0.667, 0.667),
                                                                          ("1l_varywidth", 0.552, 0.552)]
    medians = [c for c in v.checks if c.name.startswith("median GS") and c.label == "1l_fixedwidth"]
    assert [round(c.value, 3) for c in medians] == [c.source_value for c in medians] == [0.993, 0.992, 0.993, 0.763,
                                                                                         0.541]
    kept = {c.label: c.value for c in v.checks if c.name == "generalised 1-layer runs kept"}
    assert kept == {"1l_fixedwidth": 1947, "1l_varywidth": 981}
    (pooled,) = [c for c in v.checks if c.name.endswith("all sweeps of the set together")]
    assert pooled.status == "recorded" and pooled.value == pytest.approx(-0.759, abs=5e-4)


def test_the_di_variants_percentiles_recorded_with_the_per_run_claim_are_the_tables():
    """The 10th / 50th / 90th percentiles of the tables' distance_irrelevance column (train-main.py's variant) that
    pizza_clock_distance_irrelevance records beside a run's own variant: the fixed-width table, filtered (Revision
    3), at rate < 0.05 (pizza) and ≥ 0.95 (clock), linear interpolation."""
    import numpy as np

    rows = [r for r in T.load_tables("zhong2023_sweep").rows if r.table == "1l_fixedwidth" and T.passes_filter(r)]
    for side, inside in (("pizza", lambda a: a < PZ.PIZZA_MAX_RATE), ("clock", lambda a: a >= PZ.CLOCK_MIN_RATE)):
        di = [r.distance_irrelevance_top_incorrect for r in rows if inside(r.attn_rate)]
        assert len(di) == {"pizza": 99, "clock": 96}[side]
        assert tuple(round(float(x), 3) for x in np.percentile(di, [10, 50, 90])) == PZ.DI_VARIANT_PERCENTILES[side]


def test_the_threshold_is_not_tuned_to_the_tables(zhong):
    """Revision 3's −0.5 passes with a margin on both tables; the claim would still pass at the old −0.6, and a
    sweep with the rates shuffled against GS fails (the rule can fail on this data)."""
    import random

    from claimlens.families.pizza.analysis import sweep_runs

    runs = sweep_runs(zhong)
    th = _th()
    th["max_spearman"] = Bound(-0.6, "max_spearman")
    assert PZ.attention_rate_selects(runs, th).passed
    rates = [r.rate for r in runs]
    random.Random(0).shuffle(rates)
    from dataclasses import replace

    shuffled = [replace(r, rate=rate) for r, rate in zip(runs, rates)]
    assert not PZ.attention_rate_selects(shuffled, _th()).passed


def _session(tmp_path, *args):
    report = tmp_path / "report"
    env = dict(os.environ, CLAIMLENS_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), "-q", "-p", "no:cacheprovider",
                          "--rootdir", str(ROOT), "--claims-report", str(report), *args],
                         capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    return out, (json.loads((report / "claims.json").read_text()) if (report / "claims.json").is_file() else None)


def test_the_claim_passes_on_run_zhong2023_sweep_in_a_session(tmp_path):
    """`pytest claims/ --run zhong2023_sweep`: the set claim judges the rows and passes; no per-run claim judges
    them (nothing is trained: the cache stays empty); the runs table says what the set is."""
    out, doc = _session(tmp_path, "--run", "zhong2023_sweep")
    assert doc is not None, out.stdout[-3000:] + out.stderr[-2000:]
    judged = [r for r in doc["records"] if r["outcome"] in ("passed", "failed")]
    assert [(r["claim_id"], r["outcome"], r["run"]) for r in judged] == \
        [("attention_rate_selects_algorithm", "passed", "zhong2023_sweep")], out.stdout[-3000:]
    for r in doc["records"]:  # the set claims of other axes skip the set; the per-run claims have no run at all
        assert r["run"] == "zhong2023_sweep" or r["outcome"] == "skipped" and "no run in this session" in r["message"], r
    assert not (tmp_path / "cache" / "runs").exists() or not any((tmp_path / "cache" / "runs").iterdir())
    (run,) = doc["runs"]
    assert run["kind"] == "table_set" and "members" not in run
    assert [(t["file"], t["rows"], t["filtered"]) for t in run["tables"]] == [("1l_fixedwidth.csv", 7784, 1947),
                                                                             ("1l_varywidth.csv", 6106, 981)]
    assert "Clock and the Pizza" in run["provenance"] and "1 947 pass the filter" in run["provenance"]
    import jsonschema

    jsonschema.validate(doc, json.loads((ROOT / "src" / "claimlens" / "report" / "schema.json").read_text()))


def test_the_plugin_knows_every_built_in_table_set():
    from claimlens.plugin.runs import _reference_root, _table_sets

    assert set(_table_sets()) == set(T.SETS)
    for name, folder in _table_sets().items():
        assert all(f.parent == _reference_root() / folder for f in T.SETS[name]["files"])


def test_a_wrong_name_lists_the_table_set():
    from claimlens.plugin.runs import resolve_refs

    with pytest.raises(pytest.UsageError, match="zhong2023_sweep"):
        resolve_refs(["zhong2023_sweeps"])


def _copy(tmp_path, edit):
    path = tmp_path / "1l_fixedwidth.csv"
    lines = (T.ROOT / "zhong2023" / "1l_fixedwidth.csv").read_text().splitlines()[:6]
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


def test_a_table_without_a_column_is_a_one_line_error_naming_file_column_and_remedy(tmp_path):
    def drop_gradient_sim(lines):
        header = lines[0].split(",")
        i = header.index("gradient_sim")
        return [",".join(c for j, c in enumerate(line.split(",")) if j != i) for line in lines]

    path = _copy(tmp_path, drop_gradient_sim)
    with pytest.raises(RunError) as info:
        T.read_table(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "no column 'gradient_sim'" in message
    assert "a sweep table needs" in message and "runid, attn_coeff" in message  # what to do: the columns it needs


def test_a_non_numeric_value_is_a_one_line_error_naming_line_and_column(tmp_path):
    path = _copy(tmp_path, lambda lines: [lines[0], lines[1].replace(",128,", ",wide,", 1), *lines[2:]])
    with pytest.raises(RunError) as info:
        T.read_table(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "line 2" in message
    assert "column 'd_model' is 'wide'" in message and "fix the value or remove the row" in message
    half = _copy(tmp_path, lambda lines: [lines[0], lines[1].replace(",128,4,1,", ",128,4,1.5,", 1)])
    with pytest.raises(RunError, match="column 'n_layers' is '1.5', not an integer"):
        T.read_table(half)


def test_a_bad_built_in_table_fails_the_set_claim_with_that_line(tmp_path, monkeypatch):
    """Opened through the run input (the run_set fixture), the error fails the test naming --run and the table."""
    from claimlens.plugin.runs import TableSet

    bad = tmp_path / "zhong2023"
    bad.mkdir()
    shutil.copy(T.ROOT / "zhong2023" / "1l_varywidth.csv", bad / "1l_varywidth.csv")
    (bad / "1l_fixedwidth.csv").write_text("runid,attn_coeff\nabc,0.5\n")
    monkeypatch.setitem(T.SETS, "zhong2023_sweep", {**T.SETS["zhong2023_sweep"],
                                                    "files": (bad / "1l_fixedwidth.csv", bad / "1l_varywidth.csv")})
    ref = TableSet(bad, "zhong2023_sweep", table="zhong2023_sweep")
    with pytest.raises(pytest.fail.Exception) as info:
        ref.open()
    assert "--run" in str(info.value) and "1l_fixedwidth.csv" in str(info.value) and "d_model" in str(info.value)
    assert ref.describe()["provenance"].startswith("unreadable: ")
