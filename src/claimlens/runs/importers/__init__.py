"""Importers: turn checkpoints in the formats researchers already have into a claimlens run.

Sources:

* a file holding a list of checkpoints (``state_dicts`` / ``checkpoints``) with their epochs (``epochs`` /
  ``checkpoint_epochs``) and usually a ``config``: Nanda/ARENA's ``full_run_data.pth``, the TransformerLens demo's
  save cell; optionally the logged losses (``train_losses`` / ``test_losses``), the split (``train_indices`` /
  ``test_indices``, or token rows ``train_data`` / ``test_data``) and the optimizer state;
* a file holding one model (under ``model`` / ``model_state_dict`` / ``state_dict``, or itself a state dict) and
  the ``epoch`` it was saved at: a single-checkpoint run;
* a folder of checkpoint files (``*.pth``, ``*.pt``, ``*.ckpt``, ``*.safetensors``) or torch.distributed.checkpoint
  directories with a ``spec.toml``, the epoch of each read from the file (``epoch``) or from its name
  (``epoch_12``, ``epoch=3-step=400``, a single number, or ``--epoch-pattern``);
* one safetensors file or one torch.distributed.checkpoint directory: a single-checkpoint run.

Sharded checkpoints (FSDP2 DTensors, DCP) are read in one process (:mod:`~claimlens.runs.importers.distributed`);
a wrapper prefix every key carries (``_orig_mod.``, ``module.``, ``model.``) is stripped in every format; the
dtype the weights were stored in is recorded. Layouts (:mod:`claimlens.runs.layouts`): TransformerLens property
format, a TransformerLens 4 bridge's state dict, the 2022 grokking layout, the devinterp-hackathon MLP; a
Clock/Pizza checkpoint's sidecar config is read and its attention checked. The run's name is ``--name``, else
``--spec``'s, else the source's (:func:`source_name`, never a folder's own spec.toml name). Every file
is read weights-only (:mod:`claimlens.runs.importers.safe_load`). The file's own evidence (:mod:`claimlens.runs.evidence`)
is checked against its weights: logged losses are recomputed at the checkpoint epochs, a split the file does not
store is found by the sources' split rules from the logged train loss (never guessed), the optimizer state's
weight decay is compared with the config. The run is written to a temporary folder and moved into place only
when complete, so a failed import leaves nothing behind and overwrites nothing.

Modules: :mod:`~claimlens.runs.importers.safe_load` (reading a file safely), :mod:`~claimlens.runs.importers.weights`
(finding the weights in it), :mod:`~claimlens.runs.importers.source_configs` (a source's config → a spec),
:mod:`~claimlens.runs.importers.full_run` and :mod:`~claimlens.runs.importers.folder` (the two sources),
:mod:`~claimlens.runs.importers.writing` (the run written, its log, the bridge-load proof); :func:`import_run`
dispatches.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from claimlens.config import RunSpec
from claimlens.errors import CheckpointError, RunError, SpecError
from claimlens.runs.importers.distributed import is_dcp_checkpoint
from claimlens.runs.importers.folder import epoch_from_name, read_folder
from claimlens.runs.importers.full_run import read_full_run
from claimlens.runs.importers.safe_load import safe_torch_load
from claimlens.runs.importers.source_configs import (
    dims_from_shapes,
    is_transformer_lens_config,
    spec_from_source_config,
)
from claimlens.runs.importers.weights import (
    CHECKPOINT_SUFFIXES,
    is_state_dict,
    load_state_dict_file,
    read_checkpoint_file,
    strip_wrapper_prefixes,
    unwrap_state_dict,
)
from claimlens.runs.importers.writing import write_run
from claimlens.runs.store import Run

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "dims_from_shapes",
    "epoch_from_name",
    "import_run",
    "is_state_dict",
    "is_transformer_lens_config",
    "load_state_dict_file",
    "read_checkpoint_file",
    "safe_torch_load",
    "source_name",
    "spec_from_source_config",
    "strip_wrapper_prefixes",
    "unwrap_state_dict",
]


def import_run(source: str | Path, out: str | Path, *, spec: RunSpec | None = None, name: str | None = None,
               checkpoint_every: int | None = None, epoch_pattern: str | None = None,
               final_epoch: int | None = None, ignore_logged_losses: bool = False, split_unknown: bool = False,
               hub: dict | None = None, progress: bool = True) -> Run:
    """Import ``source`` (a ``full_run_data.pth``-style file, a single-checkpoint file, or a folder of
    checkpoint files) into ``out``. See the README's "Importing runs" for the formats and each refusal.

    ``ignore_logged_losses``: keep the file's logged losses out of the import (not verified, not used to find a
    split), for files whose logged values are not the model's cross entropy. ``split_unknown``: import with the
    split unknown whatever the file or spec says (the claims that need train vs test then skip), for a model whose
    split cannot be stated (the import refuses a model that plainly does not fit its stated split). ``hub``: where
    ``source`` came from on the Hugging Face Hub (:meth:`claimlens.runs.hub.Fetched.provenance`: the reference, the
    revision, the commit it resolved to, the file's sha256), recorded in run.json as ``source.hub``. Raises
    :class:`CheckpointError`,
    :class:`SpecError` or :class:`UnsafeCheckpointError` with the reason and the next step; nothing is written
    then."""
    source, out = Path(source), Path(out)
    if spec is not None and (spec.task.is_sequences or spec.model.kind == "attn_only"):
        raise SpecError(f"spec {spec.name!r} is an attention-only model of the repeated-subsequence task: importing "
                        f"its checkpoints is not supported yet (only modular-addition models); train it with "
                        f"`claimlens train SPEC --out DIR` and judge it with `pytest claims/ --run DIR`")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {str(out)!r} already exists and is not empty; nothing was written. Choose a new "
                       f"--out, or remove that folder first")
    if not source.exists():
        raise CheckpointError(f"import source {str(source)!r} does not exist")
    if name:  # --name wins over the spec's name
        spec = dataclasses.replace(spec, name=name) if spec is not None else None
    else:
        name = spec.name if spec is not None else source_name(source)
    if source.is_dir() and not is_dcp_checkpoint(source):
        epochs, state_dicts, spec, meta = read_folder(source, spec, name, epoch_pattern)
    else:
        epochs, state_dicts, spec, meta = read_full_run(source, spec, name, checkpoint_every, final_epoch,
                                                        ignore_logged_losses or split_unknown)
    if split_unknown:
        meta.pop("split", None)
        meta.pop("split_search", None)
        meta["split_unknown"] = ("imported with --split-unknown: the split the model was trained on is not known "
                                 "(the claims that need train vs test are skipped)")
    if hub is not None:
        meta["hub"] = dict(hub)
    return write_run(out, spec, epochs, state_dicts, meta, progress=progress)


# Names that say what a folder or file is, not which run: a run is named after the first folder above them that says
# more (``expA/checkpoints`` → ``expA``).
GENERIC_NAMES = frozenset({
    "checkpoints", "checkpoint", "ckpts", "ckpt", "runs", "run", "weights", "models", "model", "saved",
    "saved_models", "outputs", "output", "out", "results", "artifacts", "state_dicts", "lightning_logs", "dcp",
    "full_run_data", "final", "last", "best", "latest", "pytorch_model",
})


def source_name(source: Path) -> str:
    """The run name an import takes without ``--name`` or ``--spec``: the folder's (or file's) own name, or, when
    that name is generic (``checkpoints``, ``ckpts``, ``runs``, ``full_run_data``, … :data:`GENERIC_NAMES`), the
    name of the nearest folder above it that is not (``expA/checkpoints`` → ``expA``): two runs' folders both called
    ``checkpoints/`` get different names."""
    path = Path(source).resolve()
    names = [path.name if path.is_dir() else path.stem] + [folder.name for folder in path.parents]
    for name in names[:5]:
        if name and name.lower() not in GENERIC_NAMES:
            return re.sub(r"\s+", "_", name.strip())
    return names[0] or "imported"
