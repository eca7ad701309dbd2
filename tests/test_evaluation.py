"""Series over a run: one shared forward pass per checkpoint, the right values, cached on disk."""

import pytest
import torch

from claimlens.core.losses import cross_entropy_f64
from claimlens.families.grokking import metrics as pm
from claimlens.families.grokking.analysis import evaluate, final_key_frequencies
from claimlens.models import bridge_activations, build_bridge

STABLE_NAMES = {"train_loss", "test_loss", "train_acc", "test_acc", "excluded_loss", "excluded_loss_all_keys",
                "restricted_loss", "trig_loss_all", "trig_loss_train", "attention_to_position", "sum_sq_weights",
                "sum_sq_weights_by_param", "embed_fourier_norms", "embed_singular_values", "gini_W_E", "gini_W_L",
                "trig_fraction", "random_direction_control", "neuron_key_frequency", "quadratic_fraction"}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_series_names_shapes_and_epochs(tiny_run, cache_dir):
    rs = evaluate(tiny_run)
    assert set(rs.series) == STABLE_NAMES
    assert rs.epochs.tolist() == tiny_run.epochs
    n = len(tiny_run.epochs)
    assert rs["excluded_loss"].data.shape == (len(rs.keys.keys), n)
    assert rs["excluded_loss"].labels == tuple(f"k={k}" for k in rs.keys.keys)
    assert rs["attention_to_position"].labels[:3] == ("head=0,pos=0", "head=0,pos=1", "head=0,pos=2")
    assert rs["restricted_loss"].labels == ("all", "train", "test", "train_balanced")
    torch.testing.assert_close(rs["trig_loss_all"].values, rs["restricted_loss"].row("all").values)
    assert rs.keys.rule == "neuron_cluster_argmax" and rs.keys.candidates == list(range(1, 12))


def test_values_equal_the_metrics_computed_one_checkpoint_at_a_time_through_transformer_lens(tiny_run, cache_dir):
    """Independent path: TransformerLens bridge + run_with_cache per checkpoint, metric by metric."""
    rs = evaluate(tiny_run)
    keys, p, task = rs.keys.keys, tiny_run.spec.task.p, tiny_run.task
    for i, epoch in enumerate(tiny_run.epochs[::4]):
        j = tiny_run.epochs.index(epoch)
        params = tiny_run.checkpoint(epoch)
        acts = bridge_activations(build_bridge(tiny_run.spec.model, p, params), task.tokens)
        L = acts.logits.double()
        expected = {
            "test_loss": cross_entropy_f64(L[task.test_idx], task.labels[task.test_idx]).item(),
            "excluded_loss_all_keys": pm.excluded_loss_all_keys(L, task.labels, task.train_idx, keys, p).item(),
            "trig_loss_train": pm.restricted_loss(L, task.labels, task.train_idx, keys, p).item(),
        }
        for name, value in expected.items():
            assert rs[name].values[j].item() == pytest.approx(value, rel=1e-4), (name, epoch)
        attn = pm.attention_to_position(acts.pattern)
        assert rs["attention_to_position"].row("head=2,pos=1").values[j].item() == pytest.approx(attn[2, 1].item(), abs=1e-6)
        ssw = pm.sum_sq_weights(params)["total"]
        assert rs["sum_sq_weights"].values[j].item() == pytest.approx(ssw, rel=1e-9)
        for name, tensor in params.items():  # each row is its own parameter's, at every checkpoint (the rows once
            # followed each file's tensor order, which safetensors does not fix)
            expected_ssw = float(tensor.double().pow(2).sum())
            assert rs["sum_sq_weights_by_param"].row(name).values[j].item() == pytest.approx(expected_ssw, rel=1e-9)


def test_second_evaluation_hits_the_cache(tiny_run, cache_dir):
    first = evaluate(tiny_run)
    assert not first.from_cache and any(cache_dir.rglob("*.safetensors"))
    second = evaluate(tiny_run)
    assert second.from_cache
    for name in first.series:
        assert torch.equal(first[name].data, second[name].data) and first[name].labels == second[name].labels


def test_damaged_cache_entries_are_recomputed(tiny_run, cache_dir):
    evaluate(tiny_run)
    for f in cache_dir.rglob("*.safetensors"):
        f.write_bytes(b"garbage")
    again = evaluate(tiny_run)
    assert not again.from_cache
    assert torch.isfinite(again["test_loss"].values).all()


def test_a_cached_analysis_is_never_used_for_checkpoint_files_that_are_not_the_runs(tiny_run, cache_dir, tmp_path):
    """The analysis cache stands for the run's bytes: once a checkpoint is truncated or replaced by another of the
    same size, a warm cache is not read (nor written) — CheckpointError names the file; with the file restored it
    is read again. A spec edited in run.json gets a key of its own (its analyses are never the written run's)."""
    import json
    import os
    import shutil

    from claimlens.errors import CheckpointError
    from claimlens.runs.store import Run

    path = tmp_path / "copy"
    shutil.copytree(tiny_run.path, path)
    run = Run.open(path)
    assert not evaluate(run).from_cache
    victim = path / run.checkpoints[5].file
    good = victim.read_bytes()
    victim.write_bytes(good[:-7])  # truncated
    with pytest.raises(CheckpointError, match=rf"epoch {run.checkpoints[5].epoch} .*truncated or corrupt"):
        evaluate(Run.open(path))
    other = (path / run.checkpoints[6].file).read_bytes()
    assert len(other) == len(good)
    victim.write_bytes(other)  # a whole, readable checkpoint of the same size: only its hash tells
    with pytest.raises(CheckpointError, match="does not match the sha256 .* replaced or modified after the run"):
        evaluate(Run.open(path))
    victim.write_bytes(good)
    assert evaluate(Run.open(path)).from_cache
    stamps = list((cache_dir / "verified").glob("*.json"))
    assert len(stamps) == 1 and len(json.loads(stamps[0].read_text())) == len(run.checkpoints)
    os.utime(victim, ns=(0, 0))  # a stat that differs from the stamp: hashed again, still the run's bytes
    assert evaluate(Run.open(path)).from_cache

    manifest = json.loads((path / "run.json").read_text())
    manifest["spec"]["description"] = "edited, same weights"
    (path / "run.json").write_text(json.dumps(manifest))
    assert Run.open(path).analysis_key == run.content_hash  # description is not in the spec hash
    manifest["spec"]["train"]["lr"] = 0.5
    (path / "run.json").write_text(json.dumps(manifest))
    edited = Run.open(path)
    assert edited.analysis_key != run.content_hash and not evaluate(edited).from_cache
    manifest["spec"]["train"]["lr"] = json.loads((tiny_run.path / "run.json").read_text())["spec"]["train"]["lr"]
    manifest["split"]["train"].append(manifest["split"]["test"].pop())  # a split edited by hand
    (path / "run.json").write_text(json.dumps(manifest))
    resplit = Run.open(path)
    assert resplit.analysis_key not in (run.content_hash, edited.analysis_key) and not evaluate(resplit).from_cache


def test_given_keys_and_rules_are_recorded(tiny_run, cache_dir):
    rs = evaluate(tiny_run, keys=[3, 1])
    assert rs.keys.keys == [1, 3] and rs.keys.rule == "given"
    assert final_key_frequencies(tiny_run, "embedding_norm").rule == "embedding_norm"
    with pytest.raises(ValueError, match="unknown key-frequency rule"):
        final_key_frequencies(tiny_run, "magic")


def test_mlp_runs_are_refused_with_a_reason(tiny_mlp_run, cache_dir):
    with pytest.raises(ValueError, match="is a mlp"):
        evaluate(tiny_mlp_run)


def _one_checkpoint_at_a_time(run, keys):
    """The series as the analysis once built them: every checkpoint measured, its values kept in lists, stacked at
    the end (the whole run at once)."""
    from claimlens.core import fourier as fo
    from claimlens.core.checkpoint import Checkpoint
    from claimlens.families.grokking.analysis import _measure

    p = run.spec.task.p
    final = Checkpoint(run, run.epochs[-1]).activations.mlp_post
    neuron_freq = fo.key_frequencies_from_neurons(final, p, fo.frequencies(p)).details["neuron_freq"]
    random_dirs = pm.random_grid_directions(p, 2, seed=0)
    cols, per_example = {}, []
    for epoch in run.epochs:
        values, ssw, losses = _measure(Checkpoint(run, epoch), keys, neuron_freq, random_dirs)
        values["sum_sq_weights_by_param"] = torch.tensor([ssw[n] for n in sorted(ssw) if n != "total"],
                                                         dtype=torch.float64)
        for name, value in values.items():
            cols.setdefault(name, []).append(torch.as_tensor(value, dtype=torch.float64).reshape(-1))
        per_example.append(losses)
    return {name: torch.stack(c, dim=1) for name, c in cols.items()}, torch.stack(per_example)


@pytest.mark.parametrize("chunk_size", [1, 4, 5])
def test_chunked_analysis_equals_the_whole_run_at_once(tiny_run, cache_dir, chunk_size):
    """Streaming the checkpoints in chunks (memory flat in their number) shifts no value across a chunk boundary:
    every series, bit for bit, equals the one-chunk analysis and the values measured checkpoint by checkpoint and
    stacked at the end (13 checkpoints: chunks of 4 and 5 end mid-run, chunks of 1 everywhere)."""
    n = len(tiny_run.epochs)
    assert n % 4 and n % 5
    chunked = evaluate(tiny_run, cache=False, chunk_size=chunk_size)
    whole = evaluate(tiny_run, cache=False, chunk_size=n)
    reference, per_example = _one_checkpoint_at_a_time(tiny_run, chunked.keys.keys)
    assert list(chunked.series) == list(whole.series)
    for name in chunked.series:
        assert torch.equal(chunked[name].data, whole[name].data), name
        assert chunked[name].labels == whole[name].labels and torch.equal(chunked[name].epochs, whole[name].epochs)
    for name, values in reference.items():
        assert torch.equal(chunked[name].data, values), name
    assert torch.equal(chunked.per_example_log_loss, per_example)
    assert torch.equal(chunked["sum_sq_weights"].data, reference["sum_sq_weights_by_param"].sum(0, keepdim=True))


def test_chunks_cover_the_checkpoints_in_order_and_refuse_an_empty_chunk():
    from claimlens.core.memory import chunks, release_freed_memory

    epochs = list(range(0, 130, 10))
    for size in (1, 4, 13, 100):
        parts = list(chunks(epochs, size))
        assert [e for part in parts for e in part] == epochs and all(1 <= len(part) <= size for part in parts)
    with pytest.raises(ValueError, match="chunk size must be ≥ 1 checkpoint, got 0"):
        list(chunks(epochs, 0))
    assert release_freed_memory() in (True, False)
