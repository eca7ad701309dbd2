"""Writing an imported run: the checkpoints validated and written through the store into a temporary folder moved
into place only when complete, the log rows recomputed from the weights at the checkpoint epochs (the file's own
logged losses verified and kept in ``source_log.jsonl``), and the bridge-load proof of a transformer (its final
checkpoint through TransformerLens, or the plain forward, gives the fast path's logits).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from claimlens._io import atomic_write_bytes
from claimlens.config import RunSpec
from claimlens.core.losses import cross_entropy_f64
from claimlens.errors import CheckpointError
from claimlens.models import fingerprint, forward, frozen_params, validate_params
from claimlens.runs import evidence
from claimlens.runs.importers.weights import (
    dtype_label,
    read_checkpoint_file,
    stored_dtypes,
)
from claimlens.runs.layouts import (
    to_property_format,
)
from claimlens.runs.store import Run, RunWriter
from claimlens.tasks import ModularAddition, nanda_split


def write_run(out: Path, spec: RunSpec, epochs: list[int], state_dicts: Sequence[Any], meta: dict[str, Any],
              *, progress: bool) -> Run:
    p = spec.task.p
    meta.pop("spec_given", None)
    if meta.get("split_unknown"):
        task = ModularAddition(p, split_unknown=meta.pop("split_unknown"))
        split_rule = "unknown"
        meta.pop("split_rule", None)
    elif "split" in meta:
        train_idx, test_idx = meta.pop("split")
        split_rule = meta.pop("split_rule", "stored")
        task = ModularAddition(p, train_idx, test_idx)
    else:
        train_idx, test_idx = nanda_split(p, spec.task.frac_train, spec.task.split_seed)
        split_rule = meta.pop("split_rule", "nanda_shuffle, rebuilt from the spec's frac_train and split_seed")
        task = ModularAddition(p, train_idx, test_idx)
    try:
        task.check()
    except ValueError as exc:
        raise CheckpointError(f"stored split: {exc}") from None
    spec = dataclasses.replace(spec, train=dataclasses.replace(
        spec.train, epochs=max(epochs[-1], 1), checkpoint_every=min(spec.train.checkpoint_every, max(epochs[-1], 1))))
    created = [d for d in [out.parent, *out.parent.parents] if not d.exists()]  # removed again if the import fails
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    done = False
    try:
        logged: dict[str, evidence.LoggedCurve] = meta.pop("logged", {})
        where_source = meta.pop("where", spec.name)
        notes: set[str] = set(meta.pop("notes", []))
        writer = RunWriter.create(tmp / "run", spec, task, {"kind": "imported", "split_rule": split_rule, **meta})
        iterator = zip(epochs, state_dicts)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(list(iterator), desc=f"import {spec.name}", unit="ckpt")
        rows = []
        tokens, labels = task.tokens, task.labels
        frozen = frozen_params(spec.model, p)
        zero: set[str] | None = None  # parameters (not already frozen) that are zero at every checkpoint so far
        prints: list[str] = []
        dtypes: set[str] = set()  # of the floating-point tensors as the source stored them
        prefixes: set[str] = set(meta.get("stripped_prefixes", []))
        for epoch, sd in iterator:
            where = f"checkpoint for epoch {epoch}"
            if isinstance(sd, Path):
                where = f"{sd.name} (epoch {epoch})"
                sd, info = read_checkpoint_file(sd)
                prefixes.update(info.get("prefixes", []))
                notes.update(info.get("notes", []))
            dtypes |= stored_dtypes(sd)
            params, conv = to_property_format(sd, spec.model, p, where=where)
            notes.update(conv)
            validate_params(params, spec.model, p, where=where)
            now = {k for k, v in params.items() if k not in frozen and not bool(v.any())}
            zero = now if zero is None else zero & now
            prints.append(fingerprint(params))
            writer.add_checkpoint(epoch, params)
            rows.append(_log_row(epoch, params, spec, tokens, labels, task))
        evidence.refuse_identical_checkpoints(prints, epochs, where_source)
        if spec.model.kind == "transformer":
            evidence.refuse_processed(params, getattr(spec.model, "n_layers", 1), where_source)
        if task.split_known:
            writer.set_source(split_fit=_check_split_fit(rows, task, split_rule, where_source, notes))
        if logged:
            recomputed = {name: {r["epoch"]: r[name] for r in rows} for name in logged}
            writer.set_source(logged_losses=evidence.verify_logged(recomputed, logged, where_source))
            _write_source_log(tmp / "run", logged)
        writer.append_log(rows)
        notes.update(f"stripped the wrapper prefix {x!r} from every key" for x in prefixes)
        writer.set_source(conversions=sorted(notes), log="computed at checkpoint epochs from the weights",
                          stored_dtype=dtype_label(dtypes),
                          **({"stripped_prefixes": sorted(prefixes)} if prefixes else {}))
        if zero:
            writer.set_source(always_zero=sorted(zero), proposal=(
                f"{sorted(zero)} are zero at every checkpoint: if training held them fixed (the TransformerLens "
                f"grokking demo freezes every b_*), list them under [model] frozen in the spec and import again, "
                f"so that the learning coefficient does not sample directions the run never had"))
        run = writer.finish()
        if spec.model.kind == "transformer":
            _prove_bridge_load(run)
        if out.is_dir():  # an existing empty folder (checked at the start): the run takes its place
            out.rmdir()
        (tmp / "run").rename(out)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in created:  # folders this import made for --out, deepest first
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return Run.open(out)


FIT_CHECKPOINTS = 5  # checkpoints, evenly spaced over the run (the last included), judged against their split


def _check_split_fit(rows: list[dict[str, float]], task: ModularAddition, split_rule: str, where: str,
                     notes: set[str]) -> list[dict[str, Any]]:
    """Judge up to :data:`FIT_CHECKPOINTS` checkpoints' accuracies against the split the run is said to have
    (:func:`claimlens.runs.evidence.split_fit`); refuse on a mismatch, note a model that never learnt. Returns
    the evidence recorded in run.json (``source.split_fit``)."""
    n = len(rows)
    picks = evidence.spread(n, FIT_CHECKPOINTS)
    n_train, n_test = len(task.train_idx), len(task.test_idx)
    fits = [evidence.split_fit(int(rows[i]["epoch"]), rows[i]["train_acc"], rows[i]["test_acc"], n_train, n_test,
                               task.p) for i in picks]
    evidence.refuse_split_mismatch(fits, split_rule, where)
    if all(f.verdict == "chance" for f in fits):
        notes.add("the model is at chance accuracy at every checked checkpoint (untrained, or a negative control): "
                  "no evidence for or against its stated split")
    return [f.as_dict() for f in fits]


def _write_source_log(run_dir: Path, logged: Mapping[str, evidence.LoggedCurve]) -> None:
    """The file's own logged losses, each on its own epochs, one JSON row per epoch (``source_log.jsonl``)."""
    import json

    by_epoch: dict[int, dict[str, float]] = {}
    for name, curve in logged.items():
        for epoch, value in zip(curve.epochs, curve.values):
            by_epoch.setdefault(epoch, {})[name] = value
    lines = [json.dumps({"epoch": e, **{k: v if math.isfinite(v) else None for k, v in by_epoch[e].items()}})
             for e in sorted(by_epoch)]
    atomic_write_bytes(run_dir / "source_log.jsonl", ("\n".join(lines) + "\n").encode())


@torch.no_grad()
def _log_row(epoch: int, params, spec: RunSpec, tokens, labels, task: ModularAddition) -> dict[str, float]:
    """Loss and accuracy at ``epoch`` on the train and test sets, or, when the split is unknown, on all pairs
    (``all_loss`` / ``all_acc``: no train/test value is made up)."""
    logits = forward(params, tokens, spec.model).logits
    row: dict[str, float] = {"epoch": epoch}
    if not task.split_known:
        row["all_loss"] = cross_entropy_f64(logits, labels).item()
        row["all_acc"] = (logits.argmax(-1) == labels).double().mean().item()
        return row
    for split, idx in (("train", task.train_idx), ("test", task.test_idx)):
        row[f"{split}_loss"] = cross_entropy_f64(logits[idx], labels[idx]).item()
        row[f"{split}_acc"] = (logits[idx].argmax(-1) == labels[idx]).double().mean().item()
    return row


def _prove_bridge_load(run: Run) -> None:
    """Load the final checkpoint into a TransformerLens bridge: the load must change the weights
    (checked inside ``load_into_bridge``) and the bridge must reproduce the fast path's logits."""
    from claimlens.models import bridge_activations, build_bridge, naive_forward

    params = run.final()
    tokens = run.task.tokens
    ours = forward(params, tokens, run.spec.model).logits
    if run.spec.model.attn_rate != 1:  # TransformerLens cannot express α < 1: the plain full-sequence forward
        reference, through = naive_forward(params, tokens, run.spec.model), "the plain full-sequence forward"
    else:
        bridge = build_bridge(run.spec.model, run.spec.task.p, params)
        reference, through = bridge_activations(bridge, tokens).logits, "TransformerLens"
    err = ((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()
    if err > 1e-4:
        raise CheckpointError(
            f"imported final checkpoint (epoch {run.epochs[-1]}, fingerprint {fingerprint(params)[:12]}) gives "
            f"different logits through {through} than through claimlens (max relative error {err:.2e}); "
            f"the state dict layout was not understood"
        )
