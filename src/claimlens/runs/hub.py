"""Runs on the Hugging Face Hub: ``hf://OWNER/REPO[/PATH][@REVISION]``, fetched through ``huggingface_hub``.

A reference names a repository (``hf://datasets/OWNER/REPO/…`` a dataset repository), a path in it and a revision (a
branch, tag or commit; ``main`` when left out; the Hub's own form ``hf://OWNER/REPO@REVISION/PATH`` is read too). A
PATH ending in a checkpoint suffix (``full_run_data.pth``, ``model.pt``, …) is one file, imported like a local one
(``claimlens import``); any other PATH, or none, is a folder of the repository: a claimlens run directory, a curves
folder or a folder of checkpoint files.

Everything goes through huggingface_hub: its cache (``HF_HOME`` / ``HF_HUB_CACHE``, shared with transformers and
every other Hub client), its offline mode (``HF_HUB_OFFLINE=1``: only what the cache holds, the Hub is not asked),
its token (``hf auth login`` / ``HF_TOKEN``) for private or gated repositories. A fetched file says where it came
from (:meth:`Fetched.provenance`: the reference, the revision asked for, the commit it resolved to, the file's
sha256), which an import records in ``run.json`` (``source.hub``). Each failure is one :class:`HubError` line saying
what to do. Importing this module imports neither huggingface_hub nor torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from claimlens._io import sha256_file
from claimlens.errors import ClaimlensError

PREFIX = "hf://"
# The files a reference names one by one (the importers' CHECKPOINT_SUFFIXES, named here without importing torch).
FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
EXAMPLE = "hf://callummcdougall/grokking_full_run_data/full_run_data.pth"
_SYNTAX = f"expected hf://OWNER/REPO[/PATH][@REVISION], e.g. {EXAMPLE}"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TYPES = {"models": "model", "datasets": "dataset"}


class HubError(ClaimlensError):
    """An ``hf://`` reference that is malformed or cannot be fetched (the message says what to do)."""


def is_hub_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf://`` reference."""

    repo_id: str  # OWNER/REPO
    path: str = ""  # in the repository; "" for its root
    revision: str | None = None  # None: the Hub's default branch (main)
    repo_type: str = "model"

    def __str__(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return (f"{PREFIX}{kind}{self.repo_id}" + (f"/{self.path}" if self.path else "")
                + (f"@{self.revision}" if self.revision else ""))

    @property
    def is_file(self) -> bool:
        """Whether the reference names one checkpoint file (else a folder of the repository)."""
        return self.path.lower().endswith(FILE_SUFFIXES)

    @property
    def run_name(self) -> str:
        """The name a run imported from it gets: the repository's (``grokking_full_run_data``), with the file's or
        folder's own name after it unless that is the generic ``full_run_data``."""
        repo = self.repo_id.split("/", 1)[1]
        stem = Path(self.path).stem if self.path else ""
        return repo if stem in ("", "full_run_data", repo) else f"{repo}-{stem}"

    @property
    def shown_revision(self) -> str:
        return self.revision or "main"


def parse(value: str) -> HubRef:
    """``hf://[datasets/]OWNER/REPO[/PATH][@REVISION]`` (or the Hub's own ``…/REPO@REVISION/PATH``) as a
    :class:`HubRef`; :class:`HubError` naming the expected form otherwise."""
    if not is_hub_reference(value):
        raise HubError(f"{value!r} is not a Hub reference: {_SYNTAX}")
    body = value[len(PREFIX):]
    repo_type = "model"
    first, _, rest = body.partition("/")
    if first in _TYPES and rest.count("/") >= 1:
        repo_type, body = _TYPES[first], rest
    owner, _, rest = body.partition("/")
    name, _, path = rest.partition("/")
    revision: str | None = None
    if "@" in name:  # the Hub's form: OWNER/REPO@REVISION[/PATH]; a revision refs/pr/N keeps its slashes
        name, _, revision = name.partition("@")
        special = re.match(r"^(pr/\d+|convert/[\w.-]+)(/|$)", path) if revision == "refs" else None
        if special:
            revision = f"refs/{special.group(1)}"
            path = path[special.end():]
    elif "@" in path:  # OWNER/REPO/PATH@REVISION
        path, _, revision = path.rpartition("@")
    path = path.rstrip("/")
    bad = None
    if not owner or not name:
        bad = "no OWNER/REPO"
    elif not _NAME.match(owner) or not _NAME.match(name) or ".." in name or ".." in owner:
        bad = f"{owner}/{name!s} is not a repository name (letters, digits, '-', '_', '.')"
    elif revision is not None and not revision.strip():
        bad = "an empty revision after '@'"
    elif any(part in ("", ".", "..") for part in path.split("/")) and path:
        bad = f"the path {path!r} has an empty, '.' or '..' part"
    if bad:
        raise HubError(f"{value}: {bad}; {_SYNTAX}")
    return HubRef(f"{owner}/{name}", path, revision, repo_type)


@dataclass(frozen=True)
class Fetched:
    """A reference resolved to the Hub cache: ``local`` is the file, or the folder, in the cache's snapshot of
    ``commit``."""

    ref: HubRef
    local: Path
    commit: str | None
    sha256: str | None = None  # of the file (a folder: None)
    size: int | None = None

    def provenance(self) -> dict:
        """What ``run.json`` records (``source.hub``) and ``claims.json`` shows of where the run came from."""
        out = {"reference": str(self.ref), "repo_id": self.ref.repo_id, "repo_type": self.ref.repo_type,
               "path": self.ref.path, "revision": self.ref.shown_revision, "commit": self.commit}
        if self.sha256 is not None:
            out.update({"sha256": self.sha256, "size": self.size})
        return out


def fetch(ref: HubRef) -> Fetched:
    """Download ``ref`` into the Hugging Face cache, or find it there (offline: only there). A file also brings its
    sidecar config (``config_<id>.json`` beside ``model_<id>.pt``, the Clock/Pizza code's), where the repository has
    one. Raises :class:`HubError` with one line saying what to do."""
    hub = _hub()
    kwargs = {"repo_id": ref.repo_id, "repo_type": ref.repo_type, "revision": ref.revision}
    try:
        if ref.is_file:
            local = Path(hub.hf_hub_download(filename=ref.path, **kwargs))
        else:
            snapshot = Path(hub.snapshot_download(allow_patterns=[f"{ref.path}/*"] if ref.path else None, **kwargs))
            local = snapshot / ref.path if ref.path else snapshot
    except Exception as exc:  # noqa: BLE001 - each of huggingface_hub's errors becomes one line, the rest re-raised
        raise _error(ref, exc, hub) from None
    commit = _commit_of(local)
    if not ref.is_file:
        if not local.is_dir():
            raise HubError(f"{ref}: {ref.repo_id} at {ref.shown_revision} has no folder {ref.path!r}; name a file "
                           f"({', '.join(FILE_SUFFIXES)}) or a folder of the repository")
        return Fetched(ref, local, commit)
    for sidecar in _sidecar_names(ref.path):  # best effort: a file without one is imported without one
        try:
            hub.hf_hub_download(filename=sidecar, **{**kwargs, "revision": commit or ref.revision})
        except Exception:  # noqa: BLE001, S112 - absent from the repository (or from an offline cache)
            continue
    return Fetched(ref, local, commit, sha256_file(local), local.stat().st_size)


def _hub():
    try:
        import huggingface_hub
    except ImportError:  # a declared dependency: only a broken environment lacks it
        raise HubError("hf:// references need the huggingface_hub package: pip install huggingface_hub") from None
    return huggingface_hub


def _sidecar_names(path: str) -> list[str]:
    """The sidecar configs :func:`claimlens.runs.layouts.find_sidecar` looks for beside a checkpoint, as repository
    paths."""
    folder, stem = str(Path(path).parent), Path(path).stem
    names = [f"config_{stem[len('model_'):]}.json"] if stem.startswith("model_") else []
    names.append(f"{stem}.json")
    return [n if folder in ("", ".") else f"{folder}/{n}" for n in names]


def _commit_of(local: Path) -> str | None:
    """The commit a cache path belongs to: ``…/snapshots/<commit>/<path>``."""
    parts = local.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "snapshots":
            return parts[i + 1]
    return None


def _error(ref: HubRef, exc: Exception, hub) -> Exception:
    """huggingface_hub's exception as one :class:`HubError` line naming what to do (an unknown kind: itself)."""
    from huggingface_hub import constants
    from huggingface_hub import errors as e

    def first_line(x: Exception) -> str:
        return (str(x).strip().splitlines() or [type(x).__name__])[0]

    repo, rev = ref.repo_id, ref.shown_revision
    cli = f"hf download {repo}" + (f" {ref.path}" if ref.is_file else f" --include '{ref.path}/*'" if ref.path else "") + (
        f" --revision {ref.revision}" if ref.revision else "") + (" --repo-type dataset" if ref.repo_type == "dataset" else "")
    if isinstance(exc, e.GatedRepoError):
        return HubError(f"{ref}: {repo} is a gated repository: accept its conditions on its Hub page, then log in "
                        f"(`hf auth login`) or set HF_TOKEN")
    if isinstance(exc, e.RepositoryNotFoundError):
        return HubError(f"{ref}: no {ref.repo_type} repository {repo!r} on the Hugging Face Hub (or a private one: "
                        f"log in with `hf auth login` or set HF_TOKEN); check OWNER/REPO")
    if isinstance(exc, e.RevisionNotFoundError):
        return HubError(f"{ref}: {repo} has no revision {rev!r}; after '@' name one of its branches, tags or commits "
                        f"(or leave '@…' out for main)")
    if isinstance(exc, e.LocalEntryNotFoundError | e.OfflineModeIsEnabled) or (
            isinstance(exc, ValueError) and constants.HF_HUB_OFFLINE and "offline" in str(exc).lower()):
        offline = constants.HF_HUB_OFFLINE
        return HubError(
            f"{ref}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            + ("HF_HUB_OFFLINE is set, so the Hub was not asked" if offline else
               f"the Hub could not be reached ({first_line(exc.__cause__ or exc)})")
            + f"; fetch it once where the Hub is reachable (`{cli}`, with the same HF_HOME) "
            + ("or unset HF_HUB_OFFLINE" if offline else "or connect and run again")
            + "; a misspelt repository, path or revision is not in the cache either")
    if isinstance(exc, e.EntryNotFoundError):
        return HubError(f"{ref}: {repo} at {rev} has no file {ref.path!r}; check the path (the repository's files: "
                        f"`hf download {repo} --dry-run`, or its page on the Hub)")
    if isinstance(exc, e.HfHubHTTPError):
        return HubError(f"{ref}: the Hugging Face Hub answered {first_line(exc)}; check the reference, your token "
                        f"(`hf auth login`) and connection")
    if isinstance(exc, ValueError):  # huggingface_hub's validation of a repository id or revision
        return HubError(f"{ref}: {first_line(exc)}; {_SYNTAX}")
    if isinstance(exc, OSError):  # a cache it cannot write, a full disk
        return HubError(f"{ref}: could not write to the Hugging Face cache ({constants.HF_HUB_CACHE}): "
                        f"{first_line(exc)}; set HF_HOME or HF_HUB_CACHE to a writable folder")
    return exc
