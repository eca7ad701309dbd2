"""Every progress measure over every checkpoint of a run, as per-epoch series, cached on disk.

One forward pass per checkpoint (:class:`claimlens.core.checkpoint.Checkpoint`, the fast path over all
``p²`` inputs) is shared by every metric that needs activations; the final checkpoint's pass is also shared
with the key-frequency rule and the claims about the final model. Key frequencies are fixed from the final
checkpoint (G-KEY rule 1 by default) and reused for all epochs. Results are cached per (run content hash,
analysis version, arguments) in the analysis cache, so a second evaluation of the same run recomputes
nothing. The checkpoints are streamed in chunks (:mod:`claimlens.core.memory`): one checkpoint's parameters and
activations are held at a time, its values written into series allocated once, so memory does not grow with the
number of checkpoints beyond the series. The metrics themselves are the pure functions of :mod:`claimlens.families.grokking.metrics`.

A transformer of ``n_layers > 1`` is measured the same way, with two differences: its key frequencies are those of
its embedding (G-KEY by embedding norm: the neuron rule reads the one MLP of Nanda et al.'s 1-layer circuit), and
the series that read that circuit (``attention_to_position``, ``gini_W_L``, the neuron rows of ``trig_fraction``,
``neuron_key_frequency``, ``quadratic_fraction``) are of its **last** block (its attention from the final query, its
MLP neurons, ``W_L = W_out @ W_U`` of that block). The claims that read them skip such a model
(:func:`claimlens.plugin.fixtures.needs_one_layer`); the others (losses, phases, excluded and restricted loss, the
embedding, Σθ², the logits) are defined for any depth.

Series names (stable; used by claims, reports and baselines):

=============================  ===============================================  ===========================
name                           what                                             labels
=============================  ===============================================  ===========================
``train_loss`` ``test_loss``   float64 CE of the analysis logits                –
``train_acc`` ``test_acc``     accuracy                                         –
``excluded_loss``              train loss without one key frequency (per key)   ``k=14`` per key
``excluded_loss_all_keys``     train loss without all key frequencies at once   –
``restricted_loss``            loss of key-frequency-only logits (train:        ``all`` ``train`` ``test``
                               classes as sampled; train_balanced: each class   ``train_balanced``
                               weighted equally, NaN if a class has no pair)
``trig_loss_all``              = restricted loss on all pairs (Colab name)      –
``trig_loss_train``            = restricted loss on the train pairs             –
``random_direction_control``   train loss without two random grid directions    –
                               (seeded), over the train loss
``attention_to_position``      mean attention of ``=`` to each position         ``head=h,pos=j``
``sum_sq_weights``             Σθ² over all parameters                          –
``sum_sq_weights_by_param``    Σθ² per parameter                                parameter name
``embed_fourier_norms``        squared norms of the rows of ``F @ W_E``         basis names
``embed_singular_values``      singular values of ``W_E[:p]``                   ``sv0`` …
``gini_W_E`` ``gini_W_L``      Gini of the Fourier row norms                    –
``trig_fraction``              G-TRIGFRAC of logits and MLP activations         ``logits`` ``mlp_pre`` ``mlp_post``
``neuron_key_frequency``       1 where ``k`` is a key by G-KEY rule 1 at that   ``k=1`` … ``k=(p−1)/2``
                               checkpoint's own neurons, else 0
``quadratic_fraction``         G-QUAD of each neuron for its final frequency    ``neuron=i``
=============================  ===============================================  ===========================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import torch

from claimlens.core import fourier as fo
from claimlens.core.cache import AnalysisCache
from claimlens.core.checkpoint import FinalCheckpoints, checkpoint, final_checkpoint
from claimlens.core.losses import accuracy, cross_entropy_f64
from claimlens.core.memory import chunks, release_freed_memory
from claimlens.core.series import Series, SeriesUnavailable
from claimlens.families.grokking import metrics as pm
from claimlens.models import n_ctx

VERSION = 5  # 2: random-direction control, neuron key frequencies, G-QUAD per neuron; 3: key vote share, balanced trig
# loss; 4: the per-example log10 losses (the low-rank claims' PCA reads them from the same forward pass); 5: the
# rows of sum_sq_weights_by_param by parameter name (they followed each checkpoint's file order, which varies)
CACHE = AnalysisCache("series", VERSION)


@dataclass
class ProgressMeasures:
    """All progress-measure series of one run (``measures["test_loss"]`` is a :class:`Series`), with the key
    frequencies they depend on and how those were found."""

    epochs: torch.Tensor  # [n_epochs] int64
    keys: fo.KeyFrequencies
    series: dict[str, Series]
    from_cache: bool = False
    # [n_epochs, p²] float32: log10 of each grid row's cross entropy at each checkpoint (catalogue §3.4, G-PTLPCA)
    per_example_log_loss: torch.Tensor | None = None
    split_unknown: str | None = None  # why the run's split is unknown (the series of SPLIT_SERIES are then absent)
    version: ClassVar[int] = VERSION  # of what :func:`evaluate` computes (analyses that reuse it key their caches on it)

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def __getitem__(self, name: str) -> Series:
        if name not in self.series:
            if self.split_unknown is not None and name in SPLIT_SERIES:
                raise SeriesUnavailable(f"the series {name!r} needs the run's train/test split, which is unknown: "
                                        f"{self.split_unknown}")
            raise SeriesUnavailable(f"no series {name!r}; known: {sorted(self.series)}")
        return self.series[name]


# The series measured on the training or test set: absent when the run's split is unknown (never on a made-up one).
SPLIT_SERIES = ("train_loss", "test_loss", "train_acc", "test_acc", "excluded_loss", "excluded_loss_all_keys",
                "restricted_loss", "random_direction_control", "trig_loss_train")


class CurveMeasures:
    """The series of a curves-only run (:class:`claimlens.reference.CurvesRun`) under the progress measures'
    names; a series the run lacks raises :class:`claimlens.core.series.SeriesUnavailable` with the reason."""

    def __init__(self, run):
        self.run = run
        self.series = run.series
        first = next(iter(run.series.values()))
        self.epochs = first.epochs
        self.keys = fo.KeyFrequencies(list(run.keys), "given by the source", [])
        self.from_cache = False

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def __getitem__(self, name: str) -> Series:
        if name not in self.series:
            raise SeriesUnavailable(f"run {self.run.name!r} is a curves-only run without a {name!r} curve "
                                    f"(it has {sorted(self.series)}); this claim needs it")
        return self.series[name]


def default_key_rule(model) -> str:
    """G-KEY rule 1 on the MLP neurons for a 1-layer transformer; the embedding's Fourier norms for a deeper one
    (its last MLP is not the one MLP of the 1-layer circuit that rule reads)."""
    return "neuron_cluster_argmax" if getattr(model, "n_layers", 1) == 1 else "embedding_norm"


def final_key_frequencies(run, rule: str | None = None,
                          checkpoints: FinalCheckpoints | None = None) -> fo.KeyFrequencies:
    """Key frequencies of the final checkpoint (by :func:`default_key_rule` unless ``rule``: rule 1 on MLP
    post-activations for a 1-layer transformer; the final checkpoint kept in ``checkpoints`` if given)."""
    rule = default_key_rule(run.spec.model) if rule is None else rule
    p, final = run.spec.task.p, final_checkpoint(run, checkpoints)
    if rule == "neuron_cluster_argmax":
        return fo.key_frequencies_from_neurons(final.activations.mlp_post, p, fo.frequencies(p))
    if rule == "embedding_norm":
        W_E = final.params["embed.W_E"][:p].double()
        return fo.key_frequencies_by_norm(fo.fft_tokens(W_E, fo.fourier_basis(p)), p, rule)
    raise ValueError(f"unknown key-frequency rule {rule!r}; use 'neuron_cluster_argmax' or 'embedding_norm'")


def evaluate(run, *, keys: list[int] | None = None, key_rule: str | None = None, cache: bool = True,
             progress: bool = False, checkpoints: FinalCheckpoints | None = None,
             chunk_size: int | None = None) -> ProgressMeasures:
    """Series of every progress measure over every checkpoint of ``run`` (a transformer run). The final checkpoint
    is the one ``checkpoints`` keeps (the session's), else one read for this call. ``key_rule``: see
    :func:`final_key_frequencies`. The checkpoints are streamed in chunks of ``chunk_size`` (default
    :data:`claimlens.core.memory.CHUNK_CHECKPOINTS`): memory stays flat in the number of checkpoints, and the chunk
    size changes no value (so it is not part of the cache key).

    Raises ``ValueError`` for a run that is not a transformer; a checkpoint that cannot be read raises
    :class:`claimlens.errors.CheckpointError` naming it."""
    if run.spec.model.kind != "transformer":
        raise ValueError(f"run {run.name!r} is a {run.spec.model.kind}; the progress measures need the transformer")
    checkpoints = FinalCheckpoints() if checkpoints is None else checkpoints  # the final one read once a call
    kf = final_key_frequencies(run, key_rule, checkpoints) if keys is None else fo.KeyFrequencies(sorted(keys), "given", [])
    args = {"args": {"keys": kf.keys, "rule": kf.rule}}
    if cache:
        loaded = CACHE.load(run, args)
        if loaded is not None:
            tensors, meta = loaded
            try:
                labels = json.loads(meta["labels"])
                epochs = tensors["__epochs__"]
                series = {name: Series(name, epochs, tensors[name], tuple(labels[name])) for name in labels}
                return ProgressMeasures(epochs, kf, series, from_cache=True,
                                        per_example_log_loss=tensors["__per_example_log_loss__"],
                                        split_unknown=run.task.split_unknown)
            except (KeyError, ValueError):
                pass  # damaged: recomputed
    epochs, series, per_example = _compute(run, kf.keys, progress, checkpoints, chunk_size)
    if cache:
        tensors = {"__epochs__": epochs, "__per_example_log_loss__": per_example,
                   **{name: s.data.clone() for name, s in series.items()}}
        CACHE.save(run, args, tensors, {"labels": json.dumps({name: list(s.labels) for name, s in series.items()})})
    return ProgressMeasures(epochs, kf, series, per_example_log_loss=per_example, split_unknown=run.task.split_unknown)


_NAMES = ("train_loss", "test_loss", "train_acc", "test_acc", "excluded_loss", "excluded_loss_all_keys",
          "restricted_loss", "random_direction_control", "attention_to_position", "sum_sq_weights_by_param",
          "embed_fourier_norms", "embed_singular_values", "gini_W_E", "gini_W_L", "trig_fraction",
          "neuron_key_frequency", "quadratic_fraction")  # the series of _compute (Σθ² per parameter built there)


@torch.no_grad()
def _measure(ckpt, keys: list[int], neuron_freq: torch.Tensor, random_dirs: torch.Tensor
             ) -> tuple[dict[str, torch.Tensor], dict[str, float], torch.Tensor]:
    """Every measure at one checkpoint: (series name → its value there (a scalar or a ``[labels]`` vector, float64),
    Σθ² per parameter name, per-example log10 loss ``[N]`` float32)."""
    run = ckpt.run
    p, task = run.spec.task.p, run.task
    labels = task.labels
    basis = fo.fourier_basis(p)
    candidates = fo.frequencies(p)
    params, acts = ckpt.params, ckpt.activations
    L = acts.logits.to(torch.float64)
    out = {}
    restricted = pm.restricted_logits(L, keys, p)
    if task.split_known:
        out.update(_split_measures(L, restricted, labels, task.train_idx, task.test_idx, keys, p, random_dirs))
    else:  # on all pairs only: the series of SPLIT_SERIES are left out, never measured on a made-up split
        out["trig_loss_all"] = cross_entropy_f64(restricted, labels)
    _all_pairs_measures(out, params, acts, L, keys, neuron_freq, basis, candidates, p, run.spec.model.n_layers)
    return out, pm.sum_sq_weights(params), log10_losses(L, labels).float()


def _split_measures(L, restricted, labels, tr, te, keys, p, random_dirs) -> dict[str, torch.Tensor]:
    """The measures on the training or test set (:data:`SPLIT_SERIES`)."""
    out = {}
    out["train_loss"] = cross_entropy_f64(L[tr], labels[tr])
    out["test_loss"] = cross_entropy_f64(L[te], labels[te])
    out["train_acc"] = accuracy(L[tr], labels[tr])
    out["test_acc"] = accuracy(L[te], labels[te])
    out["excluded_loss"] = pm.excluded_loss(L, labels, tr, keys, p)
    out["excluded_loss_all_keys"] = pm.excluded_loss_all_keys(L, labels, tr, keys, p)
    out["restricted_loss"] = torch.stack([cross_entropy_f64(restricted, labels),
                                          cross_entropy_f64(restricted[tr], labels[tr]),
                                          cross_entropy_f64(restricted[te], labels[te]),
                                          pm.class_balanced_loss(restricted, labels, tr, p)])
    out["random_direction_control"] = pm.direction_ablation_ratio(L, labels, tr, random_dirs)
    return out


def _all_pairs_measures(out, params, acts, L, keys, neuron_freq, basis, candidates, p, n_layers: int) -> None:
    """The measures on all p² pairs and on the weights, added to ``out``."""
    out["attention_to_position"] = pm.attention_to_position(acts.pattern).flatten()
    W_E = params["embed.W_E"].to(torch.float64)
    coef = fo.fft_tokens(W_E[:p], basis)
    out["embed_fourier_norms"] = coef.pow(2).sum(-1)
    out["embed_singular_values"] = torch.linalg.svdvals(W_E[:p])
    out["gini_W_E"] = pm.gini(coef.norm(dim=-1))
    last = f"blocks.{n_layers - 1}."  # the only block of a 1-layer model
    W_L = pm.neuron_logit_map(params[last + "mlp.W_out"], params["unembed.W_U"])
    out["gini_W_L"] = pm.gini(fo.fft_tokens(W_L, basis).norm(dim=-1))
    out["trig_fraction"] = torch.stack([pm.trig_variance_fraction(x, keys, p)
                                        for x in (L, acts.mlp_pre, acts.mlp_post)])
    power = fo.neuron_block_power(acts.mlp_post, p)  # shared by the next two
    own = set(fo.key_frequencies_from_neurons(acts.mlp_post, p, candidates, power=power).keys)
    out["neuron_key_frequency"] = torch.tensor([float(k in own) for k in candidates], dtype=torch.float64)
    out["quadratic_fraction"] = pm.quadratic_fraction(acts.mlp_post, neuron_freq, p, power=power)


@torch.no_grad()
def _compute(run, keys: list[int], progress: bool, checkpoints: FinalCheckpoints,
             chunk_size: int | None = None) -> tuple[torch.Tensor, dict[str, Series], torch.Tensor]:
    """Stream the checkpoints in chunks of ``chunk_size`` (:func:`claimlens.core.memory.chunks`): each checkpoint is
    read, measured and dropped, its values written into the series allocated at the first checkpoint, and the memory
    a chunk freed is given back before the next, so memory does not grow with the number of checkpoints beyond the
    series themselves. Every value is that checkpoint's own computation: the chunk size changes no value."""
    p, model = run.spec.task.p, run.spec.model
    order = [n for n in _NAMES if run.task.split_known or n not in SPLIT_SERIES]  # the series' order (the cache's)
    epochs = run.epochs
    S = len(epochs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=S, desc=f"metrics {run.name}", unit="ckpt")
    candidates = fo.frequencies(p)
    final_neurons = fo.key_frequencies_from_neurons(final_checkpoint(run, checkpoints).activations.mlp_post, p,
                                                     candidates)
    neuron_freq = final_neurons.details["neuron_freq"]  # [d_mlp]: each neuron's frequency in the final model
    random_dirs = pm.random_grid_directions(p, 2, seed=0)
    param_names = None
    buffers: dict[str, torch.Tensor] = {}  # series name -> [labels, S] float64, filled column by column
    per_example = None  # [S, N] float32
    i = 0
    try:
        for chunk in chunks(epochs, chunk_size):
            for epoch in chunk:
                values, ssw, losses = _measure(checkpoint(run, epoch, checkpoints), keys, neuron_freq, random_dirs)
                if param_names is None:
                    param_names = sorted(n for n in ssw if n != "total")
                values["sum_sq_weights_by_param"] = torch.tensor([ssw[n] for n in param_names], dtype=torch.float64)
                if i == 0:
                    order += [n for n in values if n not in order]
                    buffers = {n: torch.empty(torch.as_tensor(values[n]).numel(), S, dtype=torch.float64)
                               for n in order}
                    per_example = torch.empty(S, losses.numel(), dtype=losses.dtype)
                if values.keys() != buffers.keys():
                    raise RuntimeError(f"run {run.name!r}, epoch {epoch}: measured {sorted(values)}, expected "
                                       f"{sorted(buffers)}")
                for name, value in values.items():
                    buffers[name][:, i] = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
                per_example[i] = losses
                i += 1
                if bar is not None:
                    bar.update()
            del values, ssw, losses
            release_freed_memory()
    finally:
        if bar is not None:
            bar.close()
    ep = torch.tensor(epochs, dtype=torch.int64)
    H = model.n_heads
    labels_of = {
        "excluded_loss": [f"k={k}" for k in keys],
        "restricted_loss": ["all", "train", "test", "train_balanced"],
        "attention_to_position": [f"head={h},pos={j}" for h in range(H) for j in range(n_ctx(model))],
        "sum_sq_weights_by_param": param_names,
        "embed_fourier_norms": fo.basis_names(p),
        "embed_singular_values": [f"sv{i}" for i in range(min(p, model.d_model))],
        "trig_fraction": ["logits", "mlp_pre", "mlp_post"],
        "neuron_key_frequency": [f"k={k}" for k in candidates],
        "quadratic_fraction": [f"neuron={i}" for i in range(model.d_mlp)],
    }
    series = {name: Series(name, ep, buffers[name], tuple(labels_of.get(name, [""]))) for name in order}
    if "restricted_loss" in series:
        rl = series["restricted_loss"]
        series["trig_loss_all"] = Series("trig_loss_all", ep, rl.data[0:1])
        series["trig_loss_train"] = Series("trig_loss_train", ep, rl.data[1:2])
    ssw = series["sum_sq_weights_by_param"]
    series["sum_sq_weights"] = Series("sum_sq_weights", ep, ssw.data.sum(0, keepdim=True))
    return ep, series, per_example


def log10_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[N]`` log10 of each example's cross entropy (float64 logits ``[N, C]``), floored at 1e-12 (catalogue §3.4:
    the losses span 1e-8 … 30)."""
    losses = -logits.log_softmax(-1).gather(1, labels[:, None]).squeeze(1)
    return losses.clamp_min(1e-12).log10()


# ----------------------------------------------------------------------------- the final model, run again


def skip_and_attention_losses(run, checkpoint) -> tuple[float, float, float]:
    """Float64 cross entropy over all ``p²`` inputs of a 1-layer transformer's ``checkpoint`` as trained, with the MLP's
    skip connection removed, and with the attention heads' outputs zeroed (NCLSS App. A.1;
    :func:`claimlens.models.ablated_logits`). Returns ``(loss, mlp_skip_ablated, attention_ablated)`` in nats."""
    from claimlens.models import ablated_logits

    params, acts, cfg, labels = checkpoint.params, checkpoint.activations, run.spec.model, run.task.labels
    return (cross_entropy_f64(acts.logits, labels).item(),
            cross_entropy_f64(ablated_logits(params, acts, cfg, "mlp_skip"), labels).item(),
            cross_entropy_f64(ablated_logits(params, acts, cfg, "attention"), labels).item())


def swapped_logits(run, checkpoint, a: int, b: int) -> torch.Tensor:
    """The final-position logits ``[2, p]`` of ``checkpoint`` for ``(a, b)`` (row 0) and ``(b, a)`` (row 1), for the
    swap-invariance claim."""
    from claimlens.models import forward

    p = run.spec.task.p
    return forward(checkpoint.params, torch.tensor([[a, b, p], [b, a, p]]), run.spec.model).logits

