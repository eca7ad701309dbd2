"""Every progress measure over every checkpoint of a run, as per-epoch series, cached on disk.

One forward pass per checkpoint (the fast path, over all ``p²`` inputs) is shared by every metric
that needs activations. Key frequencies are fixed from the final checkpoint (G-KEY rule 1 by
default) and reused for all epochs. Results are cached per (run content hash, metric-set version,
arguments) under ``<cache dir>/series/``, so a second evaluation of the same run recomputes nothing.

Series names (stable; used by claims, reports and baselines):

=============================  ==========================================  ===========================
name                           what                                        labels
=============================  ==========================================  ===========================
``train_loss`` ``test_loss``   float64 CE of the analysis logits            –
``train_acc`` ``test_acc``     accuracy                                     –
``excluded_loss``              train loss without one key frequency         ``k=14`` per key
``excluded_loss_all_keys``     train loss without all key frequencies       –
``restricted_loss``            loss of key-frequency-only logits            ``all`` ``train`` ``test``
``trig_loss_all``              = restricted loss on all pairs (Colab name)  –
``trig_loss_train``            = restricted loss on the train pairs         –
``attention_to_position``      mean attention of ``=`` to each position     ``head=h,pos=j``
``sum_sq_weights``             Σθ² over all parameters                      –
``sum_sq_weights_by_param``    Σθ² per parameter                            parameter name
``embed_fourier_norms``        squared norms of the rows of ``F @ W_E``     basis names
``embed_singular_values``      singular values of ``W_E[:p]``               ``sv0`` …
``gini_W_E`` ``gini_W_L``      Gini of the Fourier row norms                –
``trig_fraction``              G-TRIGFRAC of logits and MLP activations     ``logits`` ``mlp_pre`` ``mlp_post``
=============================  ==========================================  ===========================
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from claimlens.config import canonical_json
from claimlens.metrics import fourier as fo
from claimlens.metrics import progress as pm
from claimlens.metrics.losses import accuracy, cross_entropy_f64
from claimlens.models import forward

METRICS_VERSION = 1


@dataclass(frozen=True)
class SeriesSet:
    """One named metric over epochs: ``values [n_labels, n_epochs]`` (one row per label)."""

    name: str
    epochs: torch.Tensor  # [n_epochs] int64
    values: torch.Tensor  # [n_labels, n_epochs] float64
    labels: list[str] = field(default_factory=lambda: [""])

    def row(self, label: str = "") -> torch.Tensor:
        try:
            return self.values[self.labels.index(label)]
        except ValueError:
            raise KeyError(f"series {self.name!r} has no label {label!r}; labels: {self.labels[:8]}") from None


@dataclass
class RunSeries:
    """All series of one run plus what they depend on (key frequencies and how they were found)."""

    epochs: torch.Tensor
    keys: fo.KeyFrequencies
    series: dict[str, SeriesSet]
    from_cache: bool = False

    def __getitem__(self, name: str) -> SeriesSet:
        if name not in self.series:
            raise KeyError(f"no series {name!r}; known: {sorted(self.series)}")
        return self.series[name]


def final_key_frequencies(run, rule: str = "neuron_cluster_argmax") -> fo.KeyFrequencies:
    """Key frequencies of the final checkpoint (rule 1 on MLP post-activations by default)."""
    p, model = run.spec.task.p, run.spec.model
    params = run.final()
    if rule == "neuron_cluster_argmax":
        acts = forward(params, run.task.tokens, model, cache=True)
        return fo.key_frequencies_from_neurons(acts.mlp_post, p, fo.frequencies(p))
    if rule == "embedding_norm":
        return fo.key_frequencies_by_norm(fo.fft_tokens(params["embed.W_E"][:p].double(), fo.fourier_basis(p)), p, rule)
    raise ValueError(f"unknown key-frequency rule {rule!r}; use 'neuron_cluster_argmax' or 'embedding_norm'")


def series_cache_path(run, args: dict) -> Path:
    from claimlens.runs.builtin import cache_dir

    digest = hashlib.sha256(canonical_json({"v": METRICS_VERSION, "args": args}).encode()).hexdigest()[:16]
    return cache_dir() / "series" / run.content_hash[:32] / f"{digest}.safetensors"


def evaluate(run, *, keys: list[int] | None = None, key_rule: str = "neuron_cluster_argmax", cache: bool = True,
             progress: bool = False) -> RunSeries:
    """Series of every metric over every checkpoint of ``run`` (a transformer run)."""
    if run.spec.model.kind != "transformer":
        raise ValueError(f"run {run.name!r} is a {run.spec.model.kind}; the progress measures need the transformer")
    kf = final_key_frequencies(run, key_rule) if keys is None else fo.KeyFrequencies(sorted(keys), "given", [])
    args = {"keys": kf.keys, "rule": kf.rule}
    path = series_cache_path(run, args)
    if cache and path.is_file():
        loaded = _load(path)
        if loaded is not None:
            return RunSeries(loaded[0], kf, loaded[1], from_cache=True)
    epochs, series = _compute(run, kf.keys, progress)
    if cache:
        _save(path, epochs, series)
    return RunSeries(epochs, kf, series)


@torch.no_grad()
def _compute(run, keys: list[int], progress: bool):
    p, model, task = run.spec.task.p, run.spec.model, run.task
    tokens, labels = task.tokens, task.labels
    tr, te = task.train_idx, task.test_idx
    names = {n: [] for n in ("train_loss", "test_loss", "train_acc", "test_acc", "excluded_loss",
                             "excluded_loss_all_keys", "restricted_loss", "attention_to_position",
                             "sum_sq_weights_by_param", "embed_fourier_norms", "embed_singular_values",
                             "gini_W_E", "gini_W_L", "trig_fraction")}
    epochs = run.epochs
    iterator = epochs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(epochs, desc=f"metrics {run.name}", unit="ckpt")
    basis = fo.fourier_basis(p)
    param_names = None
    for epoch in iterator:
        params = run.checkpoint(epoch)
        acts = forward(params, tokens, model, cache=True)
        L = acts.logits.to(torch.float64)
        names["train_loss"].append(cross_entropy_f64(L[tr], labels[tr]))
        names["test_loss"].append(cross_entropy_f64(L[te], labels[te]))
        names["train_acc"].append(accuracy(L[tr], labels[tr]))
        names["test_acc"].append(accuracy(L[te], labels[te]))
        names["excluded_loss"].append(pm.excluded_loss(L, labels, tr, keys, p))
        names["excluded_loss_all_keys"].append(pm.excluded_loss_all_keys(L, labels, tr, keys, p))
        restricted = pm.restricted_logits(L, keys, p)
        names["restricted_loss"].append(torch.stack([cross_entropy_f64(restricted, labels),
                                                     cross_entropy_f64(restricted[tr], labels[tr]),
                                                     cross_entropy_f64(restricted[te], labels[te])]))
        names["attention_to_position"].append(pm.attention_to_position(acts.pattern).flatten())
        ssw = pm.sum_sq_weights(params)
        param_names = [n for n in ssw if n != "total"]
        names["sum_sq_weights_by_param"].append(torch.tensor([ssw[n] for n in param_names], dtype=torch.float64))
        W_E = params["embed.W_E"].to(torch.float64)
        coef = fo.fft_tokens(W_E[:p], basis)
        names["embed_fourier_norms"].append(coef.pow(2).sum(-1))
        names["embed_singular_values"].append(torch.linalg.svdvals(W_E[:p]))
        names["gini_W_E"].append(pm.gini(coef.norm(dim=-1)))
        W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
        names["gini_W_L"].append(pm.gini(fo.fft_tokens(W_L, basis).norm(dim=-1)))
        names["trig_fraction"].append(torch.stack([pm.trig_variance_fraction(x, keys, p)
                                                   for x in (L, acts.mlp_pre, acts.mlp_post)]))
    ep = torch.tensor(epochs, dtype=torch.int64)
    H = model.n_heads
    labels_of = {
        "excluded_loss": [f"k={k}" for k in keys],
        "restricted_loss": ["all", "train", "test"],
        "attention_to_position": [f"head={h},pos={j}" for h in range(H) for j in range(3)],
        "sum_sq_weights_by_param": param_names,
        "embed_fourier_norms": fo.basis_names(p),
        "embed_singular_values": [f"sv{i}" for i in range(min(p, model.d_model))],
        "trig_fraction": ["logits", "mlp_pre", "mlp_post"],
    }
    series: dict[str, SeriesSet] = {}
    for name, cols in names.items():
        values = torch.stack([torch.as_tensor(c, dtype=torch.float64).reshape(-1) for c in cols], dim=1)
        series[name] = SeriesSet(name, ep, values, labels_of.get(name, [""]))
    rl = series["restricted_loss"]
    series["trig_loss_all"] = SeriesSet("trig_loss_all", ep, rl.values[0:1], [""])
    series["trig_loss_train"] = SeriesSet("trig_loss_train", ep, rl.values[1:2], [""])
    ssw = series["sum_sq_weights_by_param"]
    series["sum_sq_weights"] = SeriesSet("sum_sq_weights", ep, ssw.values.sum(0, keepdim=True), [""])
    return ep, series


def _save(path: Path, epochs: torch.Tensor, series: dict[str, SeriesSet]) -> None:
    from claimlens.runs.store import save_tensors

    tensors = {"__epochs__": epochs, **{name: s.values.clone() for name, s in series.items()}}
    meta = {"labels": json.dumps({name: s.labels for name, s in series.items()}), "version": str(METRICS_VERSION)}
    save_tensors(path, tensors, metadata=meta)


def _load(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata()
            labels = json.loads(meta["labels"])
            epochs = fh.get_tensor("__epochs__")
            series = {name: SeriesSet(name, epochs, fh.get_tensor(name), labels[name]) for name in labels}
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None
    return epochs, series
