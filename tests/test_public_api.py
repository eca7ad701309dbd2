"""The surface a claim author touches (issue: a small public surface): ``claimlens.__all__``, ``@SPEC.rule`` and the
``claim`` fixture's three verbs; the built-in claim files use nothing else; README's claim of its own runs as
written, in a project of its own, under pytester."""

import ast
import json
import re
import subprocess
import sys

import pytest

import claimlens
from conftest import ROOT

pytest_plugins = ["pytester"]


def test_all_names_the_claim_authors_surface_and_each_resolves():
    assert set(claimlens.__all__) == {
        "ClaimSpec", "Threshold", "Validation", "Verdict", "Series", "Claim",
        "needs_weights", "needs_transformer", "needs_one_layer", "needs_equals_token", "needs_mlp", "needs_sequences"}
    for name in claimlens.__all__:
        assert getattr(claimlens, name).__doc__, f"claimlens.{name} has a docstring"
    with pytest.raises(AttributeError, match="no attribute 'check'"):
        claimlens.check  # noqa: B018


def test_importing_claimlens_and_its_plugin_imports_no_torch():
    code = ("import sys, claimlens, claimlens.plugin; from claimlens import ClaimSpec, Threshold, Verdict; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_claim_fixture_offers_judge_note_and_chart():
    from claimlens import Claim

    public = {name for name in vars(Claim) if not name.startswith("_")}
    assert public == {"judge", "note", "chart", "id", "kind"}, public  # thresholds and spec are set per test


def _imports(path):
    """``(module, names)`` of every import in the file ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            yield node.module or "", [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


@pytest.mark.parametrize("path", sorted((ROOT / "claims").glob("test_*.py")), ids=lambda p: p.name)
def test_claim_files_use_the_public_surface_and_their_own_family(path):
    """A built-in claim file imports, of claimlens, only ``claimlens.__all__`` and its own family's modules (its
    rules and measurements); it never reaches into the claim's verdict."""
    family = path.stem.removeprefix("test_")
    for module, names in _imports(path):
        if module == "claimlens":
            assert set(names) <= set(claimlens.__all__), (path.name, sorted(set(names) - set(claimlens.__all__)))
        elif module.startswith("claimlens"):
            assert module.startswith(f"claimlens.families.{family}"), (path.name, module)
    text = path.read_text()
    assert not re.search(r"claim\.(verdict|_)", text), f"{path.name} reaches into the claim's verdict"


def _readme_block(after: str) -> str:
    """The first ```python block of README.md after the line ``after``."""
    text = (ROOT / "README.md").read_text()
    rest = text[text.index(after):]
    return rest.split("```python\n", 1)[1].split("```", 1)[0]


def _readme_quickstart() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("cat > claims/test_mine.py <<'PY'\n", 1)[1].split("\nPY", 1)[0]


@pytest.mark.parametrize("source", ["a claim of your own", "quickstart"])
def test_a_users_claim_written_with_the_public_surface_runs(pytester, tiny_run, tmp_path, source):
    """README's examples, copied as a user copies them into a project of their own, judged on a trained run: they
    import nothing but ``claimlens.__all__``, and the record carries the rule's checks."""
    code = _readme_block("### A claim of your own") if source == "a claim of your own" else _readme_quickstart()
    tree = ast.parse(code)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "claimlens"
                for a in n.names}
    assert imported and imported <= set(claimlens.__all__)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module != "claimlens"
                and (n.module or "").startswith("claimlens")], "only `from claimlens import …`"
    (pytester.path / "claims").mkdir()
    (pytester.path / "claims" / "test_mine.py").write_text(code)
    result = pytester.runpytest_subprocess("claims", "-p", "no:cacheprovider", "--run", str(tiny_run.path),
                                           "--claims-report", str(tmp_path / "r"), "-rs")
    records = json.loads((tmp_path / "r" / "claims.json").read_text())["records"]
    assert len(records) == 1, result.stdout.str()
    (record,) = records
    assert record["family"] == "mine" and record["run"] == tiny_run.spec.name
    if record["outcome"] == "skipped":  # the tiny run's phases: said, never a pass by default
        assert record["message"] and source == "a claim of your own", result.stdout.str()
    else:
        assert record["outcome"] in ("passed", "failed"), result.stdout.str()
        (check,) = record["measurements"]
        assert check["threshold"] is not None and check["value"] is not None
        assert result.ret == (0 if record["outcome"] == "passed" else 1)


def test_judge_charts_and_notes_reach_the_record(pytester, tiny_run, tmp_path):
    """The three verbs, and the errors of a rule bound wrongly, in a user's session."""
    pytester.makepyfile(test_verbs='''
import pytest
from claimlens import ClaimSpec, Threshold, Verdict

MINE = ClaimSpec(id="mine", statement="s", source="x", thresholds={"t": Threshold(0.5, "ours")})
OTHER = ClaimSpec(id="other", statement="s", source="x")

@MINE.rule
def mine(value, th):
    v = Verdict()
    v.check("value", value, ">=", th["t"], epoch=10)
    return v

@OTHER.rule
def test_named_like_a_test(th):  # a rule is never collected as a test, whatever its name
    return Verdict()

@pytest.mark.claim(MINE)
def test_verbs(training_log, claim):
    claim.chart(training_log["train_loss"], log=True)
    claim.chart("a spectrum", [0, 1, 2], [1.0, 0.5, 0.25], x_name="Fourier mode")
    claim.note("compared with my notebook")
    claim.judge(0.75)

@pytest.mark.claim(MINE)
def test_wrong_rule(claim):
    claim.judge(test_named_like_a_test)

@pytest.mark.claim(MINE)
def test_only_an_assert(training_log, claim):
    assert len(training_log["train_loss"]) >= 10, "the run logged fewer than 10 epochs"
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--run", str(tiny_run.path),
                                           "--claims-report", str(tmp_path / "r"))
    records = {r["nodeid"].split("::")[-1].split("[")[0]: r
               for r in json.loads((tmp_path / "r" / "claims.json").read_text())["records"]}
    verbs = records["test_verbs"]
    assert verbs["outcome"] == "passed" and verbs["notes"] == ["compared with my notebook"]
    assert [s["name"] for s in verbs["series"]] == ["train_loss", "a spectrum"]
    assert verbs["series"][1]["x_name"] == "Fourier mode" and verbs["series"][0]["log_scale"] is True
    assert verbs["measurements"][0]["value"] == 0.75 and verbs["measurements"][0]["threshold"] == 0.5
    assert records["test_wrong_rule"]["outcome"] == "error"
    assert "bound to claim 'other', not to this test's claim 'mine'" in result.stdout.str()
    assert set(records) == {"test_verbs", "test_wrong_rule", "test_only_an_assert"}, "the rule was not collected"
    assert records["test_only_an_assert"]["outcome"] == "passed" and not records["test_only_an_assert"]["measurements"]
    result.stdout.fnmatch_lines(["*ClaimWarning: claim 'mine' passed with no check in its record (test_only_an_assert?run=tiny?)*"])


def test_mistakes_are_named_where_they_are_made():
    from claimlens import Claim, ClaimSpec, Series, Threshold, Verdict

    spec = ClaimSpec(id="mine", statement="s", source="x", thresholds={"t": Threshold(1, "ours")})

    @spec.rule
    def rule(loss, th, *, extra=None):
        v = Verdict()
        v.check("loss", loss, "<=", th["t"])
        return v

    claim = Claim(spec, {"t": 1})
    assert claim.judge(loss=0.5).passed and claim.judge(0.5, extra=2).passed  # data by name too
    with pytest.raises(TypeError, match=r"rule .*rule takes 1 data argument \(loss\) before its thresholds \(th, "
                                        r"which claimlens passes\); claim.judge got 2 positional$"):
        claim.judge(1, 2)
    with pytest.raises(TypeError, match="got 0 positional .*missing a required argument: 'loss'"):
        claim.judge()
    with pytest.raises(TypeError, match="a verdict of claim 'other' in the test of claim 'mine'"):
        claim.judge(Verdict("other"))
    with pytest.raises(TypeError, match=r"claim.chart takes a Series, or a name and its x and y values.*got list"):
        claim.chart([1.0, 2.0])
    with pytest.raises(AttributeError, match=r"no 'check' any more: build a verdict, v = Verdict\(\); v.check"):
        claim.check("x", 1, ">=", 0)
    with pytest.raises(TypeError, match="has no rule bound: bind one where its spec is defined"):
        Claim(ClaimSpec(id="bare", statement="", source=""), {}).judge(1)
    claim.chart(Series.of("loss", [0, 1], [1.0, 0.5]))
    assert rule.__test__ is False


def test_a_verdict_holding_what_is_not_a_series_costs_one_record_not_the_session(pytester, tiny_run, tmp_path):
    pytester.makepyfile(test_odd='''
import pytest
from claimlens import Verdict

class Unreadable:
    """A series-like object whose values cannot be read a second time (when the record is made)."""
    name, epochs, reads = "odd", [0, 1], 0

    @property
    def values(self):
        self.reads += 1
        if self.reads > 1:
            raise ValueError("values gone")
        return [1.0, 2.0]

@pytest.mark.claim(id="list", statement="s", source="x")
def test_list(claim):
    v = Verdict()
    v.add_series([1.0, 2.0])  # not a Series: refused at the call

@pytest.mark.claim(id="odd", statement="s", source="x")
def test_odd(claim):
    v = Verdict()
    v.add_series(Unreadable())
    v.check("x", 1, ">=", 0)
    claim.judge(v)

@pytest.mark.claim(id="fine", statement="s", source="x")
def test_fine(claim):
    v = Verdict()
    v.check("x", 1, ">=", 0)
    claim.judge(v)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--run", str(tiny_run.path),
                                           "--claims-report", str(tmp_path / "r"))
    assert "INTERNALERROR" not in result.stdout.str()
    records = {r["nodeid"].split("::")[-1].split("[")[0]: r
               for r in json.loads((tmp_path / "r" / "claims.json").read_text())["records"]}
    assert records["test_fine"]["outcome"] == "passed"
    assert records["test_list"]["outcome"] == "error"
    assert "Verdict.add_series takes a claimlens.Series" in records["test_list"]["message"]
    assert records["test_odd"]["outcome"] == "error"
    assert "could not make this test's record (ValueError: values gone)" in records["test_odd"]["message"]
