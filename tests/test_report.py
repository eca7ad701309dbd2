"""claims.json against its schema, and the HTML rendered from it: self-contained, escaped, complete."""

import json
import re

import jsonschema
import pytest

from claimlens.cli import main
from claimlens.report.html import render, svg_chart
from conftest import ROOT

pytest_plugins = ["pytester"]
SCHEMA = json.loads((ROOT / "src" / "claimlens" / "report" / "schema.json").read_text())


@pytest.fixture(scope="module")
def report_dir(tiny_run, tmp_path_factory):
    """A real claims session on the tiny run (subprocess pytest), writing claims.json and claims.html."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("report")
    subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), "--run", str(tiny_run.path), "-q",
                    "--claims-report", str(out), "-p", "no:cacheprovider", "--rootdir", str(ROOT)],
                   capture_output=True, text=True, cwd=out)
    return out


def test_claims_json_validates_against_the_schema(report_dir):
    doc = json.loads((report_dir / "claims.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["summary"]["failed"] + doc["summary"]["passed"] + doc["summary"]["skipped"] == len(doc["records"])


def test_html_is_self_contained_and_shows_every_claim(report_dir):
    page = (report_dir / "claims.html").read_text()
    doc = json.loads((report_dir / "claims.json").read_text())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "no network fetches"
    assert "<link" not in page and "@import" not in page
    for claim in {r["claim_id"] for r in doc["records"]}:
        assert f'id="{claim}"' in page
    assert page.count("<svg") >= 3 and "<title>train_acc: epoch" in page
    assert 'class="phase"' in page  # phase boundaries drawn
    assert 'type=checkbox value="failed"' in page  # filtering by outcome


def test_every_string_is_escaped():
    hostile = '<script>alert("x")</script>'
    doc = {"created": hostile, "versions": {"claimlens": hostile}, "machine": {"platform": hostile}, "git_commit": None,
           "runs": [{"label": hostile, "kind": "run", "path": hostile}], "summary": {"failed": 1},
           "records": [{"nodeid": f"claims/test_x.py::test[{hostile}]", "claim_id": hostile, "statement": hostile,
                        "source": hostile, "run": hostile, "parameters": {"run": hostile}, "outcome": "failed",
                        "message": hostile, "duration": 0.1,
                        "series": [{"name": hostile, "label": hostile, "epochs": [0, 1], "values": [1.0, 2.0],
                                    "log_scale": True}],
                        "measurements": [{"name": hostile, "value": hostile, "threshold": 1, "op": ">=", "epoch": 1,
                                          "label": hostile, "passed": False}],
                        "phases": {hostile: 1}, "notes": [hostile]}]}
    page = render(doc)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the page's own filter script


def test_claims_not_judged_are_summed_up_by_message_and_a_long_flip_list_is_folded():
    from claimlens.report.compare import FLIPS_SHOWN

    def rec(i, outcome, message=None):
        return {"nodeid": f"claims/test_g.py::test_c[run=r-epoch={i}]", "claim_id": "c", "statement": "s",
                "source": "src", "run": "r", "parameters": {"run": "r", "epoch": i}, "outcome": outcome,
                "message": message, "duration": 0.1, "series": [], "measurements": [], "phases": {}, "notes": []}

    bad = "run 'r', epoch 40 (checkpoints/epoch_0000040.safetensors): not a readable safetensors file"
    records = [rec(i, "error", bad) for i in range(FLIPS_SHOWN + 4)] + [rec(999, "error", "TypeError: oops"),
                                                                      rec(1000, "passed")]
    flips = [{"nodeid": r["nodeid"], "from": "passed", "to": "error"} for r in records[:FLIPS_SHOWN + 4]]
    page = render({"runs": [{"label": "r", "kind": "run", "path": "r"}], "records": records,
                   "baseline_diff": {"baseline": "base.json", "flips": flips, "added": [], "removed": [],
                                     "moves_beyond_tolerance": [], "largest_moves": []}})
    summary = page[page.index("<h2>Not judged</h2>"):page.index("<h2>Against the baseline</h2>")]
    assert f"<td class=num>{FLIPS_SHOWN + 4}</td>" in summary and "not a readable safetensors file" in summary
    assert "<td class=num>1</td>" in summary and "TypeError: oops" in summary
    baseline = page[page.index("<h2>Against the baseline</h2>"):page.index("<h2>Runs</h2>")]
    shown, folded = baseline.split("<details>")
    assert shown.count("→") == FLIPS_SHOWN and folded.count("→") == 4 and "4 more flips" in folded
    assert f"error 1/{len(records)} passed" in page  # the matrix cell: how many of the checkpoints passed


def test_log_scale_falls_back_to_linear_for_nonpositive_values():
    assert "log scale" in svg_chart([{"name": "a", "epochs": [0, 1], "values": [1e-3, 10.0]}], log=True)
    assert "linear scale" in svg_chart([{"name": "a", "epochs": [0, 1], "values": [0.0, 10.0]}], log=True)


def test_cli_report_rerenders_a_stored_report(report_dir, tmp_path, capsys):
    assert main(["report", str(report_dir / "claims.json"), "--out", str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_text() == (report_dir / "claims.html").read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["report", str(bad)]) == 2
    assert "is not a claimlens claims.json" in capsys.readouterr().err


def test_an_interrupted_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    import os

    from claimlens.report import document

    target = tmp_path / "claims.json"
    document.write(target, {"records": [1]})

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        document.write(target, {"records": [2] * 1000})
    assert json.loads(target.read_text()) == {"records": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["claims.json"], "no temporary file left behind"


def test_importing_the_plugin_is_cheap():
    import subprocess
    import sys

    code = "import sys, claimlens.plugin; print(sorted(m for m in ('torch', 'transformer_lens', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"the pytest plugin imported {out} at import time"


def test_chart_ticks_stay_inside_the_picture():
    """Log-scale decade ticks lie on or inside the frame (they were drawn above and below it), and the last x label
    ends at the frame's edge instead of being cut by the picture's (30000 read as 3000)."""
    import re

    svg = svg_chart([{"name": "loss", "epochs": [0, 15000, 30000], "values": [3e-7, 2.0, 40.0]}], log=True)
    top, bottom = 10, 220 - 28
    ys = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.-]+)" class="tick" text-anchor="end">1e', svg)]
    assert ys and all(top <= y <= bottom + 3.5 for y in ys), ys
    last = re.findall(r'<text x="([\d.]+)" y="[\d.]+" class="tick" text-anchor="(\w+)">30000<', svg)
    assert last and last[0][1] == "end" and float(last[0][0]) <= 560


def test_the_strip_chart_names_each_reference_run_and_labels_the_threshold_in_text():
    """A screenshot or printout has no tooltips: the values are also listed by run, and the threshold is written."""
    from claimlens.report.html import strip_chart

    ref = {"key": {"value": 0.5, "threshold": 0.95, "op": ">=", "source_value": 0.99367},
           "runs": [{"label": "zhong2023_model_a", "value": 0.99369, "passed": True},
                    {"label": "default", "value": 0.357, "passed": False},
                    {"label": "nv_mlp", "value": 0.357, "passed": None}]}
    svg = strip_chart(ref)
    listed = svg[svg.index("<details class=refvalues>"):]
    assert listed.index("default 0.357 ✗") < listed.index("zhong2023_model_a 0.9937 ✓"), listed
    assert "nv_mlp 0.357<" in listed or "nv_mlp 0.357;" in listed
    assert ">&gt;= 0.95</text>" in svg
