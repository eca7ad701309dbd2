"""The bad-input battery: every entry point fed with inputs that are wrong in the ways real files are wrong.

Each :class:`Case` builds its input under a temporary folder from a small valid run, says which entry point it
feeds (``claimlens <command>`` or ``pytest claims/``), the exit status it must end with, and a pattern the one-line
error must match; :func:`run_case` runs it in a subprocess and checks, besides, that no traceback from inside torch
(nor any Python traceback from the CLI) reached the user and that the files written before are unchanged.
``tests/test_bad_inputs.py`` asserts every case; ``scripts/bad_input_table.py`` prints the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = {"p": 23, "d_model": 32, "num_heads": 4, "d_head": 8, "d_mlp": 64, "act_type": "ReLU",
               "frac_train": 0.5, "seed": 1, "lr": 3e-3, "weight_decay": 1.0}


@dataclass
class Case:
    input: str  # the kind of bad input
    entry: str  # the entry point it feeds
    build: Callable[[Path, object], list[str]]  # (folder, a valid run) -> the command's arguments
    exit: int  # the documented exit status
    message: str  # a regular expression the error must match
    protected: list[str] = field(default_factory=list)  # files (relative to the folder) that must stay unchanged
    absent: list[str] = field(default_factory=list)  # paths that must not exist afterwards (nothing half-written)
    env: dict[str, str] = field(default_factory=dict)  # environment for the command ("{folder}" is the case's folder)


@dataclass
class Outcome:
    case: Case
    status: int
    clear: bool  # the message matched
    traceback: bool  # a traceback reached the user
    lost: list[str]  # protected files changed or half-written outputs left
    output: str

    @property
    def ok(self) -> bool:
        return self.status == self.case.exit and self.clear and not self.traceback and not self.lost


# ----------------------------------------------------------------------------- building inputs


def _full_run(folder: Path, run, mutate=None, **extra) -> Path:
    sds = [dict(run.checkpoint(e)) for e in run.epochs]
    data = {"state_dicts": sds, "epochs": list(run.epochs), "config": dict(TINY_CONFIG), **extra}
    if mutate:
        mutate(data)
    path = folder / "full_run_data.pth"
    torch.save(data, path)
    return path


def _copy_run(folder: Path, run) -> Path:
    dst = folder / "run"
    shutil.copytree(run.path, dst)
    return dst


def _report(folder: Path, name: str = "claims.json", **extra) -> Path:
    doc = {"schema_version": 3, "created": "2026-11-29T00:00:00+00:00", "versions": {"python": "3.11"},
           "machine": {"platform": "x"}, "git_commit": None, "runs": [{"label": "r", "kind": "run", "path": "r"}],
           "records": [{"nodeid": "claims/t.py::test_x[run=r]", "claim_id": "x", "claim_kind": "empirical",
                        "statement": "s", "source": "src", "run": "r", "parameters": {}, "outcome": "passed",
                        "message": None, "duration": 0.1, "series": [], "measurements": [], "phases": {},
                        "notes": []}],
           "summary": {"passed": 1, "failed": 0, "skipped": 0}, **extra}
    path = folder / name
    path.write_text(json.dumps(doc))
    return path


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _import(build_file):
    def build(folder: Path, run) -> list[str]:
        return ["claimlens", "import", str(build_file(folder, run)), "--out", str(folder / "imported")]
    return build


def _truncated(folder, run):
    path = _full_run(folder, run)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _nan(data):
    data["state_dicts"][1]["embed.W_E"] = torch.full_like(data["state_dicts"][1]["embed.W_E"], float("nan"))


def _wrong_shape(data):
    for sd in data["state_dicts"]:
        sd["blocks.0.mlp.W_in"] = torch.zeros(32, 65)


def _another_split(data):
    """The config names split seed 7; the run was trained on its own spec's split (E3-02's kind: another split)."""
    data["config"]["seed"] = 7


def _centred_writing_weights(data):
    """Weights as TransformerLens's center_writing_weights leaves them: every weight writing to the residual stream
    centred over d_model (a processed model read as if it were the trained one)."""
    for sd in data["state_dicts"]:
        for key in ("embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_O", "blocks.0.mlp.W_out"):
            sd[key] = sd[key] - sd[key].mean(-1, keepdim=True)


def _contradicted_seed(data):
    """Logged losses of the run, a config whose split seed and fraction no seed of 0–99 reproduces them with."""
    data["config"].update(seed=7, frac_train=0.3)


def _uncached_spec(folder: Path, run) -> Path:
    """A spec no cache holds (so the session must train it), beside a regular file named ``a_file`` (the cache
    path under it cannot be created: read-only as far as claimlens can tell, even for root)."""
    (folder / "a_file").write_text("not a folder")
    spec = folder / "fresh.toml"
    spec.write_text('name = "fresh"\n[task]\np = 7\n[model]\nd_model = 8\nn_heads = 1\nd_head = 8\nd_mlp = 16\n'
                    '[train]\nepochs = 20\ncheckpoint_every = 10\n')
    return spec


def _pickle(folder, run):
    path = folder / "evil.pth"
    torch.save({"state_dicts": [_Evil()], "epochs": [0]}, path)
    return path


def _manifest(edit):
    def build(folder: Path, run) -> Path:
        dst = _copy_run(folder, run)
        manifest = dst / "run.json"
        manifest.write_text(edit(manifest.read_text()))
        return dst
    return build


def _unsorted(text: str) -> str:
    m = json.loads(text)
    m["checkpoints"] = list(reversed(m["checkpoints"]))
    return json.dumps(m)


def _checkpoint(edit):
    def build(folder: Path, run) -> Path:
        dst = _copy_run(folder, run)
        entry = json.loads((dst / "run.json").read_text())["checkpoints"][-1]
        edit(dst / entry["file"])
        return dst
    return build


def _truncate_file(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _nan_checkpoint(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    tensors["blocks.0.mlp.W_in"] = torch.full_like(tensors["blocks.0.mlp.W_in"], float("nan"))
    save_file(tensors, path)


def _pickle_as_safetensors(path: Path) -> None:
    torch.save({"embed.W_E": torch.zeros(2, 2)}, path)


def _pt_folder(folder: Path, run) -> Path:
    dst = folder / "pt_checkpoints"
    dst.mkdir()
    torch.save(run.final(), dst / "final.pt")
    return dst


def _pytest(*args: str, run: Callable | None = None, claims: str = str(ROOT / "claims")):
    def build(folder: Path, base) -> list[str]:
        extra = ["--run", str(run(folder, base))] if run else []
        return ["pytest", claims, "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-q", "--claims-report",
                str(folder / "report"), *extra, *[a.format(folder=folder) for a in args]]
    return build


HOSTILE = '''
import pytest
from claimlens import Threshold, Verdict

NAME = "<script>alert('x')</script> & </svg><img src=x onerror=alert(1)>"


@pytest.mark.claim(id="hostile", statement=NAME, source=NAME, thresholds={"t": Threshold(1, NAME)})
@pytest.mark.parametrize("label", [NAME])
def test_hostile(label, claim):
    claim.chart(NAME, [0, 1], [1.0, 2.0], label=NAME)
    v = Verdict()
    v.check(NAME, 2, ">=", claim.thresholds["t"], label=NAME)
    claim.judge(v)
    claim.note(NAME)
'''

DISK_FULL = '''
import errno
import os

import claimlens._io as io


def pytest_configure(config):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    io.os.fsync = full
'''


def _hostile(folder: Path, run) -> list[str]:
    (folder / "test_hostile.py").write_text(HOSTILE)
    return ["pytest", str(folder / "test_hostile.py"), "-p", "no:cacheprovider", "--rootdir", str(folder), "-q",
            "--claims-report", str(folder / "report")]


def _disk_full(folder: Path, run) -> list[str]:
    (folder / "test_hostile.py").write_text(HOSTILE)
    (folder / "diskfull.py").write_text(DISK_FULL)
    (folder / "report").mkdir()
    _report(folder / "report", "claims.json")  # an earlier session's report: it must survive the failed write
    return ["pytest", str(folder / "test_hostile.py"), "-p", "no:cacheprovider", "-p", "diskfull", "--rootdir",
            str(folder), "-q", "--claims-report", str(folder / "report")]


def _disk_full_cli(folder: Path, run) -> list[str]:
    (folder / "diskfull.py").write_text(DISK_FULL.replace("def pytest_configure(config):", "if True:"))
    _report(folder)
    (folder / "claims.html").write_text("<p>the previous page</p>")
    return ["python", "-c", "import diskfull, sys; from claimlens.cli import main; "
            f"sys.exit(main(['report', {str(folder / 'claims.json')!r}, '--out', {str(folder / 'claims.html')!r}]))"]


# Fixed bytes, not os.urandom: a random draw can begin with a valid pickle opcode and take another error path (one
# failure seen in a full-suite run); the case is about bytes that are no checkpoint at all, every time.
CORRUPT_BYTES = random.Random(0).randbytes(4096)

CASES: list[Case] = [
    # claimlens import
    Case("truncated file", "claimlens import", _import(_truncated), 2, r"not a readable|truncated|corrupt",
         absent=["imported"]),
    Case("corrupt bytes", "claimlens import", _import(lambda f, r: _write(f, "x.pth", CORRUPT_BYTES)), 2,
         r"not a readable torch checkpoint \(truncated or corrupt", absent=["imported"]),
    Case("empty file", "claimlens import", _import(lambda f, r: _write(f, "empty.pth", b"")), 2,
         r"empty|not a readable|corrupt", absent=["imported"]),
    Case("NaN-filled weights", "claimlens import", _import(lambda f, r: _full_run(f, r, _nan)), 2,
         r"non-finite values", absent=["imported"]),
    Case("wrong-shape weights", "claimlens import", _import(lambda f, r: _full_run(f, r, _wrong_shape)), 2,
         r"shape", absent=["imported"]),
    Case("pickle that runs code", "claimlens import", _import(_pickle), 2, r"refus|unsafe|code",
         absent=["imported", "pwned.txt"]),
    Case("missing epochs", "claimlens import",
         _import(lambda f, r: _full_run(f, r, lambda d: d.update(epochs=d["epochs"][:-1]))), 2, r"epoch",
         absent=["imported"]),
    Case("unsorted epochs", "claimlens import",
         _import(lambda f, r: _full_run(f, r, lambda d: d.update(epochs=d["epochs"][::-1]))), 2,
         r"increas|order|sorted", absent=["imported"]),
    Case("a model trained on another split", "claimlens import", _import(lambda f, r: _full_run(f, r, _another_split)),
         2, r"does not fit the split it is said to have.*--split-unknown", absent=["imported"]),
    Case("weights processed by an analysis library", "claimlens import",
         _import(lambda f, r: _full_run(f, r, _centred_writing_weights)), 2,
         r"signature of processing by an analysis library.*center_writing_weights", absent=["imported"]),
    Case("a split seed its logged losses contradict", "claimlens import",
         _import(lambda f, r: _full_run(f, r, _contradicted_seed, train_losses=r.log()["train_loss"].tolist(),
                                        test_losses=r.log()["test_loss"].tolist())), 2,
         r"do not reproduce the file's own logged losses.*seeds 0–99.*none reproduces", absent=["imported"]),
    # claimlens info
    Case("corrupt manifest", "claimlens info", lambda f, r: ["claimlens", "info", str(_manifest(
        lambda t: t[: len(t) // 2])(f, r))], 2, r"not valid JSON"),
    Case("unsorted epochs", "claimlens info", lambda f, r: ["claimlens", "info", str(_manifest(_unsorted)(f, r))], 2,
         r"increasing order"),
    Case("empty folder", "claimlens info", lambda f, r: ["claimlens", "info", str(f)], 2, r"not a claimlens run"),
    Case("checkpoint changed after the run was written", "claimlens info", lambda f, r: [
        "claimlens", "info", str(_checkpoint(_truncate_file)(f, r))], 2,
         r"content hash.*info: error: .*epoch_\d+\.safetensors.*truncated or corrupt"),
    # claimlens report / diff / merge
    Case("corrupt report", "claimlens report", lambda f, r: [
        "claimlens", "report", str(_write(f, "claims.json", '{"records": [')), "--out", str(
            _write(f, "page.html", "<p>the previous page</p>"))], 2, r"not valid JSON", protected=["page.html"]),
    Case("empty file", "claimlens report", lambda f, r: ["claimlens", "report", str(_write(f, "c.json", ""))], 2,
         r"not valid JSON"),
    Case("NaN-filled values", "claimlens report", lambda f, r: ["claimlens", "report", str(_write(
        f, "c.json", _report(f).read_text().replace('"duration": 0.1', '"duration": NaN')))], 0, r"wrote"),
    Case("corrupt report", "claimlens diff", lambda f, r: ["claimlens", "diff", str(_report(f)), str(
        _write(f, "new.json", "[1, 2"))], 2, r"not valid JSON"),
    Case("corrupt report", "claimlens merge", lambda f, r: ["claimlens", "merge", str(_report(f)), str(
        _write(f, "b.json", "{")), "--out", str(_report(f, "out.json"))], 2, r"not valid JSON",
         protected=["out.json"]),
    Case("the same run twice", "claimlens merge", lambda f, r: ["claimlens", "merge", str(_report(f)), str(
        _report(f, "b.json")), "--out", str(f / "m" / "claims.json")], 2, r"share test ids", absent=["m"]),
    Case("disk full", "claimlens report", _disk_full_cli, 2, r"could not read or write .*claims.html.* \(No space left "
                                                             r"on device\).*unchanged",
         protected=["claims.html"]),
    # claimlens thresholds
    Case("corrupt TOML", "claimlens thresholds", lambda f, r: [
        "claimlens", "thresholds", "--pyproject", str(_write(f, "pyproject.toml", "[tool.claimlens"))], 2,
         r"not valid TOML"),
    Case("NaN threshold", "claimlens thresholds", lambda f, r: [
        "claimlens", "thresholds", "--pyproject", str(_write(f, "pyproject.toml", (
            "[tool.claimlens.thresholds.grokking_delayed_generalisation]\ndelay_ratio = nan\n")))], 2,
         r"not a finite number"),
    # pytest claims/ --run and the plugin's options
    Case("corrupt manifest", "pytest --run", _pytest(run=_manifest(lambda t: "{")), 4,
         r"run.json is not a valid manifest"),
    Case("missing run", "pytest --run", _pytest("--run", "{folder}/nowhere"), 4, r"no such file or directory"),
    Case("a folder of checkpoints, not a run", "pytest --run", _pytest(run=_pt_folder), 4,
         r"has no run.json.*claimlens import"),
    Case("a checkpoint file, not a run", "pytest --run",
         _pytest(run=lambda f, r: _write(f, "model.safetensors", "not a run")), 4,
         r"a file that is not a run.*claimlens import .*model.safetensors --out RUN"),
    Case("an empty spec file", "pytest --run", _pytest(run=lambda f, r: _write(f, "empty.toml", "")), 4,
         r"states no \[task\], \[model\] or \[train\] table.*40 000 epochs", absent=["report"]),
    Case("pickle under a .safetensors name", "pytest --run",
         _pytest("-k", "phase_boundaries", run=_checkpoint(_pickle_as_safetensors)), 1, r"PyTorch pickle.*claimlens import"),
    Case("truncated checkpoint", "pytest --run", _pytest("-k", "phase_boundaries", run=_checkpoint(_truncate_file)),
         1, r"truncated or corrupt"),
    Case("NaN-filled checkpoint", "pytest --run", _pytest("-k", "phase_boundaries", run=_checkpoint(_nan_checkpoint)),
         1, r"non-finite values"),
    Case("unknown threshold", "pytest --claims-threshold", _pytest("--claims-threshold", "nope.x=1", "--co"), 4,
         r"unknown claim 'nope'"),
    Case("not a number", "pytest --claims-tolerance", _pytest("--claims-tolerance", "test_loss=abc", "--co"), 4,
         r"expected NAME=RTOL"),
    Case("corrupt baseline", "pytest --claims-baseline", lambda f, r: _pytest(
        "--claims-baseline", str(_write(f, "base.json", "{oops")), "--co")(f, r), 4, r"not valid JSON",
         protected=["base.json"]),
    Case("too few checkpoints", "pytest --claims-llc-checkpoints", _pytest("--claims-llc-checkpoints", "1", "--co"),
         4, r"at least 3"),
    Case("a read-only cache, a run to train", "pytest --run", _pytest(run=_uncached_spec), 4,
         r"cache .* cannot be written.*CLAIMLENS_CACHE_DIR", env={"CLAIMLENS_CACHE_DIR": "{folder}/a_file/cache"}),
    Case("a new baseline from a partial session", "pytest --claims-baseline-update",
         _pytest("-k", "final_model_is_symmetric", "--claims-baseline", "{folder}/baseline.json",
                 "--claims-baseline-update", run=_copy_run), 4, r"partial", absent=["baseline.json"]),
    Case("hostile strings in ids and names", "pytest (report)", _hostile, 0, r"1 passed"),
    Case("disk full", "pytest (report)", _disk_full, 3, r"could not write the report.*unchanged",
         protected=["report/claims.json"]),
]


def _digest(path: Path) -> str | None:
    if path.is_dir():
        return "dir"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, folder: Path, run) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    argv = case.build(folder, run)
    before = {p: _digest(folder / p) for p in case.protected}
    if argv[0] == "claimlens":
        cmd = [sys.executable, "-m", "claimlens.cli", *argv[1:]]
    elif argv[0] == "pytest":
        cmd = [sys.executable, "-m", "pytest", *argv[1:]]
    else:
        cmd = [sys.executable, *argv[1:]]
    env = {**os.environ, "PYTHONPATH": str(folder), "COLUMNS": "200",
           **{k: v.format(folder=folder) for k, v in case.env.items()}}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=folder, env=env, timeout=300)
    output = proc.stdout + proc.stderr
    lost = [p for p, d in before.items() if _digest(folder / p) != d]
    lost += [p for p in case.absent if (folder / p).exists()]
    lost += [p.name for p in folder.rglob("*.tmp")]
    traceback = "site-packages/torch" in output or (argv[0] != "pytest" and "Traceback" in output)
    if case.entry == "pytest (report)" and case.exit == 0:
        html = (folder / "report" / "claims.html").read_text() if (folder / "report" / "claims.html").exists() else ""
        lost += ["unescaped HTML"] if "<script>alert" in html or "<img src=x" in html else []
    return Outcome(case, proc.returncode, bool(re.search(case.message, output, re.DOTALL)), traceback, lost, output)


def table(outcomes: list[Outcome]) -> str:
    """Markdown: input kind × entry point → outcome."""
    lines = ["| input | entry point | exit (expected) | clear error | traceback | files lost | ok |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        lines.append(f"| {o.case.input} | `{o.case.entry}` | {o.status} ({o.case.exit}) | "
                     f"{'yes' if o.clear else 'NO'} | {'YES' if o.traceback else 'no'} | "
                     f"{', '.join(o.lost) or 0} | {'ok' if o.ok else 'FAIL'} |")
    n = len(outcomes)
    lines.append(f"\n{n} inputs, {len({o.case.entry for o in outcomes})} entry points: "
                 f"{sum(o.clear for o in outcomes)} clear errors, {sum(o.traceback for o in outcomes)} tracebacks, "
                 f"{sum(bool(o.lost) for o in outcomes)} with files lost; {sum(o.ok for o in outcomes)}/{n} ok")
    return "\n".join(lines)
