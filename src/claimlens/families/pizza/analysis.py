"""Pizza-or-clock measures of a run's checkpoints (claims_catalogue §3.3): gradient symmetricity, distance
irrelevance and the hackathon's Fourier-mode test, from the model's gradients and activations
(:mod:`claimlens.families.pizza.metrics` holds the definitions).

Cheap (the checkpoint's one forward over the ``p²`` pairs, shared with the other analyses for the final checkpoint,
and one backward over 100 triples): computed on demand, not cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from claimlens.core.checkpoint import FinalCheckpoints, checkpoint
from claimlens.core.sampling import sampled_epochs
from claimlens.core.series import Series
from claimlens.families.pizza import metrics as pz
from claimlens.models import Activations, Params, forward, sequence_forward
from claimlens.tasks import grid_tokens

MODE_TEST_A = 17  # the fixed first operand of the hackathon's pizza_vs_clock_exp.py


def embedding_gradients(params: Params, cfg, triples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``[n, d]`` of logit ``c`` with respect to the embedding vectors of ``a`` and of ``b`` (before the
    positional embedding), for ``triples [n, 3] = (a, b, c)`` (Zhong et al. 2023, Def. 4.1)."""
    W_E = params["embed.W_E"].detach().to(torch.float32)
    a, b, c = triples.unbind(1)
    if cfg.kind == "transformer":
        rows = [W_E[a], W_E[b]] + ([W_E[torch.full_like(a, W_E.shape[0] - 1)]] if cfg.equals_token else [])
        emb = torch.stack(rows, 1).requires_grad_(True)  # [n, pos, d]
        logits = sequence_forward(params, emb, cfg)
        (grad,) = torch.autograd.grad(logits.gather(1, c[:, None]).sum(), emb)
        return grad[:, 0], grad[:, 1]
    e_a, e_b = W_E[a].clone().requires_grad_(True), W_E[b].clone().requires_grad_(True)
    h = e_a + e_b if cfg.combine == "sum" else torch.cat([e_a, e_b], -1)
    logits = _mlp_from_hidden_input(params, cfg, h)
    grad_a, grad_b = torch.autograd.grad(logits.gather(1, c[:, None]).sum(), (e_a, e_b))
    return grad_a, grad_b


def _mlp_from_hidden_input(params: Params, cfg, h: torch.Tensor, *, pre_unembed: bool = False) -> torch.Tensor:
    act = torch.nn.functional.gelu if cfg.act_fn == "gelu" else torch.nn.functional.relu
    for i in range(len(cfg.hidden)):
        h = act(h @ params[f"mlp.{i}.W"] + params[f"mlp.{i}.b"])
    return h if pre_unembed else h @ params["unembed.W_U"] + params["unembed.b_U"]


def pre_unembed(params: Params, cfg, tokens: torch.Tensor, acts: Activations | None = None) -> torch.Tensor:
    """The activations the unembedding reads, ``[batch, d]``: the final residual stream of the transformer (after its
    last block, any depth), the last hidden layer of an MLP. ``acts``: the forward pass of ``tokens`` already made with ``cache=True`` (the
    shared :class:`claimlens.core.checkpoint.Checkpoint`'s), reused where it holds what is needed."""
    with torch.no_grad():
        if cfg.kind == "transformer":
            acts = acts if acts is not None else forward(params, tokens, cfg, cache=True)
            last = f"blocks.{cfg.n_layers - 1}.mlp."  # the activations are the last block's
            return acts.resid_mid + acts.mlp_post @ params[last + "W_out"] + params[last + "b_out"]
        if acts is not None and len(cfg.hidden) == 1:
            return acts.mlp_post
        W_E = params["embed.W_E"]
        e_a, e_b = W_E[tokens[:, 0]], W_E[tokens[:, 1]]
        h = e_a + e_b if cfg.combine == "sum" else torch.cat([e_a, e_b], -1)
        return _mlp_from_hidden_input(params, cfg, h, pre_unembed=True)


def embedding_circularity(params: Params, p: int) -> float:
    """G-CIRC (:func:`claimlens.families.pizza.metrics.circularity`) of the number tokens' embedding ``W_E[:p]``;
    NaN for an embedding with fewer than four directions of non-zero variance (it cannot hold two circles)."""
    try:
        return pz.circularity(params["embed.W_E"][:p])
    except ValueError:
        return float("nan")


def measure(params: Params, cfg, p: int, acts: Activations, labels: torch.Tensor) -> dict:
    """GS, DI (Def. 4.2, correct logit), train-main.py's DI of the largest incorrect logit (``di_top_incorrect``),
    the embedding's circularity and the mode test of one checkpoint, from its forward pass over every pair
    (``acts``: ``cache=True``, rows in the order ``a·p + b`` of :func:`claimlens.tasks.grid_tokens`; ``labels [p²]``).
    Only the gradients of G-GS need a pass of their own (a backward over 100 triples)."""
    ga, gb = embedding_gradients(params, cfg, pz.gs_triples(p))
    correct = acts.logits.gather(1, labels[:, None]).view(p, p)
    a = MODE_TEST_A % p
    rows = slice(a * p, (a + 1) * p)  # a fixed, b = 0 … p − 1
    fixed = pre_unembed(params, cfg, grid_tokens(p), acts)[rows]
    mode = pz.pizza_mode_test(params["embed.W_E"][:p], fixed)
    return {"gs": pz.gradient_symmetricity(ga, gb), "di": pz.distance_irrelevance(correct),
            "di_top_incorrect": pz.distance_irrelevance_top_incorrect(acts.logits, labels),
            "circularity": embedding_circularity(params, p), **mode,
            "pre_unembed_modes": pz.fourier_modes(fixed)[: p // 2 + 1],
            "embedding_modes": pz.fourier_modes(params["embed.W_E"][:p])[: p // 2 + 1]}


def measure_checkpoint(ckpt) -> dict:
    """:func:`measure` of a :class:`claimlens.core.checkpoint.Checkpoint` (its one forward pass reused)."""
    run = ckpt.run
    return measure(ckpt.params, run.spec.model, run.spec.task.p, ckpt.activations, run.task.labels)


def final_test_accuracy(run) -> float:
    """The accuracy on the held-out pairs at the last logged epoch of a trained run (fraction; NaN when the run logs
    none, e.g. an import whose split is unknown)."""
    try:
        test_acc = run.log()["test_acc"]
    except (KeyError, FileNotFoundError):
        return float("nan")
    return float(test_acc[-1]) if len(test_acc) else float("nan")


def sweep_runs(run_set, axis: str = "model.attn_rate", checkpoints: FinalCheckpoints | None = None) -> list:
    """The members of ``run_set`` as :class:`claimlens.families.pizza.rules.SweepRun` along ``axis``, for the set
    claim about the attention rate (catalogue Revision 3).

    * A trained member (weights): from its final checkpoint (``checkpoints``: the session's, shared with the
      per-run claims) its gradient symmetricity, circularity (:func:`claimlens.families.pizza.metrics.circularity`
      of ``W_E[:p]``) and distance irrelevance of the largest incorrect logit; its final test accuracy; its number
      of layers (1 unless its model says otherwise). Its sweep is the set's name.
    * A row of a sweep table (no weights; ``measured`` holds what the source measured): those values, its inputs
      (``eqn_sign``, ``diff_vocab``) and its sweep, the ``table`` its member values name.

    Raises ``ValueError`` for a member that is neither (curves only: nothing to read GS from)."""
    from claimlens.core.checkpoint import final_checkpoint
    from claimlens.families.pizza.rules import SweepRun

    out = []
    for values, run in run_set.members:
        rate = float(values[axis])
        if run.has_weights:
            ckpt = final_checkpoint(run, checkpoints)
            model = run.spec.model
            m = measure_checkpoint(ckpt)
            out.append(SweepRun(
                rate=rate, gs=float(m["gs"]), accuracy=final_test_accuracy(run),
                circularity=float(m["circularity"]), n_layers=int(getattr(model, "n_layers", 1)),
                di_top_incorrect=float(m["di_top_incorrect"]),
                sweep=run_set.name, name=run.name))
            continue
        measured = getattr(run, "measured", None)
        if not measured:
            raise ValueError(f"run set {run_set.name!r}: member {run.name!r} has neither weights nor measured values "
                             f"(a curves-only run): gradient symmetricity cannot be read from it")
        out.append(SweepRun(
            rate=rate, gs=measured["gradient_sim"], accuracy=measured["validation_accuracy"],
            circularity=measured["circularity"], n_layers=int(values.get("model.n_layers", 1)),
            standard_inputs=values.get("eqn_sign", 0) == 0 and values.get("diff_vocab", 0) == 0,
            di_top_incorrect=measured.get("distance_irrelevance_top_incorrect"),
            sweep=str(values.get("table", run_set.name)), name=run.name))
    return out


@dataclass
class PizzaClockMeasures:
    """GS, DI, the DI of the largest incorrect logit, the embedding's circularity (NaN where undefined) and the
    mode-test ratio ``m_2k / m_k`` per checkpoint (``[n]`` each, float64), and the folded Fourier spectra
    ``[p // 2 + 1]`` of the final checkpoint's embedding and pre-unembedding activations."""

    epochs: list[int]
    gs: torch.Tensor
    di: torch.Tensor
    mode_ratio: torch.Tensor
    final: dict = field(default_factory=dict)
    di_top_incorrect: torch.Tensor | None = None
    circularity: torch.Tensor | None = None

    SERIES = ("gradient symmetricity", "distance irrelevance", "distance irrelevance of the largest incorrect logit",
              "circularity of the embedding", "pre-unembed mode ratio m_2k / m_k")

    def series(self, name: str) -> Series:
        values = {"gradient symmetricity": self.gs, "distance irrelevance": self.di,
                  "distance irrelevance of the largest incorrect logit": self.di_top_incorrect,
                  "circularity of the embedding": self.circularity,
                  "pre-unembed mode ratio m_2k / m_k": self.mode_ratio}[name]
        return Series.of(name, self.epochs, values)


def pizza_clock_over_run(run, max_checkpoints: int = 16, checkpoints: FinalCheckpoints | None = None) \
        -> PizzaClockMeasures:
    """The measures at up to ``max_checkpoints`` checkpoints spread evenly over ``run`` (first and last
    included; the final one the one ``checkpoints`` keeps, the session's, if given)."""
    epochs = sampled_epochs(run, max_checkpoints)
    rows = [measure_checkpoint(checkpoint(run, e, checkpoints)) for e in epochs]
    return PizzaClockMeasures(
        epochs=list(epochs),
        gs=torch.tensor([r["gs"] for r in rows], dtype=torch.float64),
        di=torch.tensor([r["di"] for r in rows], dtype=torch.float64),
        mode_ratio=torch.tensor([r["ratio"] for r in rows], dtype=torch.float64),
        final=rows[-1],
        di_top_incorrect=torch.tensor([r["di_top_incorrect"] for r in rows], dtype=torch.float64),
        circularity=torch.tensor([r["circularity"] for r in rows], dtype=torch.float64),
    )


N_CIRCLES = 3  # the source fits the circles of principal-component pairs (0, 1), (2, 3), (4, 5) …
N_ACCOMPANYING = 3  # … and looks for accompanying circles in (6, 7), (8, 9), (10, 11)


@dataclass(frozen=True)
class CircleFit:
    """One embedding circle of the final model: its principal components, frequency ``k`` (folded) and the Logit
    FVE of the model run with only that circle kept, by the pizza and the clock formula (an accompanying circle:
    by the accompanying-pizza formula of the circle it accompanies, ``pizza``; ``clock`` is None)."""

    components: tuple[int, int]
    k: int
    pizza: float
    clock: float | None
    accompanies: int | None = None  # for an accompanying circle: the frequency of the circle it accompanies


def formula_fits(params: Params, cfg, p: int) -> list[CircleFit]:
    """The source's "Logit FVE" procedure (Zhong et al. 2023 §4; eval-main.ipynb, commit b78c0e6) on a
    transformer: for each of the first ``N_CIRCLES`` principal-component pairs of the token embedding, the model
    run on all ``p²`` pairs with the embedding replaced by that circle (:func:`claimlens.families.pizza.metrics.
    circle_embedding`; the '=' row, if any, unchanged), its ``[p, p, p]`` logits scored by the pizza and the clock
    formula at the circle's frequency. The next ``N_ACCOMPANYING`` pairs whose frequency is ``2k`` (folded) of a
    circle's ``k`` are scored by the accompanying formula at ``k``; pairs at other frequencies are left out."""
    W_E = params["embed.W_E"]
    tokens = grid_tokens(p)  # [a, b, =]; a model without '=' reads [a, b]

    def logits_with(components):
        emb = W_E.detach().clone()
        emb[:p] = pz.circle_embedding(W_E[:p], components).to(W_E.dtype)
        with torch.no_grad():
            out = forward({**params, "embed.W_E": emb}, tokens, cfg).logits
        return out[:, :p].reshape(p, p, p)

    fits = []
    for u in range(N_CIRCLES):
        comps = (2 * u, 2 * u + 1)
        k = pz.circle_frequency(W_E[:p], comps)
        logits = logits_with(comps)
        fits.append(CircleFit(comps, k, pz.logit_fve(logits, pz.pizza_template(p, k)),
                              pz.logit_fve(logits, pz.clock_template(p, k))))
    doubled = {pz.fold(2 * f.k, p): f.k for f in fits}
    for u in range(N_CIRCLES, N_CIRCLES + N_ACCOMPANYING):
        comps = (2 * u, 2 * u + 1)
        k2 = pz.circle_frequency(W_E[:p], comps)
        if k2 in doubled:
            k = doubled[k2]
            fits.append(CircleFit(comps, k2, pz.logit_fve(logits_with(comps), pz.accompanying_template(p, k)),
                                  None, accompanies=k))
    return fits
