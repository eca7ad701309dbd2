"""Low rank of training trajectories (claims_catalogue §3.4, §3.7): the Gram-matrix spectra against a plain SVD, the
null and the turning angles against naive loops, the analysis against the matrices built whole on a small real run,
and the rules on synthetic positives and negatives."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from claimlens.families.lowrank import metrics as L
from claimlens.families.lowrank import rules as LR


def _bounds(spec):
    from claimlens.core.verdicts import Bound

    return {k: Bound(t.value, k, t.source) for k, t in spec.thresholds.items()}


@settings(max_examples=30, deadline=None)
@given(S=st.integers(2, 12), n=st.integers(1, 40), block=st.integers(1, 16), seed=st.integers(0, 2**31 - 1))
def test_gram_spectra_equal_a_plain_svd(S, n, block, seed):
    X = torch.randn(S, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    acc = L.GramAccumulator(S)
    for start in range(0, n, block):
        acc.add(X[:, start:start + block])
    torch.testing.assert_close(acc.gram, X @ X.T)
    k = min(S, n)
    torch.testing.assert_close(L.singular_values(acc.gram)[:k], torch.linalg.svdvals(X), atol=1e-6, rtol=1e-6)
    centred = X - X.mean(0, keepdim=True)
    torch.testing.assert_close(L.singular_values(L.centre(acc.gram))[:k], torch.linalg.svdvals(centred),
                               atol=1e-6, rtol=1e-6)
    unit = X / X.norm(dim=1, keepdim=True)
    torch.testing.assert_close(L.normalise_rows(acc.gram), unit @ unit.T)


def test_null_permutes_each_column_independently():
    X = torch.arange(40, dtype=torch.float64).view(8, 5)
    acc = L.GramAccumulator(8, null=True, seed=3, row_scale=torch.full((8,), 2.0))
    captured = []
    add = acc.add

    def spy(block):
        x = block.double() * 2.0
        order = torch.rand(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).argsort(dim=0)
        captured.append(x.gather(0, order))
        add(block)

    spy(X)
    P = captured[0]
    for j in range(5):  # each column keeps its entries
        assert sorted(P[:, j].tolist()) == sorted((2 * X[:, j]).tolist())
    assert not torch.equal(P, 2 * X)
    torch.testing.assert_close(acc.gram, P @ P.T)


@pytest.mark.parametrize("width", [1, 3, 7, 4096])
def test_null_permuted_in_place_a_few_columns_at_a_time_equals_the_whole_block_at_once(monkeypatch, width):
    """The null permutes its block in place, ``PERMUTE_COLUMNS`` columns at a time (working memory flat in the
    columns): the Gram matrix is the one of the whole block permuted at once, bit for bit, whatever the width, and
    the caller's block (float64 too) is left as it was."""
    monkeypatch.setattr(L, "PERMUTE_COLUMNS", width)
    gen = torch.Generator().manual_seed(11)
    blocks = [torch.randn(9, 10, generator=gen, dtype=torch.float64), torch.randn(9, 6, generator=gen)]
    scale = torch.rand(9, generator=gen) + 0.5
    kept = [b.clone() for b in blocks]
    acc = L.GramAccumulator(9, null=True, seed=5, row_scale=scale)
    draws, expected = torch.Generator().manual_seed(5), torch.zeros(9, 9, dtype=torch.float64)
    for block in blocks:
        acc.add(block)
        x = block.double() * scale.double().view(-1, 1)
        x = x.gather(0, torch.rand(x.shape, generator=draws, dtype=torch.float64).argsort(dim=0))
        expected += x @ x.T
    assert torch.equal(acc.gram, expected)
    assert all(torch.equal(b, k) for b, k in zip(blocks, kept, strict=True))


def test_count_above():
    sv = torch.tensor([10.0, 2.0, 1.0, 0.5])
    assert [L.count_above(sv, f) for f in (0.05, 0.1, 0.15)] == [4, 3, 2]


def _naive_angles(points):
    out = []
    for i in range(1, len(points) - 1):
        a, b = points[i] - points[i - 1], points[i + 1] - points[i]
        out.append(math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / (a.norm() * b.norm())))))))
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(S=st.integers(3, 20), seed=st.integers(0, 2**31 - 1))
def test_turning_angles_equal_naive_loop(S, seed):
    pts = torch.randn(S, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(L.turning_angles(pts), _naive_angles(pts))


def test_pca_trajectory_matches_svd():
    M = torch.randn(15, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scores, explained = L.pca_trajectory(M)
    C = M - M.mean(0)
    U, s, _ = torch.linalg.svd(C, full_matrices=False)
    torch.testing.assert_close(scores.abs(), (U[:, :2] * s[:2]).abs())
    torch.testing.assert_close(explained, s[:2] ** 2 / (s ** 2).sum())


def test_analysis_streamed_in_chunks_equals_one_chunk(tiny_run):
    """Chunks of checkpoints (memory released between them) change no value: chunks of 1 and 5 against one chunk of
    the whole run (13 checkpoints), bit for bit."""
    from claimlens.families.lowrank.analysis import SPECTRA, _compute

    whole = _compute(tiny_run, False, None, chunk_size=len(tiny_run.epochs))
    for size in (1, 5):
        chunked = _compute(tiny_run, False, None, chunk_size=size)
        for kind in ("gradients", "checkpoints"):
            for name in SPECTRA:
                assert torch.equal(getattr(getattr(chunked, kind), name), getattr(getattr(whole, kind), name))
        assert torch.equal(chunked.pca, whole.pca) and torch.equal(chunked.angles, whole.angles)


def test_analysis_equals_the_whole_matrices_on_a_real_run(tiny_run):
    """The streamed spectra equal the SVD of the matrices built whole (names in a fixed order: a checkpoint's dict
    order is not)."""
    from claimlens.families.lowrank.analysis import _loss_fn, lowrank_over_run
    from claimlens.models import frozen_params

    lr = lowrank_over_run(tiny_run, cache=False)
    frozen = frozen_params(tiny_run.spec.model, tiny_run.spec.task.p)
    loss_fn, per_example = _loss_fn(tiny_run)
    rows, ckpts, losses = [], [], []
    for epoch in tiny_run.epochs:
        params = tiny_run.checkpoint(epoch)
        names = sorted(k for k in params if k not in frozen)
        p = {k: v.clone().requires_grad_(k in names) for k, v in params.items()}
        grads = torch.autograd.grad(loss_fn(p), [p[k] for k in names])
        g = torch.cat([x.flatten() for x in grads]).double()
        rows.append(g / g.norm())
        ckpts.append(torch.cat([params[k].flatten() for k in sorted(params)]).double())
        losses.append(L.log_loss(per_example(params).detach()))
    G, C = torch.stack(rows), torch.stack(ckpts)
    k = len(rows)
    torch.testing.assert_close(lr.gradients.uncentred[:k], torch.linalg.svdvals(G), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lr.checkpoints.uncentred[:k], torch.linalg.svdvals(C), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(lr.checkpoints.centred[:k], torch.linalg.svdvals(C - C.mean(0)), atol=1e-3, rtol=1e-4)
    scores, _ = L.pca_trajectory(torch.stack(losses))
    # the transformer's losses come from the progress measures' cache (float32 log10): equal to float32 precision
    torch.testing.assert_close(lr.pca.abs(), scores.abs(), atol=1e-3, rtol=1e-3)
    assert lr.n_params == C.shape[1]


def test_the_analysis_is_cached_and_a_damaged_entry_is_recomputed(tiny_run, tmp_path, monkeypatch):
    from claimlens.families.lowrank.analysis import lowrank_over_run

    monkeypatch.setenv("CLAIMLENS_CACHE_DIR", str(tmp_path))
    first = lowrank_over_run(tiny_run)
    again = lowrank_over_run(tiny_run)
    assert not first.from_cache and again.from_cache
    for kind in ("gradients", "checkpoints"):
        for name in ("gram", "null_gram", "uncentred", "centred", "null", "null_centred"):
            assert torch.equal(getattr(getattr(again, kind), name), getattr(getattr(first, kind), name))
        assert getattr(again, kind).subsampled_nulls.keys() == getattr(first, kind).subsampled_nulls.keys()
    for name in ("epochs", "pca", "explained", "angles"):
        assert torch.equal(getattr(again, name), getattr(first, name))
    assert (again.n_params, again.n_examples) == (first.n_params, first.n_examples)
    (entry,) = (tmp_path / "lowrank").rglob("*.safetensors")
    good = entry.read_bytes()
    entry.write_bytes(good[:100])  # truncated
    redone = lowrank_over_run(tiny_run)
    assert not redone.from_cache and torch.equal(redone.pca, first.pca)

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(entry, framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(entry)
    for change in ({"pca": tensors["pca"][:-1]}, {"angles": tensors["angles"].fill_(float("nan"))},
                   {"gradients.null_gram": None}, {"gradients.null_gram.stride2": None}):  # well-formed files that do not fit the run
        broken = {**tensors, **{k: v for k, v in change.items() if v is not None}}
        broken = {k: v.contiguous() for k, v in broken.items() if change.get(k, 0) is not None}
        save_file(broken, entry, metadata=meta)
        again = lowrank_over_run(tiny_run)
        assert not again.from_cache and torch.equal(again.pca, first.pca), change.keys()
        tensors = load_file(entry)  # the recomputed entry, for the next case


# ----------------------------------------------------------------------------- the rules


class _Spectrum:
    def __init__(self, X, *, normalise=False, strides=()):
        from claimlens.families.lowrank.analysis import Spectrum

        self.spectrum = Spectrum.of_matrix(X, seed=1, normalise=normalise, strides=strides)


def test_checkpoint_rule_passes_low_rank_and_fails_full_rank():
    gen = torch.Generator().manual_seed(0)
    low = torch.randn(40, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 500, generator=gen, dtype=torch.float64)
    full = torch.randn(40, 500, generator=gen, dtype=torch.float64)
    th = _bounds(LR.CHECKPOINT_MATRIX_IS_LOW_RANK)
    assert LR.checkpoint_matrix_is_low_rank(_Spectrum(low).spectrum, 40, th).passed
    assert not LR.checkpoint_matrix_is_low_rank(_Spectrum(full).spectrum, 40, th).passed


def _updates(rank, S=40, n=500, noise=0.01, seed=0):
    """A synthetic update sequence: ``S`` gradient vectors ``[S, n]`` in a fixed ``rank``-dimensional subspace
    (coefficients N(0, 1): the direction's sign changes from step to step) plus small i.i.d. noise; ``rank`` 0:
    i.i.d. noise alone (nothing going on)."""
    gen = torch.Generator().manual_seed(seed)
    X = noise * torch.randn(S, n, generator=gen, dtype=torch.float64)
    if rank:
        X += torch.randn(S, rank, generator=gen, dtype=torch.float64) @ torch.randn(rank, n, generator=gen,
                                                                                   dtype=torch.float64)
    return X


@pytest.mark.parametrize("rank", [1, 3])
def test_gradient_rule_passes_a_low_rank_update_sequence(rank):
    verdict = LR.gradient_updates_are_low_rank(_Spectrum(_updates(rank), normalise=True, strides=(2, 4)).spectrum, 40,
                                               _bounds(LR.GRADIENT_UPDATES_ARE_LOW_RANK))
    assert verdict.passed, [c.describe() for c in verdict.checks if c.status == "failed"]
    (judged,) = [c for c in verdict.checks if c.status == "passed"]
    assert judged.detail.startswith(f"{rank} vs ")
    assert judged.source_value == pytest.approx(92.5 / 400)
    sub = {c.name: c for c in verdict.checks if "checkpoint (not judged)" in c.name}
    assert len(sub) == 2 and all(c.status == "recorded" for c in sub.values())
    every_2nd = next(c for name, c in sub.items() if "every 2nd" in name)
    assert every_2nd.detail.startswith(f"{rank} vs ") and every_2nd.detail.endswith("of 20")


def test_gradient_rule_fails_on_iid_noise():
    """A matrix with nothing going on (independent rows) is as high-rank as its permutation null: the control."""
    verdict = LR.gradient_updates_are_low_rank(_Spectrum(_updates(0), normalise=True).spectrum, 40,
                                               _bounds(LR.GRADIENT_UPDATES_ARE_LOW_RANK))
    assert not verdict.passed
    (failed,) = [c for c in verdict.checks if c.status == "failed"]
    assert failed.name.startswith("centred count") and failed.value > 0.9


def test_gradient_rule_judges_the_centred_count_only():
    """A shared mean direction (the fall of the loss along one direction) plus i.i.d. noise: uncentred, component 0
    is the mean row and the count is 1 against the null's 1; centred, nothing is left but the noise, and the rule
    fails. The uncentred ratio is recorded, not judged."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(1, 500, generator=gen, dtype=torch.float64) + 0.05 * torch.randn(40, 500, generator=gen,
                                                                                       dtype=torch.float64)
    verdict = LR.gradient_updates_are_low_rank(_Spectrum(X, normalise=True).spectrum, 40,
                                               _bounds(LR.GRADIENT_UPDATES_ARE_LOW_RANK))
    by_name = {c.name: c for c in verdict.checks}
    assert by_name["uncentred component 0: |cos| with the mean row"].value > 0.99
    assert by_name["uncentred count ≥ 0.1 σ_max / null's (not judged: the null keeps each column's mean)"].status \
        == "recorded"
    assert not verdict.passed


@settings(max_examples=25, deadline=None)
@given(S=st.integers(2, 12), n=st.integers(1, 30), seed=st.integers(0, 2**31 - 1))
def test_mean_row_cosine_equals_the_svd(S, n, seed):
    X = torch.randn(S, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.5
    _, s, Vh = torch.linalg.svd(X, full_matrices=False)
    m = X.mean(0)
    expected = abs(float(Vh[0] @ m)) / float(m.norm())
    if s.numel() > 1 and float(s[0] - s[1]) < 1e-6 * float(s[0]):
        return  # component 0 is not defined by a degenerate top singular value
    assert L.mean_row_cosine(X @ X.T) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert L.mean_row_cosine(torch.zeros(S, S, dtype=torch.float64)) == 0.0


def test_centred_null_is_each_column_centred_then_permuted():
    """Catalogue Revision 3's null: each column centred, then permuted over steps (a naive build), equals the
    centred Gram matrix of the streamed null (a permutation keeps a column's mean, so the two orders commute); and
    a subsample's null permutes the entries of its own rows only."""
    from claimlens.families.lowrank.analysis import Spectrum, subsample_rows

    gen = torch.Generator().manual_seed(5)
    X = torch.randn(12, 30, generator=gen, dtype=torch.float64) + 1.0
    spectrum = Spectrum.of_matrix(X, seed=7, normalise=True, strides=(2, 4))
    U = X / X.norm(dim=1, keepdim=True)
    order = torch.rand(U.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).argsort(dim=0)
    N = (U - U.mean(0)).gather(0, order)
    torch.testing.assert_close(L.centre(spectrum.null_gram), N @ N.T)
    torch.testing.assert_close(spectrum.null_centred[:11], torch.linalg.svdvals(N)[:11], atol=1e-9, rtol=1e-7)
    for k in (2, 4):
        rows = subsample_rows(12, k)
        order = torch.rand((len(rows), 30), generator=torch.Generator().manual_seed(7 + k),
                           dtype=torch.float64).argsort(dim=0)
        Nk = U[rows].gather(0, order)
        torch.testing.assert_close(spectrum.subsampled_nulls[k], Nk @ Nk.T)
        c, null, n_rows = spectrum.subsampled(k)
        Uk = U[rows] - U[rows].mean(0)
        assert n_rows == len(rows) == len(range(0, 12, k))
        assert c == L.count_above(torch.linalg.svdvals(Uk), 0.1)
        assert null == L.count_above(torch.linalg.svdvals(Nk - Nk.mean(0)), 0.1)


def _trajectory_with_turns_at(epochs, turn_epochs):
    """A PC1–PC2 path going straight, turning 90° at each of ``turn_epochs``."""
    pts, direction, pos = [], torch.tensor([1.0, 0.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for e in epochs:
        pts.append(pos.clone())
        if e in turn_epochs:
            direction = torch.stack([-direction[1], direction[0]])
        pos = pos + direction
    return torch.stack(pts)


def test_pca_rule_passes_turns_at_t1_and_t2_and_fails_elsewhere():
    epochs = torch.arange(0, 3000, 50)
    th = _bounds(LR.PCA_TURNS_AT_PHASE_CHANGE)
    phases = {"t1": 400, "t2": 1500, "t3": 2500}
    explained = torch.tensor([0.6, 0.3], dtype=torch.float64)
    good = LR.pca_turns_at_phase_change(_trajectory_with_turns_at(epochs.tolist(), {400, 1500}), explained, epochs,
                                        phases, th)
    assert good.passed, good.failure_message()
    bad = LR.pca_turns_at_phase_change(_trajectory_with_turns_at(epochs.tolist(), {1000, 2000}), explained, epochs,
                                       phases, th)
    assert not bad.passed
    none = LR.pca_turns_at_phase_change(_trajectory_with_turns_at(epochs.tolist(), {400, 1500}), explained, epochs,
                                        {"phase change": None}, th, unresolved="no phase change")
    assert not none.passed
    induction = LR.pca_turns_at_phase_change(_trajectory_with_turns_at(epochs.tolist(), {1200, 300}), explained,
                                             epochs, {"phase change": 1150}, th)
    assert induction.passed
