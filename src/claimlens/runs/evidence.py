"""What a checkpoint file says about itself, checked against its weights.

A file often holds more than weights: the losses its training loop logged, the optimizer's state, a config. The
importer uses them as evidence:

* :func:`logged_curves` places the logged loss lists on epochs (each list on its own epochs: a train loss logged
  every epoch and a test loss every 10 stay that way);
* :func:`verify_logged` recomputes each logged loss at the checkpoint epochs and refuses the import when the
  weights (or the split) do not reproduce it;
* :func:`search_split` finds a split the file does not store, by the known split rules of the sources
  (claims_catalogue §1) over plausible seeds and fractions, keeping the one that reproduces the logged train loss;
* :func:`optimizer_evidence` reads weight decay and betas from the optimizer state, to be compared with the config;
* :func:`refuse_identical_checkpoints` refuses a run whose checkpoints all hold the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from claimlens.errors import CheckpointError
from claimlens.tasks import nanda_split

# Logged and recomputed losses agree when within 5% relative (the "~5%": float32 logging, the source's
# extra '=' class in PMP's training loss) or within ABS_TOL absolute (float32 cross entropy of a memorised
# model is ~1e-7 and carries no relative precision).
REL_TOL = 0.05
ABS_TOL = 1e-5

LOSS_KEYS = {"train_losses": "train_loss", "test_losses": "test_loss"}
_EPOCH_KEYS = ("{key}_epochs", "{split}_epochs", "log_epochs", "eval_epochs")

_OFFSETS = {0: "the value logged at the checkpoint's epoch",
            1: "the value logged one epoch later (the loop logs the train loss before each step, as the "
               "TransformerLens demo does)",
            -1: "the value logged one epoch earlier (the file holds the model one optimiser step after its last "
                "logged loss)"}


@dataclass(frozen=True)
class LoggedCurve:
    """One logged list: ``name`` (``train_loss`` / ``test_loss``), the file's ``key``, and its values by epoch."""

    name: str
    key: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    epoch_source: str

    def at(self) -> dict[int, float]:
        return {e: v for e, v in zip(self.epochs, self.values) if math.isfinite(v)}


def logged_curves(data: Mapping[str, Any], checkpoint_epochs: Sequence[int], where: str
                  ) -> tuple[dict[str, LoggedCurve], list[str]]:
    """The file's loss lists placed on epochs, and notes on the lists that could not be placed.

    A list's epochs come from a companion list (``train_losses_epochs``, ``test_epochs``, ``log_epochs``,
    ``eval_epochs``) of the same length, else one value per epoch from 0 when the list reaches the last
    checkpoint's epoch; otherwise the list is kept out (claimlens does not guess a logging cadence)."""
    curves: dict[str, LoggedCurve] = {}
    notes: list[str] = []
    last = max(checkpoint_epochs) if checkpoint_epochs else 0
    for key, name in LOSS_KEYS.items():
        raw = data.get(key)
        if raw is None:
            continue
        values = _floats(raw)
        if values is None:
            notes.append(f"{key} is not a list of numbers ({type(raw).__name__}); not used")
            continue
        split = name.split("_")[0]
        for pattern in _EPOCH_KEYS:
            ek = pattern.format(key=key, split=split)
            epochs = _ints(data.get(ek))
            if epochs is not None and len(epochs) == len(values):
                curves[name] = LoggedCurve(name, key, tuple(epochs), tuple(values), f"the file's {ek!r}")
                break
        else:
            if len(values) >= last:
                curves[name] = LoggedCurve(name, key, tuple(range(len(values))), tuple(values),
                                           "one value per epoch from 0")
            else:
                notes.append(f"{key} holds {len(values)} values but the last checkpoint is epoch {last}, and no "
                             f"list such as {split}_epochs says when they were logged; not placed on epochs, not "
                             f"used")
    return curves, notes


def _floats(raw: Any) -> list[float] | None:
    if isinstance(raw, torch.Tensor):
        return [float(x) for x in raw.flatten().tolist()] if raw.numel() else None
    if not isinstance(raw, (list, tuple)) or not raw:
        return None
    try:
        return [float(x) for x in raw]
    except (TypeError, ValueError):
        return None


def _ints(raw: Any) -> list[int] | None:
    if isinstance(raw, torch.Tensor):
        raw = raw.flatten().tolist()
    if not isinstance(raw, (list, tuple)):
        return None
    try:
        return [int(x) for x in raw]
    except (TypeError, ValueError):
        return None


def agree(recomputed: float, logged: float, *, abs_tol: float = ABS_TOL) -> float:
    """The relative disagreement of two loss values (0 when within ``abs_tol``)."""
    diff = abs(recomputed - logged)
    if diff <= abs_tol:
        return 0.0
    return diff / max(abs(recomputed), abs(logged))


def verify_logged(recomputed: Mapping[str, Mapping[int, float]], logged: Mapping[str, LoggedCurve], where: str
                  ) -> dict[str, dict[str, Any]]:
    """Compare each logged curve with the loss recomputed from the weights at the checkpoint epochs.

    For each curve the offsets 0, +1 and −1 (the value logged at the checkpoint's epoch, one after, one before)
    are tried; an offset matches when every compared checkpoint agrees within 5% relative (or 1e-5 absolute).
    Returns, per curve, what matched (offset, number of checkpoints compared, worst disagreement).

    Raises :class:`CheckpointError` naming the epoch and both values when no offset matches."""
    report: dict[str, dict[str, Any]] = {}
    for name, curve in logged.items():
        table, ours = curve.at(), recomputed[name]
        tries = []
        for offset in _OFFSETS:
            pairs = [(e, ours[e], table[e + offset]) for e in sorted(ours) if e + offset in table]
            if pairs:
                worst = max(pairs, key=lambda t: agree(t[1], t[2]))
                tries.append((agree(worst[1], worst[2]), offset, len(pairs), worst))
        if not tries:
            report[name] = {"verified": False, "reason": f"{curve.key} has no value at or next to a checkpoint epoch"}
            continue
        ok = [t for t in tries if t[0] <= REL_TOL]
        err, offset, n, worst = min(ok or tries, key=lambda t: (t[0], abs(t[1])))
        if err > REL_TOL:
            detail = "; ".join(f"offset {o:+d}: epoch {w[0]} recomputed {w[1]:.6g}, logged {w[2]:.6g} at epoch "
                               f"{w[0] + o}" for _, o, _, w in sorted(tries, key=lambda t: t[0])[:3])
            raise CheckpointError(
                f"{where}: the weights do not reproduce the file's own {curve.key} (more than {REL_TOL:.0%} apart "
                f"at the logged epoch, the one after and the one before: {detail}). The split, the epochs or the "
                f"layout is not what the file's config says, or the logged values are not this model's cross "
                f"entropy. Fix the spec (--spec), or, if the logged values measure something else (a regulariser "
                f"included, another batch), pass --ignore-logged-losses")
        report[name] = {"verified": True, "key": curve.key, "matched": _OFFSETS[offset], "offset": offset,
                        "checkpoints_compared": n, "max_rel_err": err, "epoch_source": curve.epoch_source}
    return report


# ----------------------------------------------------------------------------- finding a split


def _nanda_shuffle(p: int, seed: int) -> torch.Tensor:
    return torch.cat(nanda_split(p, 0.0, seed))  # the whole shuffled order (no pair for training at fraction 0)


def _torch_randperm(p: int, seed: int) -> torch.Tensor:
    return torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))


SPLIT_RULES = {
    # catalogue §1.1 (Nanda et al.), §1.4 (hackathon MLP, seed 0), §1.6 (Peluche, seed 0xdeadbeef)
    "nanda_shuffle": _nanda_shuffle,
    # catalogue §1.2 (the TransformerLens grokking demo: torch.manual_seed(598); torch.randperm(p²))
    "torch_randperm": _torch_randperm,
}
SEARCH_SEEDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42, 598, 999, 1234, 0xDEADBEEF)
SEARCH_FRACS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class FoundSplit:
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    rule: str
    seed: int
    frac: float
    description: str


def search_split(per_example_loss: torch.Tensor, p: int, epoch: int, logged: Mapping[str, LoggedCurve], where: str,
                 *, seeds: Sequence[int] = (), fracs: Sequence[float] = ()) -> FoundSplit:
    """The split, among the known rules × seeds × fractions, whose recomputed loss at ``epoch`` reproduces the
    logged one (train, and test when logged) at the epoch, one after or one before, within 5% relative (no
    absolute floor here: the tiny train loss of a memorised model is what tells splits apart).

    ``per_example_loss`` is the cross entropy of the checkpoint at ``epoch`` on every pair ``[p²]`` (row a·p + b).
    ``seeds`` / ``fracs`` (from the file's config) are tried first, with :data:`SEARCH_SEEDS` and
    :data:`SEARCH_FRACS`. Raises :class:`CheckpointError` when no candidate or more than one matches."""
    targets = {}
    for name in ("train_loss", "test_loss"):
        if name in logged:
            table = logged[name].at()
            near = [table[epoch + o] for o in (0, 1, -1) if epoch + o in table]
            if near:
                targets[name] = near
    if "train_loss" not in targets:
        raise CheckpointError(f"{where}: the file stores no split and no logged train loss at or next to epoch "
                              f"{epoch} to find it by")
    n = p * p
    total = per_example_loss.sum().item()
    seed_list = list(dict.fromkeys([*seeds, *SEARCH_SEEDS]))
    frac_list = list(dict.fromkeys([*fracs, *SEARCH_FRACS]))
    scored = []
    for rule, make in SPLIT_RULES.items():
        for seed in seed_list:
            order = make(p, int(seed))
            cumulative = torch.cumsum(per_example_loss[order], 0)
            for frac in frac_list:
                n_train = int(frac * n)
                if not 0 < n_train < n:
                    continue
                train = cumulative[n_train - 1].item() / n_train
                test = (total - cumulative[n_train - 1].item()) / (n - n_train)
                # relative only: a memorised model's train loss (~1e-7) is what tells the splits apart
                err = max(min(agree(train, t, abs_tol=0.0) for t in targets["train_loss"]),
                          min(agree(test, t, abs_tol=0.0) for t in targets["test_loss"]) if "test_loss" in targets
                          else 0.0)
                scored.append((err, rule, int(seed), float(frac), n_train, train))
    scored.sort(key=lambda s: s[0])
    matches = [s for s in scored if s[0] <= REL_TOL]
    tried = f"{len(scored)} candidates: rules {sorted(SPLIT_RULES)} × seeds {seed_list} × fractions {frac_list}"
    logged_train = targets["train_loss"][0]
    if not matches:
        best = "; ".join(f"{r} seed {s} frac {f}: train loss {tr:.4g} ({e:.0%} off)" for e, r, s, f, _, tr in scored[:3])
        raise CheckpointError(
            f"{where}: the file stores no split, and none of {tried} reproduces its logged train loss {logged_train:.4g} "
            f"at epoch {epoch} (closest: {best}). claimlens never rebuilds a split silently: store the split in the "
            f"file, or pass --spec SPEC.toml whose [task] frac_train/split_seed give Nanda's shuffle")
    if len(matches) > 1:
        listing = "; ".join(f"{r} seed {s} frac {f}" for _, r, s, f, _, _ in matches[:5])
        one_shuffle = len({(r, s) for _, r, s, _, _, _ in matches}) == 1
        why = (f"they are one shuffle cut at different fractions, each a subset of the training set; a logged test "
               f"loss{' (the file has one) does not' if 'test_loss' in targets else ''} would tell them apart"
               if one_shuffle else "an untrained model fits every split alike")
        raise CheckpointError(
            f"{where}: the file stores no split, and {len(matches)} of {tried} reproduce its logged train loss "
            f"{logged_train:.4g} at epoch {epoch} ({listing}{'; …' if len(matches) > 5 else ''}): the losses cannot "
            f"tell them apart ({why}). claimlens never guesses: store the split in the file, or pass --spec "
            f"SPEC.toml naming it")
    err, rule, seed, frac, n_train, train = matches[0]
    order = SPLIT_RULES[rule](p, seed)
    runner_up = scored[1][0] if len(scored) > 1 else float("nan")
    description = (f"found by search: {rule} with seed {seed}, frac_train {frac} (recomputed train loss {train:.6g} "
                   f"against the logged {logged_train:.6g} at epoch {epoch}; the next best of {len(scored)} "
                   f"candidates is {runner_up:.0%} off)")
    return FoundSplit(order[:n_train].clone(), order[n_train:].clone(), rule, seed, frac, description)


SEED_SEARCH = range(100)  # the seeds tried when a stated split seed does not reproduce the logged losses


def _split_error(per_example: Mapping[int, torch.Tensor], train_idx: torch.Tensor, test_idx: torch.Tensor,
                 logged: Mapping[str, LoggedCurve]) -> tuple[float, float, int]:
    """How far a split's losses are from the logged ones: for each offset (the value logged at the checkpoint's
    epoch, one after, one before) the worst relative disagreement over the checkpoints ``per_example`` holds (epoch
    → ``[p²]`` per-pair cross entropy) and the logged curves (train, and test when logged); the best offset's.
    Returns ``(error, the recomputed train loss at the last compared checkpoint, number of comparisons)``."""
    tables = {name: logged[name].at() for name in ("train_loss", "test_loss") if name in logged}
    best = (math.inf, math.nan, 0)
    for offset in _OFFSETS:
        worst, n, train_last = 0.0, 0, math.nan
        for epoch, losses in sorted(per_example.items()):
            for name, idx in (("train_loss", train_idx), ("test_loss", test_idx)):
                table = tables.get(name)
                if table is None or epoch + offset not in table or not len(idx):
                    continue
                value = losses[idx].mean().item()
                worst, n = max(worst, agree(value, table[epoch + offset])), n + 1
                if name == "train_loss":
                    train_last = value
        if n and worst < best[0]:
            best = (worst, train_last, n)
    return best


def search_seed(per_example: Mapping[int, torch.Tensor], p: int, frac: float, stated_seed: int,
                logged: Mapping[str, LoggedCurve], where: str, *, stated_by: str = "the spec",
                seeds: Sequence[int] = SEED_SEARCH) -> dict[str, Any] | None:
    """Check that Nanda's shuffle with ``stated_seed`` at ``frac`` reproduces the logged losses at a few
    checkpoints (``per_example``: epoch → ``[p²]`` float64 cross entropy of that checkpoint on every pair, row
    a·p + b), as :func:`verify_logged` will (5% relative or 1e-5 absolute, at one offset for all); if not, try Nanda's
    shuffle at the same fraction with each of ``seeds``.

    Returns None when the stated seed reproduces them (or no logged value is comparable), else the search as
    recorded in run.json: ``{rule, frac_train, epochs, stated_seed, stated_error, found_seed, error, tried,
    runner_up_error, …}``. Raises :class:`CheckpointError` listing what was tried when no seed, or more than one,
    reproduces them."""
    if "train_loss" not in logged:
        return None
    stated_err, _, n = _split_error(per_example, *nanda_split(p, frac, stated_seed), logged)
    if n == 0 or stated_err <= REL_TOL:
        return None
    scored = sorted((*_split_error(per_example, *nanda_split(p, frac, int(s)), logged)[:2], int(s))
                    for s in seeds if s != stated_seed)
    tried = f"{seeds[0]}–{seeds[-1]}" if isinstance(seeds, range) else str(list(seeds))
    matches = [t for t in scored if t[0] <= REL_TOL]
    epochs = sorted(per_example)
    if len(matches) != 1:
        closest = "; ".join(f"seed {s}: {e:.0%} off" for e, _, s in (matches or scored)[:3])
        what = (f"{len(matches)} of them reproduce them ({closest}): the losses cannot tell them apart" if matches
                else f"none reproduces them (closest: {closest})")
        raise CheckpointError(
            f"{where}: the weights do not reproduce the file's own logged losses (at epochs {epochs}) with "
            f"{stated_by}'s split (nanda_shuffle, seed {stated_seed}, frac_train {frac:g}: {stated_err:.0%} off); of "
            f"the other seeds {tried} at frac_train {frac:g}, {what}. The split, the fraction, the epochs or the "
            f"layout is not what {stated_by} says: fix [task] frac_train/split_seed in --spec, store the split in "
            f"the file, or, if the logged values measure something else, pass --ignore-logged-losses")
    err, train, seed = matches[0]
    runner_up = next((e for e, _, s in scored if s != seed), math.nan)
    return {"rule": "nanda_shuffle", "frac_train": frac, "epochs": epochs, "stated_seed": int(stated_seed),
            "stated_error": stated_err, "found_seed": seed, "error": err, "tried": tried,
            "runner_up_error": runner_up, "recomputed_train_loss": train}


# ----------------------------------------------------------------------------- the optimizer's state


_OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optimizer_state", "opt")


def optimizer_evidence(data: Mapping[str, Any]) -> dict[str, Any]:
    """``weight_decay``, ``betas`` and ``initial_lr`` of the optimizer state saved in the file (its first param
    group), where present; ``{}`` when the file holds no optimizer state."""
    for key in _OPTIMIZER_KEYS:
        state = data.get(key)
        groups = state.get("param_groups") if isinstance(state, Mapping) else None
        if isinstance(groups, (list, tuple)) and groups and isinstance(groups[0], Mapping):
            g = groups[0]
            out: dict[str, Any] = {"key": key}
            if isinstance(g.get("weight_decay"), (int, float)):
                out["weight_decay"] = float(g["weight_decay"])
            betas = g.get("betas")
            if isinstance(betas, (list, tuple)) and len(betas) == 2:
                out["betas"] = [float(b) for b in betas]
            if isinstance(g.get("initial_lr"), (int, float)):
                out["lr"] = float(g["initial_lr"])
            return out
    return {}


# ----------------------------------------------------------------------------- checkpoints that never change


def refuse_identical_checkpoints(fingerprints: Sequence[str], epochs: Sequence[int], where: str) -> None:
    """Refuse a run of several checkpoints that all hold the same weights."""
    if len(fingerprints) > 1 and len(set(fingerprints)) == 1:
        raise CheckpointError(
            f"{where}: all {len(fingerprints)} checkpoints (epochs {epochs[0]} … {epochs[-1]}) hold the same weights "
            f"(fingerprint {fingerprints[0][:12]}). The likely cause: the training loop appended model.state_dict() "
            f"without copy.deepcopy, so every entry refers to the final weights. Re-save the checkpoints with "
            f"copy.deepcopy(model.state_dict()) (or one torch.save per checkpoint)")


# ----------------------------------------------------------------------------- does the model fit its stated split?


def spread(n: int, k: int) -> list[int]:
    """Up to ``k`` indices of ``n`` checkpoints, evenly spread, the first and the last included: where the import
    checks a stated seed or split (memorisation tells splits apart, a generalised model does not)."""
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if n > 1 and k > 1 else [max(n - 1, 0)]


FIT_MIN_TRAIN_ACC = 0.9  # a model trained on a split fits it (full batch: memorised within a few hundred epochs)
FIT_MARGIN = 0.1  # … and fits it better than the held-out pairs by more than this, unless it fits the split already
FIT_CHANCE_Z = 5.0  # "fits a set of pairs": accuracy on all pairs this many binomial standard errors above 1/p


@dataclass(frozen=True)
class SplitFit:
    """Accuracy of one checkpoint on the stated training set, its complement and all pairs, and what they say."""

    epoch: int
    train_acc: float
    test_acc: float
    all_acc: float
    verdict: str  # "fits" (the stated split), "chance" (learnt nothing yet), "mismatch" (fits other pairs)

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "train_acc": self.train_acc, "test_acc": self.test_acc, "all_acc": self.all_acc,
                "verdict": self.verdict}


def split_fit(epoch: int, train_acc: float, test_acc: float, n_train: int, n_test: int, p: int) -> SplitFit:
    """Whether a checkpoint's accuracies fit the split it is said to have been trained on.

    * ``chance``: accuracy on all pairs within :data:`FIT_CHANCE_Z` standard errors of 1/p (an untrained model, a
      negative control): no evidence either way;
    * ``fits``: train accuracy ≥ :data:`FIT_MIN_TRAIN_ACC`, or above the test accuracy by more than
      :data:`FIT_MARGIN` (a model part way through memorising its training set);
    * ``mismatch``: it fits pairs above chance, but its stated training pairs no better than the held-out ones —
      positive evidence that the split (or the layout, or p) is not what the model was trained on."""
    n = n_train + n_test
    all_acc = (train_acc * n_train + test_acc * n_test) / n
    chance = 1.0 / p
    if all_acc <= chance + FIT_CHANCE_Z * math.sqrt(chance * (1 - chance) / n):
        verdict = "chance"
    elif train_acc >= FIT_MIN_TRAIN_ACC or train_acc > test_acc + FIT_MARGIN:
        verdict = "fits"
    else:
        verdict = "mismatch"
    return SplitFit(epoch, train_acc, test_acc, all_acc, verdict)


def refuse_split_mismatch(fits: Sequence[SplitFit], split_rule: str, where: str) -> None:
    """Refuse, with the evidence and the likely causes, when a checked checkpoint fits pairs that are plainly not
    its stated training set (:func:`split_fit` says ``mismatch``)."""
    bad = [f for f in fits if f.verdict == "mismatch"]
    if not bad:
        return
    worst = max(bad, key=lambda f: f.all_acc - f.train_acc + f.test_acc)
    evidence = "; ".join(f"epoch {f.epoch}: train {f.train_acc:.3f}, test {f.test_acc:.3f}, all {f.all_acc:.3f}"
                         for f in bad[:4])
    raise CheckpointError(
        f"{where}: the model does not fit the split it is said to have ({split_rule}): at epoch {worst.epoch} it gets "
        f"{worst.all_acc:.1%} of all pairs right but {worst.train_acc:.1%} of its stated training pairs and "
        f"{worst.test_acc:.1%} of the held-out ones ({evidence}); a model fits its own training set first. Likely "
        f"causes: the split (another rule or seed, e.g. torch.randperm; frac_train), the layout, weights processed by "
        f"an analysis library, or the wrong p. Store the split with the checkpoints (train_indices / test_indices), "
        f"fix [task] in the spec, or import with --split-unknown to judge only the claims computed on all pairs")


# ----------------------------------------------------------------------------- weights processed by an analysis library

PROCESSED_RTOL = 1e-5  # a mean this small relative to the entries' scale is a centring, not training


def _centred(w: torch.Tensor, dim: int) -> float:
    """``max |mean over dim| / mean |w|``: ~1e-7 for a tensor centred along ``dim`` in float32, ~0.1 for trained
    weights."""
    w = w.detach().double()
    scale = w.abs().mean().item()
    return math.inf if scale == 0 else w.mean(dim).abs().max().item() / scale


def processing_signatures(params: Mapping[str, torch.Tensor], n_layers: int = 1) -> dict[str, dict[str, float]]:
    """The signatures TransformerLens's weight processing leaves in property-format weights (each a tensor centred
    to float precision along ``d_model`` or the vocabulary, which training does not do):

    * ``center_writing_weights``: every weight writing to the residual stream (``W_E``, ``W_pos``, ``W_O``,
      ``W_out``) has zero mean over ``d_model``;
    * ``fold_ln`` (with its centring of the reading weights): ``W_Q``, ``W_K``, ``W_V``, ``W_in`` have zero mean over
      their ``d_model`` axis — a folded LayerNorm model has exactly the keys of a LayerNorm-free one;
    * ``center_unembed``: ``W_U`` has zero mean over the output vocabulary.

    Returns the signatures found: name → {tensor name: relative mean}; empty for trained weights."""
    def layers(names):
        return [f"blocks.{i}.{n}" for i in range(n_layers) for n in names]

    checks = {
        "center_writing_weights": [("embed.W_E", -1), ("pos_embed.W_pos", -1),
                                   *[(k, -1) for k in layers(["attn.W_O", "mlp.W_out"])]],
        "fold_ln": [*[(k, -2) for k in layers(["attn.W_Q", "attn.W_K", "attn.W_V", "mlp.W_in"])]],
        "center_unembed": [("unembed.W_U", -1)],
    }
    found = {}
    for name, tensors in checks.items():
        values = {k: _centred(params[k], dim) for k, dim in tensors if k in params and params[k].numel() > 1}
        if values and all(v < PROCESSED_RTOL for v in values.values()):
            found[name] = values
    return found


def refuse_processed(params: Mapping[str, torch.Tensor], n_layers: int, where: str) -> None:
    """Refuse weights that carry the signature of TransformerLens's processing (:func:`processing_signatures`):
    read as the spec says, they are not the model that was trained."""
    found = processing_signatures(params, n_layers)
    if not found:
        return
    detail = "; ".join(f"{name} ({', '.join(f'{k} mean/scale {v:.0e}' for k, v in list(vals.items())[:3])})"
                       for name, vals in found.items())
    raise CheckpointError(
        f"{where}: the weights carry the signature of processing by an analysis library, not of training: "
        f"{detail}. TransformerLens's fold_ln / center_writing_weights / center_unembed leave exactly these (a "
        f"folded LayerNorm model has the keys of a LayerNorm-free one), and the processed tensors read as the spec "
        f"says are another function. Save the state dict of the model as trained (before processing; in "
        f"TransformerLens load it with fold_ln=False, center_writing_weights=False, center_unembed=False) and import "
        f"that")
