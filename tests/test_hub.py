"""Runs on the Hugging Face Hub (``hf://OWNER/REPO[/PATH][@REVISION]``), through huggingface_hub's own cache and
offline mode. No test reaches the Hub: the cache is written here in the layout huggingface_hub reads
(``models--OWNER--REPO/{blobs,snapshots/COMMIT,refs}``), or filled by huggingface_hub itself from a fake Hub on the
loopback interface (``HF_ENDPOINT``), whose answers to a misspelt repository, a missing revision and a missing file
are the Hub's own (status and ``X-Error-Code``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_importers import full_run_file

from claimlens.runs import hub
from conftest import ROOT
from tests.test_runsets import TINY_TOML as TINY_SPEC

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str = COMMIT,
              refs: tuple[str, ...] = ("main",), repo_type: str = "model") -> Path:
    """Write ``files`` into ``cache`` as huggingface_hub leaves them after a download: each file's bytes in
    ``blobs/<sha256>``, a relative symlink to it at ``snapshots/<commit>/<path>``, and ``refs/<name>`` holding the
    commit each revision name resolved to."""
    owner, name = repo_id.split("/")
    storage = cache / f"{repo_type}s--{owner}--{name}"
    for path, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = storage / "snapshots" / commit / path
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    for ref in refs:
        (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return storage


def env(tmp_path: Path, cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a session that reads the Hub cache ``cache``: offline unless ``extra`` says otherwise, a
    claimlens cache of its own, no token."""
    out = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "CLAIMLENS_CACHE_DIR": str(tmp_path / "claimlens-cache"), **extra}
    out.pop("HF_TOKEN", None)
    return out


def claims_session(tmp_path, environ, *args):
    return subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "claims"), "-p", "no:cacheprovider",
                           "--rootdir", str(ROOT), "--claims-report", str(tmp_path / "rep"), *args],
                          capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=600, check=False)


def cli(environ, *args):
    return subprocess.run([sys.executable, "-m", "claimlens.cli", *args], capture_output=True, text=True, env=environ,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def arena_file(tiny_run, tmp_path_factory) -> bytes:
    """An ARENA-style full_run_data.pth of the tiny run (state_dicts, epochs, config, logged losses)."""
    log = tiny_run.log()
    path = full_run_file(tmp_path_factory.mktemp("arena") / "full_run_data.pth", tiny_run,
                         train_losses=log["train_loss"].tolist(), test_losses=log["test_loss"].tolist())
    return path.read_bytes()


# -- references


@pytest.mark.parametrize(("value", "repo_id", "path", "revision", "repo_type"), [
    ("hf://callummcdougall/grokking_full_run_data/full_run_data.pth", "callummcdougall/grokking_full_run_data",
     "full_run_data.pth", None, "model"),
    ("hf://me/runs/seed1/model.pt@v1.0", "me/runs", "seed1/model.pt", "v1.0", "model"),
    ("hf://me/runs@v1.0/seed1/model.pt", "me/runs", "seed1/model.pt", "v1.0", "model"),  # the Hub's own form
    (f"hf://me/runs/full_run_data.pth@{COMMIT}", "me/runs", "full_run_data.pth", COMMIT, "model"),
    ("hf://me/runs@refs/pr/3/full_run_data.pth", "me/runs", "full_run_data.pth", "refs/pr/3", "model"),
    ("hf://me/runs", "me/runs", "", None, "model"),
    ("hf://me/runs/a-run", "me/runs", "a-run", None, "model"),
    ("hf://datasets/me/sweeps/x.pth", "me/sweeps", "x.pth", None, "dataset"),
])
def test_references_are_parsed_in_both_orders(value, repo_id, path, revision, repo_type):
    ref = hub.parse(value)
    assert (ref.repo_id, ref.path, ref.revision, ref.repo_type) == (repo_id, path, revision, repo_type)
    assert hub.parse(str(ref)) == ref
    assert ref.is_file == path.endswith((".pth", ".pt"))


def test_run_names_come_from_the_repository():
    assert hub.parse("hf://callummcdougall/grokking_full_run_data/full_run_data.pth").run_name == \
        "grokking_full_run_data"
    assert hub.parse("hf://me/runs/seed1/model.pt").run_name == "runs-model"


@pytest.mark.parametrize("value", ["hf://", "hf://owner", "hf://owner/", "hf://o/r/../x.pth", "hf://o/r/x.pth@",
                                   "hf://o/r//x.pth", "hf://o/r e/x.pth"])
def test_a_malformed_reference_names_the_form(value):
    with pytest.raises(hub.HubError, match=r"expected hf://OWNER/REPO\[/PATH\]\[@REVISION\]"):
        hub.parse(value)


def test_the_file_suffixes_are_the_importers():
    from claimlens.runs.importers import CHECKPOINT_SUFFIXES

    assert set(hub.FILE_SUFFIXES) == set(CHECKPOINT_SUFFIXES)


# -- offline, from a cache written in huggingface_hub's layout


def test_an_arena_file_in_the_hub_cache_is_judged_offline_and_its_commit_and_hash_recorded(tmp_path, arena_file):
    cache = tmp_path / "hub"
    hub_cache(cache, "someone/tiny_grokking", {"full_run_data.pth": arena_file})
    ref = "hf://someone/tiny_grokking/full_run_data.pth"
    proc = claims_session(tmp_path, env(tmp_path, cache), "--run", ref, "-q", "-k", "grokking_delayed or trig_loss")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "rep" / "claims.json").read_text())
    (run,) = doc["runs"]
    assert run["label"] == "tiny_grokking" and run["kind"] == "hub" and run["reference"] == ref
    sha = hashlib.sha256(arena_file).hexdigest()
    recorded = run["source"]["hub"]  # the imported run's run.json (source.hub), as claims.json shows it
    assert recorded == {"reference": ref, "repo_id": "someone/tiny_grokking", "repo_type": "model",
                        "path": "full_run_data.pth", "revision": "main", "commit": COMMIT, "sha256": sha,
                        "size": len(arena_file)}
    manifest = json.loads((Path(run["run_dir"]) / "run.json").read_text())
    assert manifest["source"]["hub"] == recorded and manifest["source"]["format"] == "full_run_data"
    judged = {r["claim_id"] for r in doc["records"] if r["run"] == "tiny_grokking" and r["outcome"] != "skipped"}
    assert {"grokking_delayed_generalisation", "trig_loss_all_equals_train"} <= judged

    # a second session finds the import in the claimlens cache; a commit named as the revision resolves the same
    proc = claims_session(tmp_path, env(tmp_path, cache), "--run", f"{ref}@{COMMIT}", "--collect-only", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "claimlens-cache" / "imports").glob("tiny_grokking-*/run.json"))) == 1


def test_claimlens_import_reads_the_hub_cache_offline(tmp_path, arena_file):
    cache = tmp_path / "hub"
    hub_cache(cache, "someone/tiny_grokking", {"full_run_data.pth": arena_file}, refs=("main", "v1"))
    proc = cli(env(tmp_path, cache), "import", "hf://someone/tiny_grokking/full_run_data.pth@v1",
               "--out", str(tmp_path / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    source = json.loads((tmp_path / "run" / "run.json").read_text())["source"]
    assert source["hub"]["revision"] == "v1" and source["hub"]["commit"] == COMMIT
    assert source["hub"]["sha256"] == hashlib.sha256(arena_file).hexdigest()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["name"] == "tiny_grokking"
    info = cli(env(tmp_path, cache), "info", str(tmp_path / "run"))
    assert f"hub        hf://someone/tiny_grokking/full_run_data.pth@v1: someone/tiny_grokking at v1, commit {COMMIT}" \
        in info.stdout


def test_a_run_directory_on_the_hub_is_judged_where_the_cache_holds_it(tmp_path, tiny_run):
    cache = tmp_path / "hub"
    files = {str(f.relative_to(tiny_run.path)): f.read_bytes() for f in tiny_run.path.rglob("*") if f.is_file()}
    storage = hub_cache(cache, "someone/tiny-runs", {f"tiny/{k}": v for k, v in files.items()})
    proc = claims_session(tmp_path, env(tmp_path, cache), "--run", "hf://someone/tiny-runs/tiny", "-q",
                          "-k", "grokking_delayed")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads((tmp_path / "rep" / "claims.json").read_text())["runs"]
    assert run["label"] == "tiny" and run["content_hash"] == tiny_run.content_hash
    assert run["hub"]["commit"] == COMMIT and Path(run["run_dir"]) == storage / "snapshots" / COMMIT / "tiny"
    assert not (tmp_path / "claimlens-cache" / "imports").exists(), "a claimlens run is judged in place"


TINY_TOML = TINY_SPEC.encode()  # the tiny spec the run-set tests train



def test_a_folder_of_checkpoint_files_on_the_hub_is_imported_once_with_its_commit(tmp_path, tiny_run):
    from safetensors.torch import save

    cache = tmp_path / "hub"
    files = {f"ckpts/epoch_{e}.safetensors": save(tiny_run.checkpoint(e)) for e in tiny_run.epochs}
    hub_cache(cache, "someone/tiny-ckpts", {**files, "ckpts/spec.toml": TINY_TOML, "README.md": b"not a run"})
    proc = claims_session(tmp_path, env(tmp_path, cache), "--run", "hf://someone/tiny-ckpts/ckpts", "-q",
                          "-k", "trig_loss")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = json.loads((tmp_path / "rep" / "claims.json").read_text())["runs"]
    assert run["label"] == "tiny-ckpts-ckpts" and run["n_checkpoints"] == len(tiny_run.epochs)
    assert run["source"]["format"] == "state_dict_folder"
    assert run["source"]["hub"] == {"reference": "hf://someone/tiny-ckpts/ckpts", "repo_id": "someone/tiny-ckpts",
                                    "repo_type": "model", "path": "ckpts", "revision": "main", "commit": COMMIT}


def test_what_the_cache_lacks_offline_is_one_line_naming_what_to_do(tmp_path, arena_file):
    cache = tmp_path / "hub"
    hub_cache(cache, "someone/tiny_grokking", {"full_run_data.pth": arena_file})
    environ = env(tmp_path, cache)
    for ref in ("hf://someone/tiny_grokking/full_run_data.pth@v9",  # a revision the cache never saw
                "hf://someone/tiny_grokkin/full_run_data.pth",  # a misspelt repository
                "hf://someone/tiny_grokking/full_run_dat.pth"):  # a misspelt file
        proc = claims_session(tmp_path, environ, "--run", ref, "-q")
        assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if ref in line]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert re.search(r"--run hf://\S+: not in the Hugging Face cache \(.*\) and HF_HUB_OFFLINE is set, so the Hub "
                         r"was not asked; fetch it once where the Hub is reachable \(`hf download someone/\S+ \S+",
                         lines[0]), lines[0]
    proc = cli(environ, "import", "hf://nobody/nothing/full_run_data.pth", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("claimlens import: error: hf://nobody/nothing/full_run_data.pth: not in the Hugging "
                                  "Face cache"), proc.stderr
    assert not (tmp_path / "o").exists()
    proc = claims_session(tmp_path, environ, "--run", "hf://someone", "-q")
    assert proc.returncode == 4 and "--run hf://someone: no OWNER/REPO; expected hf://OWNER/REPO" in proc.stderr


# -- through huggingface_hub's download path, against a fake Hub on the loopback interface


class FakeHub:
    """Answers ``/OWNER/REPO/resolve/REVISION/PATH`` as the Hub does: the file with its commit and ETag, or 401
    ``RepoNotFound`` / 404 ``RevisionNotFound`` / 404 ``EntryNotFound``."""

    def __init__(self, repos: dict[str, dict[str, bytes]], refs: dict[str, str]):
        fake = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body: bool) -> None:
                fake.requests += 1
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
                files = fake.repos.get(m.group(1)) if m else None
                commit = refs.get(m.group(2), m.group(2) if m and m.group(2) in refs.values() else None) if m else None
                data = files.get(m.group(3)) if files is not None and commit else None
                status, code = ((401, "RepoNotFound") if files is None else (404, "RevisionNotFound") if not commit
                                else (404, "EntryNotFound") if data is None else (200, None))
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                if data is not None:
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data) if data is not None else 0))
                self.end_headers()
                if body and data is not None:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

        self.repos = repos
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(arena_file):
    fake = FakeHub({"someone/tiny_grokking": {"full_run_data.pth": arena_file}}, {"main": COMMIT, "v2": OTHER})
    yield fake
    fake.close()


def test_huggingface_hub_fills_its_cache_and_then_serves_it_offline(tmp_path, fake_hub, arena_file):
    online = env(tmp_path, tmp_path / "hub", HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub.url, HF_HUB_DISABLE_XET="1")
    proc = cli(online, "import", "hf://someone/tiny_grokking/full_run_data.pth", "--out", str(tmp_path / "a"),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "a" / "run.json").read_text())["source"]["hub"]["commit"] == COMMIT
    served = fake_hub.requests
    assert (tmp_path / "hub" / "models--someone--tiny_grokking" / "refs" / "main").read_text() == COMMIT
    offline = env(tmp_path, tmp_path / "hub", HF_ENDPOINT=fake_hub.url)
    proc = cli(offline, "import", "hf://someone/tiny_grokking/full_run_data.pth", "--out", str(tmp_path / "b"),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert fake_hub.requests == served, "offline: the Hub was not asked"


def test_the_hubs_answers_to_bad_references_are_one_line_each(tmp_path, fake_hub):
    online = env(tmp_path, tmp_path / "hub", HF_HUB_OFFLINE="0", HF_ENDPOINT=fake_hub.url, HF_HUB_DISABLE_XET="1")
    for ref, message in [
        ("hf://someone/tiny_grokin/full_run_data.pth",
         ("no model repository 'someone/tiny_grokin' on the Hugging Face Hub (or a private one: log in with `hf auth "
          "login` or set HF_TOKEN); check OWNER/REPO")),
        ("hf://someone/tiny_grokking/full_run_data.pth@v3",
         "someone/tiny_grokking has no revision 'v3'; after '@' name one of its branches, tags or commits"),
        ("hf://someone/tiny_grokking/run_data.pth", "someone/tiny_grokking at main has no file 'run_data.pth'"),
    ]:
        proc = cli(online, "import", ref, "--out", str(tmp_path / "o"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == f"claimlens import: error: {ref}: {message}" or \
            proc.stderr.startswith(f"claimlens import: error: {ref}: {message}"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = claims_session(tmp_path, online, "--run", "hf://someone/tiny_grokking/full_run_data.pth@v3", "-q")
    assert proc.returncode == 4
    assert "--run hf://someone/tiny_grokking/full_run_data.pth@v3: someone/tiny_grokking has no revision 'v3'" \
        in proc.stderr
