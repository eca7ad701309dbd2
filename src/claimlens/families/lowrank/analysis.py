"""Low rank of a run's trajectory (claims_catalogue §3.4, §3.7): the gradient matrix and the checkpoint matrix with
their singular values (uncentred and centred) against a column-permutation null, and the PCA trajectory of the
per-example losses with its turning angles.

Memory stays bounded: gradients are written row by row to a temporary memory-mapped file and the Gram matrices are
accumulated over column blocks of it; the checkpoint matrix is read one parameter at a time
(:meth:`claimlens.runs.Run.stacked`). No ``[S, n_params]`` tensor is ever held.

* **Gradient matrix** (§3.7): the gradient of the training loss at each stored checkpoint (full-batch runs: on the
  whole training split, recomputed offline; the induction toy, trained on minibatches: on its fixed probe batch),
  over the trainable parameters, each row normalised to unit norm.
* **Checkpoint matrix** (§3.4, G-CKSVD): every parameter of every checkpoint, flattened (the run format has no
  buffers).
* **Per-example losses** (§3.4, G-PTLPCA): ``log10`` of the cross entropy of every input (all ``p²`` pairs, train and
  test) or, for the induction toy, of every scored token of the probe batch; PCA jointly over the checkpoints.

The result is cached in the analysis cache (keyed by the run's content hash, ``LOWRANK_VERSION``, the null's seed, the
epochs and, for a transformer, where its per-example losses came from: the progress measures' version, or its own
forward pass), so only a run's first session pays for it. What is stored are the ``S × S`` Gram matrices (of the
matrix, of its null, and of the gradient null on every 2nd and 4th checkpoint): every spectrum, centred or not, and
the mean-row cosine are read from them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from claimlens.core.cache import AnalysisCache
from claimlens.core.losses import cross_entropy_f64
from claimlens.core.memory import chunks, release_freed_memory
from claimlens.core.series import Series
from claimlens.families.lowrank import metrics as L
from claimlens.models import forward, frozen_params

BLOCK_COLUMNS = 1 << 16  # columns per Gram block: [S, 65 536] float64 is 66 MB at S = 126
NULL_SEED = 0
# 1: first cached version; 2: the Gram matrices are stored (not only their singular values), with the gradient
# null's at every 2nd and 4th checkpoint (catalogue Revision 3). Bump on any change to what lowrank_over_run computes
# or stores: the version is part of every entry's key, so an entry of an older version is never read.
LOWRANK_VERSION = 2
CACHE = AnalysisCache("lowrank", LOWRANK_VERSION)
SPECTRA = ("uncentred", "centred", "null", "null_centred")
# The gradient rule's count depends on how many steps are sampled: its ratio is also measured on every 2nd and every
# 4th checkpoint of the same run (the subsample's own null), and recorded with the verdict.
SUBSAMPLE_STRIDES = (2, 4)


def subsample_rows(n_rows: int, stride: int) -> torch.Tensor:
    """The rows of every ``stride``-th checkpoint, the first included: ``[0, stride, 2·stride, …]``."""
    return torch.arange(0, n_rows, stride)


@dataclass(frozen=True)
class Spectrum:
    """One matrix ``X [S, n]`` (rows: checkpoints) through its Gram matrices: ``gram = X Xᵀ [S, S]`` and its
    column-permutation null's ``null_gram [S, S]`` (every column's entries permuted over the rows, seeded);
    ``subsampled_nulls``: for a stride ``k`` (:data:`SUBSAMPLE_STRIDES`), the null's Gram matrix of the rows
    :func:`subsample_rows` keeps, permuted among those rows only ``[S_k, S_k]``.

    The singular values, largest first ``[S]``: ``uncentred`` (of ``X``), ``centred`` (each column centred: the
    mean row subtracted), ``null`` and ``null_centred`` (the null, centred). Centring a column and permuting it
    commute (a permutation keeps the column's mean), so ``null_centred`` is the catalogue's centred null: each column
    centred, then permuted over steps."""

    gram: torch.Tensor
    null_gram: torch.Tensor
    subsampled_nulls: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of_matrix(cls, X: torch.Tensor, *, seed: int = NULL_SEED, normalise: bool = False,
                  strides: tuple[int, ...] = ()) -> Spectrum:
        """The spectrum of a matrix held whole (synthetic data, tests): as :func:`lowrank_over_run` streams it."""
        return _spectrum(lambda: iter([X]), X.shape[0], normalise=normalise, strides=strides, seed=seed)

    @property
    def n_rows(self) -> int:
        return self.gram.shape[0]

    @property
    def uncentred(self) -> torch.Tensor:
        return L.singular_values(self.gram)

    @property
    def centred(self) -> torch.Tensor:
        return L.singular_values(L.centre(self.gram))

    @property
    def null(self) -> torch.Tensor:
        return L.singular_values(self.null_gram)

    @property
    def null_centred(self) -> torch.Tensor:
        return L.singular_values(L.centre(self.null_gram))

    def counts(self, fraction: float) -> dict[str, int]:
        return {k: L.count_above(getattr(self, k), fraction) for k in SPECTRA}

    def mean_row_cosine(self) -> float:
        """``|cos|`` between the uncentred matrix's component 0 (its first right singular vector) and its mean row
        (:func:`claimlens.families.lowrank.metrics.mean_row_cosine`): near 1 when component 0 is the mean."""
        return L.mean_row_cosine(self.gram)

    def subsampled(self, stride: int, fraction: float = 0.1) -> tuple[int, int, int]:
        """On every ``stride``-th checkpoint: ``(centred count, the subsample's centred null's count, rows)`` of
        singular values ≥ ``fraction`` × the largest. Raises ``KeyError`` for a stride not measured."""
        rows = subsample_rows(self.n_rows, stride)
        gram = self.gram[rows][:, rows]
        null = self.subsampled_nulls[stride]
        return (L.count_above(L.singular_values(L.centre(gram)), fraction),
                L.count_above(L.singular_values(L.centre(null)), fraction), len(rows))


@dataclass(frozen=True)
class LowRank:
    """The low-rank measures of one run over ``epochs [S]``: ``gradients`` and ``checkpoints`` spectra, the PCA
    trajectory of the per-example log-losses ``pca [S, 2]`` with its explained variance ``explained [2]`` and
    turning angles ``angles [S − 2]`` (degrees; entry ``i`` at ``epochs[i + 1]``), and the sizes involved."""

    epochs: torch.Tensor
    gradients: Spectrum
    checkpoints: Spectrum
    pca: torch.Tensor
    explained: torch.Tensor
    angles: torch.Tensor
    n_params: int
    n_examples: int
    from_cache: bool = field(default=False, compare=False)

    def angle_series(self) -> Series:
        return Series("turning angle of the PC1–PC2 trajectory (degrees)", self.epochs[1:-1], self.angles)


def _loss_fn(run):
    """``params → loss`` on the gradient matrix's data, and ``params → per-example losses [N]``."""
    spec = run.spec
    if spec.task.is_sequences:
        from claimlens.core.losses import token_losses
        from claimlens.models.attn_only import forward as attn_forward
        from claimlens.tasks import RepeatedSubsequence

        task = RepeatedSubsequence.from_config(spec.task)
        probe = task.probe()
        scored = task.scored(probe)

        def per_example(params):
            return token_losses(attn_forward(params, probe.tokens, spec.model), probe.tokens)[scored]

        return (lambda params: per_example(params).mean()), per_example
    tokens, labels = run.task.tokens, run.task.labels
    train = run.task.train_idx

    def train_loss(params):
        return cross_entropy_f64(forward(params, tokens[train], spec.model).logits, labels[train])

    def per_example(params):
        logits = forward(params, tokens, spec.model).logits.double()
        return -logits.log_softmax(-1).gather(1, labels[:, None]).squeeze(1)

    return train_loss, per_example


def _spectrum(blocks, n_rows: int, *, normalise: bool, strides: tuple[int, ...] = (), seed: int = NULL_SEED
              ) -> Spectrum:
    """Two passes over ``blocks()`` (an iterator of ``[S, c]`` column blocks): the Gram matrix, then the null's (with
    the rows scaled by the first pass's norms when ``normalise``), and for each of ``strides`` the null of every
    ``stride``-th row, in the same pass."""
    first = L.GramAccumulator(n_rows)
    for block in blocks():
        first.add(block)
    gram = L.normalise_rows(first.gram) if normalise else first.gram
    scale = None
    if normalise:
        n = L.row_norms(first.gram)
        scale = torch.where(n > 0, 1 / n, torch.zeros_like(n))
    null = L.GramAccumulator(n_rows, null=True, seed=seed, row_scale=scale)
    rows = {k: subsample_rows(n_rows, k) for k in strides}
    subs = {k: L.GramAccumulator(len(r), null=True, seed=seed + k, row_scale=None if scale is None else scale[r])
            for k, r in rows.items()}
    for block in blocks():
        null.add(block)
        for k, acc in subs.items():
            acc.add(block[rows[k]])
    return Spectrum(gram, null.gram, {k: acc.gram for k, acc in subs.items()})


def lowrank_over_run(run, *, per_example_log_loss: Callable[[], torch.Tensor] | None = None,
                     per_example_version: int | None = None, progress: bool = False, cache: bool = True) -> LowRank:
    """Every measure of :class:`LowRank` over every checkpoint of ``run``, read from the analysis cache when it holds
    them (computing them took 12.8 s for the three runs of a plain session on 2 cores).

    ``per_example_log_loss`` (called only when the measures are computed, not on a cache hit) gives a transformer's
    per-example losses ``[n_ckpt, p²]`` (log10 of each grid row's cross entropy at each checkpoint, float32) as another
    analysis already computed them, and ``per_example_version`` that analysis's version: the ``lowrank`` fixture
    passes the progress measures' (one forward pass over the grid per checkpoint), and the cache key includes the
    version. Without them a transformer's losses are computed here, in float64, under a key of their own (the
    turning angles then differ from the fixture's in the last digits). ``cache=False`` computes and stores
    nothing."""
    args = {"null_seed": NULL_SEED, "epochs": list(run.epochs)}
    transformer = run.spec.model.kind == "transformer"
    if transformer and per_example_log_loss is not None:
        args["progress_version"] = per_example_version
    elif transformer:
        args["per_example"] = "own forward pass"
    if cache:
        loaded = CACHE.load(run, args)
        if loaded is not None:
            found = _from_cache(*loaded, len(run.epochs))
            if found is not None:
                return found
    out = _compute(run, progress, per_example_log_loss() if transformer and per_example_log_loss else None)
    if cache:
        tensors = {"epochs": out.epochs, "pca": out.pca, "explained": out.explained, "angles": out.angles}
        for kind in ("gradients", "checkpoints"):
            spectrum = getattr(out, kind)
            tensors[f"{kind}.gram"], tensors[f"{kind}.null_gram"] = spectrum.gram, spectrum.null_gram
            for k, g in spectrum.subsampled_nulls.items():
                tensors[f"{kind}.null_gram.stride{k}"] = g
        CACHE.save(run, args, tensors, {"n_params": str(out.n_params), "n_examples": str(out.n_examples)})
    return out


def _from_cache(t: dict[str, torch.Tensor], meta: dict[str, str], S: int) -> LowRank | None:
    """The cached measures, or None if the entry is damaged or does not fit the run's ``S`` checkpoints."""
    try:
        spectra = {kind: Spectrum(t[f"{kind}.gram"], t[f"{kind}.null_gram"],
                                  {k: t[f"{kind}.null_gram.stride{k}"] for k in
                                   (SUBSAMPLE_STRIDES if kind == "gradients" else ())})
                   for kind in ("gradients", "checkpoints")}
        out = LowRank(t["epochs"], spectra["gradients"], spectra["checkpoints"], t["pca"], t["explained"], t["angles"],
                      int(meta["n_params"]), int(meta["n_examples"]), from_cache=True)
    except (KeyError, ValueError, TypeError):
        return None
    k = min(2, S)
    shapes_fit = (out.epochs.shape == (S,) and out.pca.shape == (S, k) and out.angles.shape == (max(S - 2, 0),)
                  and out.explained.dim() == 1 and out.explained.shape[0] in (k, 2)
                  and all(sp.gram.shape == (S, S) and sp.null_gram.shape == (S, S) for sp in spectra.values())
                  and all(g.shape == (len(subsample_rows(S, k)),) * 2
                          for k, g in spectra["gradients"].subsampled_nulls.items()))
    finite = all(bool(torch.isfinite(x).all()) for x in (out.pca, out.explained, out.angles)) and all(
        bool(torch.isfinite(g).all()) for sp in spectra.values()
        for g in (sp.gram, sp.null_gram, *sp.subsampled_nulls.values()))
    return out if shapes_fit and finite else None


def _compute(run, progress: bool, shared: torch.Tensor | None, chunk_size: int | None = None) -> LowRank:
    spec, epochs = run.spec, run.epochs
    S = len(epochs)
    frozen = frozen_params(spec.model, spec.modulus)
    loss_fn, per_example = _loss_fn(run)
    bar = _bar(S, f"low rank {run.name}", progress)
    with tempfile.TemporaryDirectory(prefix="claimlens-lowrank-") as tmp:
        grads = None
        losses = None  # [S, N] float64, filled row by row when no other analysis gave them
        i = 0
        for chunk in chunks(epochs, chunk_size):  # one checkpoint held at a time; a chunk's freed memory released
            for epoch in chunk:
                params = {k: v.requires_grad_(k not in frozen) for k, v in run.checkpoint(epoch).items()}
                names = sorted(k for k in params if k not in frozen)  # a checkpoint's dict order is not fixed
                grad = torch.autograd.grad(loss_fn(params), [params[k] for k in names])
                flat = torch.cat([g.flatten() for g in grad]).float().numpy()
                if grads is None:
                    grads = np.lib.format.open_memmap(Path(tmp) / "gradients.npy", mode="w+", dtype=np.float32,
                                                      shape=(S, flat.size))
                grads[i] = flat
                if shared is None:
                    with torch.no_grad():
                        row = L.log_loss(per_example(params).detach())
                    if losses is None:
                        losses = torch.empty(S, row.numel(), dtype=row.dtype)
                    losses[i] = row
                i += 1
                if bar is not None:
                    bar.update(1)
            del params, grad, flat
            release_freed_memory()
        if bar is not None:
            bar.close()
        grads.flush()
        n_grad = grads.shape[1]

        def gradient_blocks():
            for start in range(0, n_grad, BLOCK_COLUMNS):
                yield torch.from_numpy(np.asarray(grads[:, start:start + BLOCK_COLUMNS]))

        gradients = _spectrum(gradient_blocks, S, normalise=True, strides=SUBSAMPLE_STRIDES)
        del grads

    shapes = run.checkpoint(epochs[0])
    n_params = sum(v.numel() for v in shapes.values())

    def checkpoint_blocks():
        for name in sorted(shapes):
            yield run.stacked(name).reshape(S, -1)

    checkpoints = _spectrum(checkpoint_blocks, S, normalise=False)
    matrix = shared.double() if shared is not None else losses  # [S, N]: small next to the parameters
    pca, explained = L.pca_trajectory(matrix)
    return LowRank(torch.tensor(epochs), gradients, checkpoints, pca, explained, L.turning_angles(pca),
                   n_params, matrix.shape[1])


def shuffled_turns(pca: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The null of the turning-angle rule: the same PC1–PC2 points visited in a random order (its angles)."""
    order = torch.randperm(pca.shape[0], generator=torch.Generator().manual_seed(seed))
    return L.turning_angles(pca[order])


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="checkpoint", dynamic_ncols=True)


__all__ = ["LowRank", "Spectrum", "lowrank_over_run", "shuffled_turns", "subsample_rows"]
