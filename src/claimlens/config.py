"""Run specs: what to train, as frozen dataclasses that round-trip through TOML/JSON.

A *spec* says everything needed to reproduce a run: the task (modular addition mod ``p`` and its
split), the model, and the training recipe. Specs live as TOML files in ``fixtures/``::

    name = "default"
    [task]
    p = 53
    frac_train = 0.4
    [model]
    kind = "transformer"
    d_model = 128
    [train]
    epochs = 4000

Unknown keys and out-of-range values raise :class:`~claimlens.errors.SpecError` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from claimlens.errors import SpecError

SPEC_SCHEMA_VERSION = 1


def _fixtures() -> Path:
    """Where the built-in specs are: ``claimlens/fixtures`` in an installed wheel (the repository's top-level
    ``fixtures/``, mapped into the package at build time: setup.py), else the top-level ``fixtures/`` of the clone
    this module runs from (``src/claimlens/config.py`` → ``fixtures/``, with an editable install or PYTHONPATH=src)."""
    here = Path(__file__).resolve().parent
    installed = here / "fixtures"
    return installed if installed.is_dir() else here.parents[1] / "fixtures"


# The built-in specs (the default run, the families' built-in runs, negative controls, sweeps): the one place
# claimlens looks for them.
FIXTURES = _fixtures()


_TASK_TEXT = "must be 'modular_addition' or 'repeated_subsequence'"
_MODEL_TEXT = "must be 'transformer', 'mlp' or 'attn_only'"


@dataclass(frozen=True)
class ModularAdditionTask:
    """``kind = "modular_addition"`` (the default): ``(a + b) mod p`` on all ``p²`` pairs (row ``a·p + b``).
    The split is Nanda's rule: shuffle the row indices with Python's ``random.Random(split_seed)``
    and take the first ``int(frac_train · p²)`` as train (for p=113, seed 0 this is the paper's split).
    """

    kind: Literal["modular_addition"] = "modular_addition"
    p: int = 113
    frac_train: float = 0.3
    split_seed: int = 0

    # what a key of another task kind means here (accepted at today's default, refused otherwise)
    FOREIGN: ClassVar[str] = "is a setting of the repeated-subsequence task (kind = 'repeated_subsequence'); remove it"

    @property
    def is_sequences(self) -> bool:
        """Whether this is the induction task (sequences, next-token prediction): no."""
        return False

    def validate(self) -> None:
        _check(self.kind == "modular_addition", "task.kind", _TASK_TEXT, self.kind)
        _check(isinstance(self.p, int) and self.p >= 3, "task.p", "must be an integer ≥ 3", self.p)
        _check(0.0 < self.frac_train < 1.0, "task.frac_train", "must be in (0, 1)", self.frac_train)


@dataclass(frozen=True)
class RepeatedSubsequenceTask:
    """``kind = "repeated_subsequence"`` (the induction toy, claims_catalogue §3.6): sequences of ``seq_len`` tokens
    over ``d_vocab`` in which a random subsequence of ``repeat_len`` tokens occurs ``n_repeats`` times, at random
    places, among random tokens (:class:`claimlens.tasks.RepeatedSubsequence` defines the layout and the scored
    positions). ``n_sequences = 0``: fresh sequences at every step; ``n_sequences = N``: a finite training set of
    ``N`` sequences, drawn once from ``split_seed``. Modular addition's ``p`` and ``frac_train`` are not settings.

    ``max_gap`` (``G``, catalogue Revision 3): the number of random tokens between consecutive repeats is uniform in
    ``0 … G``, each gap on its own (0: a repeat right after the previous one). Unset: the largest that fits,
    ``(seq_len − n_repeats·repeat_len) // (n_repeats − 1)`` (18 for the defaults). ``-1``: the first layout (at
    least one random token before each later repeat, fixed-sum gaps), which a run directory written before
    ``max_gap`` existed was trained on; its spec reads with ``-1`` and keeps its hash.
    """

    kind: Literal["repeated_subsequence"] = "repeated_subsequence"
    split_seed: int = 0
    d_vocab: int = 128
    seq_len: int = 85
    repeat_len: int = 16
    n_repeats: int = 3
    n_sequences: int = 0
    max_gap: int | None = None

    FOREIGN: ClassVar[str] = "is a modular-addition setting; the repeated-subsequence task does not use it (remove it)"

    def __post_init__(self) -> None:
        if self.max_gap is None and all(isinstance(getattr(self, k), int) for k in ("seq_len", "repeat_len", "n_repeats")):
            fit = (self.seq_len - self.n_repeats * self.repeat_len) // max(self.n_repeats - 1, 1)
            object.__setattr__(self, "max_gap", max(fit, 0))

    @property
    def is_sequences(self) -> bool:
        """Whether this is the induction task (sequences, next-token prediction): yes."""
        return True

    def validate(self) -> None:
        _check(self.kind == "repeated_subsequence", "task.kind", _TASK_TEXT, self.kind)
        for key in ("d_vocab", "seq_len", "repeat_len", "n_repeats"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value >= 2, f"task.{key}", "must be an integer ≥ 2", value)
        legacy = self.max_gap == LEGACY_GAPS
        spaced = self.n_repeats - 1 if legacy else 0
        _check(self.n_repeats * self.repeat_len + spaced <= self.seq_len, "task.seq_len",
               "must hold n_repeats · repeat_len tokens" + (" and a random token between repeats" if legacy else "")
               + f" (≥ {self.n_repeats * self.repeat_len + spaced})", self.seq_len)
        free = self.seq_len - self.n_repeats * self.repeat_len
        _check(isinstance(self.max_gap, int) and not isinstance(self.max_gap, bool)
               and (legacy or 0 <= self.max_gap <= free // (self.n_repeats - 1)), "task.max_gap",
               f"must be an integer in 0 … {free // (self.n_repeats - 1)} ((seq_len − n_repeats·repeat_len) // "
               f"(n_repeats − 1): the gaps must fit in the sequence), or -1 for the first layout", self.max_gap)
        _check(isinstance(self.n_sequences, int) and self.n_sequences >= 0, "task.n_sequences",
               "must be 0 (fresh sequences every step) or the size of a finite training set", self.n_sequences)




@dataclass(frozen=True)
class TransformerConfig:
    """``kind = "transformer"`` (the default): the transformer of Nanda et al. (1 layer) and of Zhong et al.'s
    Clock/Pizza sweeps (1 to 4 layers): ``n_layers`` blocks of attention then MLP on the residual stream, no
    LayerNorm, learned positions, ReLU MLP, ``d_vocab = p+1`` (the ``=`` token), ``d_vocab_out = p``, ``n_ctx = 3``.
    ``n_heads · d_head`` need not equal ``d_model`` (the Clock/Pizza width-86 models: ``d_head = d_model //
    n_heads``). Attention and unembedding biases exist in the property format (TransformerLens needs them) but are
    fixed at zero unless ``attn_bias`` / ``unembed_bias`` say otherwise, as in the paper's model.
    """

    kind: Literal["transformer"] = "transformer"
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    attn_bias: bool = False
    unembed_bias: bool = False
    # Clock/Pizza variant (Zhong et al. 2023, claims_catalogue §1.3): attention α·softmax(QKᵀ/√d_head) + (1 − α)·J
    # with J the all-ones matrix (α = 1: ordinary softmax attention), and inputs [a, b] without the '=' token
    # (vocabulary p, 2 positions). ``causal`` is the mask of the attention; with one layer only the final
    # position's output is read, which sees every position either way, so it changes no output there; with more
    # layers the earlier positions' residual streams feed the final one, and the mask matters.
    attn_rate: float = 1.0
    equals_token: bool = True
    causal: bool = True
    act_fn: Literal["relu", "gelu"] = "relu"
    # parameters held fixed at their initial values by training and by the LLC (e.g. the TransformerLens
    # demo's frozen ``blocks.0.mlp.b_in`` / ``b_out``), on top of the biases attn_bias/unembed_bias switch off
    frozen: tuple[str, ...] = ()
    # blocks (attention + MLP each); hashed only when ≠ 1, so every 1-layer spec keeps its hash
    n_layers: int = 1

    FOREIGN: ClassVar[dict[str, str]] = {
        "layer_norm": "is a setting of the attention-only model (kind = 'attn_only'); remove it",
        "d_vocab": "is a setting of the attention-only model (kind = 'attn_only'); remove it",
        "n_ctx": "is a setting of the attention-only model (kind = 'attn_only'); remove it",
        "d_embed": "is a setting of the MLP (kind = 'mlp'); remove it",
        "hidden": "is a setting of the MLP (kind = 'mlp'); remove it",
        "combine": "is a setting of the MLP (kind = 'mlp'); remove it",
    }

    def validate(self) -> None:
        _check(self.kind == "transformer", "model.kind", _MODEL_TEXT, self.kind)
        _validate_common(self)
        for key in ("d_model", "n_heads", "d_head", "d_mlp", "n_layers"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value > 0, f"model.{key}", "must be a positive integer", value)
        _check(isinstance(self.attn_rate, (int, float)) and 0 <= self.attn_rate <= 1, "model.attn_rate",
               "must be a number in [0, 1] (1: softmax attention; 0: constant attention)", self.attn_rate)
        _check(isinstance(self.equals_token, bool), "model.equals_token", "must be true or false", self.equals_token)
        _check(isinstance(self.causal, bool), "model.causal", "must be true or false", self.causal)


@dataclass(frozen=True)
class MLPConfig:
    """``kind = "mlp"``: ``embed.W_E [p, d_embed]``; the two input embeddings are combined by ``sum`` (Peluche) or
    ``concat`` (equivalent to the separate left/right maps of the devinterp hackathon MLP), then ``hidden``
    Linear+activation layers, then ``unembed``.
    """

    kind: Literal["mlp"] = "mlp"
    d_embed: int = 12
    hidden: tuple[int, ...] = (48,)
    combine: Literal["sum", "concat"] = "sum"
    act_fn: Literal["relu", "gelu"] = "relu"
    # parameters held fixed at their initial values by training and by the LLC
    frozen: tuple[str, ...] = ()

    FOREIGN: ClassVar[dict[str, str]] = {
        **{k: "is a transformer setting; an MLP has no attention and reads no '=' token (remove it)"
           for k in ("attn_rate", "equals_token", "causal", "attn_bias", "unembed_bias")},
        **{k: "is a transformer setting; the MLP's widths are d_embed and hidden (remove it)"
           for k in ("d_model", "n_heads", "d_head", "d_mlp")},
        "n_layers": "is a setting of the transformer and the attention-only model; an MLP's depth is the length of "
                    "hidden (remove it)",
        **{k: "is a setting of the attention-only model (kind = 'attn_only'); remove it"
           for k in ("layer_norm", "d_vocab", "n_ctx")},
    }

    def validate(self) -> None:
        _check(self.kind == "mlp", "model.kind", _MODEL_TEXT, self.kind)
        _validate_common(self)
        _check(self.d_embed > 0, "model.d_embed", "must be a positive integer", self.d_embed)
        _check(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), "model.hidden",
               "must be a non-empty list of positive widths", list(self.hidden))
        _check(self.combine in ("sum", "concat"), "model.combine", "must be 'sum' or 'concat'", self.combine)


@dataclass(frozen=True)
class AttnOnlyConfig:
    """``kind = "attn_only"`` (the induction toy, claims_catalogue §3.6): ``n_layers`` attention-only blocks with
    learned positions, causal attention, LayerNorm before each block and before the unembedding when
    ``layer_norm`` (TransformerLens's default), over the task's vocabulary (``d_vocab``) and context (``n_ctx``);
    both are taken from the task when left at 0. As for the transformer, the attention and unembedding biases
    are held at zero unless ``attn_bias`` / ``unembed_bias`` (TransformerLens's own models train them).
    """

    kind: Literal["attn_only"] = "attn_only"
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    attn_bias: bool = False
    unembed_bias: bool = False
    n_layers: int = 1
    layer_norm: bool = False
    d_vocab: int = 0
    n_ctx: int = 0
    # parameters held fixed at their initial values by training
    frozen: tuple[str, ...] = ()

    FOREIGN: ClassVar[str] = ("is not a setting of the attention-only model (softmax causal attention, no MLP); "
                              "remove it")

    def validate(self) -> None:
        _check(self.kind == "attn_only", "model.kind", _MODEL_TEXT, self.kind)
        _validate_common(self)
        for key in ("d_model", "n_heads", "d_head", "n_layers", "d_vocab", "n_ctx"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value > 0, f"model.{key}", "must be a positive integer", value)
        _check(isinstance(self.layer_norm, bool), "model.layer_norm", "must be true or false", self.layer_norm)



TASK_KINDS: dict[str, type] = {"modular_addition": ModularAdditionTask, "repeated_subsequence": RepeatedSubsequenceTask}
MODEL_KINDS: dict[str, type] = {"transformer": TransformerConfig, "mlp": MLPConfig, "attn_only": AttnOnlyConfig}

# The fields of the one TaskConfig / ModelConfig class specs had before the kinds were split, in its order: a spec's
# dict (run.json, claims.json) and its hash carry all of them, a kind's missing ones at their default, so that every
# spec keeps its dict and its hash (and its cached run). The defaults are the kinds' own (the first kind wins).
_TASK_LAYOUT = ("p", "frac_train", "split_seed", "kind", "d_vocab", "seq_len", "repeat_len", "n_repeats", "n_sequences",
                "max_gap")
# The value of RepeatedSubsequenceTask.max_gap that means the first layout (≥ 1 random token before each later repeat):
# a spec stored before max_gap existed reads with it, and its dict and hash leave max_gap out, as written then.
LEGACY_GAPS = -1
_MODEL_LAYOUT = ("kind", "d_model", "n_heads", "d_head", "d_mlp", "attn_bias", "unembed_bias", "attn_rate",
                 "equals_token", "causal", "n_layers", "layer_norm", "d_vocab", "n_ctx", "d_embed", "hidden",
                 "combine", "act_fn", "frozen")


def _layout_defaults(kinds: dict[str, type], layout: tuple[str, ...]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for cls in kinds.values():
        for f in dataclasses.fields(cls):
            defaults.setdefault(f.name, f.default)
    assert set(defaults) == set(layout), sorted(set(defaults) ^ set(layout))
    return {key: defaults[key] for key in layout}


_TASK_DEFAULTS = _layout_defaults(TASK_KINDS, _TASK_LAYOUT)
_MODEL_DEFAULTS = _layout_defaults(MODEL_KINDS, _MODEL_LAYOUT)


class _Tagged:
    """A union of config kinds that builds its members by tag (``ModelConfig(kind="mlp", ...)``, as callers wrote
    before the kinds were split) and answers ``isinstance`` for any of them."""

    def __init__(self, name: str, build, kinds: dict[str, type]):
        self.__name__, self._build, self.kinds = name, build, tuple(kinds.values())

    def __call__(self, **values: Any):
        return self._build(**values)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self.kinds)


def _validate_common(cfg: ModelConfig) -> None:
    _check(all(isinstance(n, str) and n for n in cfg.frozen), "model.frozen",
           "must be a list of parameter names (e.g. \"blocks.0.mlp.b_in\")", list(cfg.frozen))
    if not isinstance(cfg, AttnOnlyConfig):
        _check(cfg.act_fn in ("relu", "gelu"), "model.act_fn", "must be 'relu' or 'gelu'", cfg.act_fn)


def task_config(**values: Any) -> TaskConfig:
    """The task of kind ``values["kind"]`` (default modular addition) with ``values``; raises
    :class:`SpecError` on a setting of another kind that is not at its default."""
    cls, values = _pick("task", TASK_KINDS, _TASK_DEFAULTS, values)
    return cls(**values)


def model_config(**values: Any) -> ModelConfig:
    """The model of kind ``values["kind"]`` (default the transformer) with ``values``; raises
    :class:`SpecError` on a setting of another kind that is not at its default."""
    cls, values = _pick("model", MODEL_KINDS, _MODEL_DEFAULTS, values)
    return cls(**values)


def _pick(table: str, kinds: dict[str, type], defaults: dict[str, Any],
          values: dict[str, Any], *, strict: bool = True) -> tuple[type, dict[str, Any]]:
    """The class of ``values``'s kind and ``values`` less the other kinds' settings left at their default (of the
    default's type: ``layer_norm = 0`` is not ``false``). Another kind's setting at another value raises
    :class:`SpecError` naming it, or is dropped when not ``strict`` (a spec stored by an earlier claimlens, which
    accepted and ignored such settings: they never changed the weights)."""
    kind = values.get("kind", defaults["kind"])
    _check(isinstance(kind, str) and kind in kinds, f"{table}.kind", _TASK_TEXT if table == "task" else _MODEL_TEXT,
           kind)
    cls = kinds[kind]
    own = {f.name for f in dataclasses.fields(cls)}
    kept = {}
    for key, value in values.items():
        if key in own or key not in defaults:
            kept[key] = value  # an unknown key is the caller's to refuse
        elif strict and (type(_jsonable(value)) is not type(_jsonable(defaults[key]))
                         or _jsonable(value) != _jsonable(defaults[key])):
            rule = cls.FOREIGN if isinstance(cls.FOREIGN, str) else cls.FOREIGN[key]
            _check(False, f"{table}.{key}", rule, value)
    return cls, kept


@dataclass(frozen=True)
class TrainConfig:
    """One optimiser step per epoch: on all training pairs (``batch_size = 0``, the default), or on
    ``batch_size`` training pairs drawn with replacement from a generator seeded by ``seed`` (the
    devinterp hackathon MLP's ``random.choices`` batches; an "epoch" is then one step).

    ``warmup_steps``: learning-rate factor ``min(step / warmup_steps, 1)`` with ``step`` counted from
    0, as in the paper's ``LambdaLR`` (so the very first update has lr 0). ``optimizer = "adamw"``
    decouples weight decay; ``"adam"`` couples it as L2 (the devinterp hackathon MLP).
    """

    epochs: int = 40_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    optimizer: Literal["adamw", "adam"] = "adamw"
    checkpoint_every: int = 100
    seed: int = 0
    batch_size: int = 0

    @property
    def checkpoint_epochs(self) -> list[int]:
        """The epochs at which training saves a checkpoint: 0, every ``checkpoint_every``, and the last."""
        return sorted(set(range(0, self.epochs + 1, self.checkpoint_every)) | {self.epochs})

    def validate(self) -> None:
        _check(self.epochs > 0, "train.epochs", "must be positive", self.epochs)
        _check(self.lr > 0, "train.lr", "must be positive", self.lr)
        _check(self.weight_decay >= 0, "train.weight_decay", "must be ≥ 0", self.weight_decay)
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas",
               "must be two numbers in [0, 1)", list(self.betas))
        _check(self.warmup_steps >= 0, "train.warmup_steps", "must be ≥ 0", self.warmup_steps)
        _check(self.optimizer in ("adamw", "adam"), "train.optimizer", "must be 'adamw' or 'adam'", self.optimizer)
        _check(0 < self.checkpoint_every <= self.epochs, "train.checkpoint_every",
               f"must be in [1, epochs={self.epochs}]", self.checkpoint_every)
        _check(isinstance(self.batch_size, int) and self.batch_size >= 0, "train.batch_size",
               "must be 0 (full batch) or a positive number of pairs", self.batch_size)


@dataclass(frozen=True)
class RunSpec:
    """A named, hashable recipe for one training run."""

    name: str
    task: TaskConfig = field(default_factory=ModularAdditionTask)
    model: ModelConfig = field(default_factory=TransformerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    # Free-form expectations used by the project's own tests (e.g. ``groks = false`` for a
    # negative control). Never read by the trainer.
    expect: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunSpec:
        _check(bool(self.name) and isinstance(self.name, str), "name", "must be a non-empty string", self.name)
        sequences, attn_only = self.task.is_sequences, isinstance(self.model, AttnOnlyConfig)
        if attn_only and not sequences:
            raise SpecError(f"model.kind 'attn_only' needs task.kind 'repeated_subsequence' (got task.kind "
                            f"{self.task.kind!r}; it defaults to 'modular_addition')")
        if sequences and not attn_only:
            raise SpecError(f"task.kind 'repeated_subsequence' needs model.kind 'attn_only' (got model.kind "
                            f"{self.model.kind!r}; it defaults to 'transformer')")
        self.task.validate()
        self.model.validate()
        self.train.validate()
        if isinstance(self.model, AttnOnlyConfig) and isinstance(self.task, RepeatedSubsequenceTask):
            _check(self.train.batch_size > 0, "train.batch_size",
                   "must be the number of sequences per step for the repeated-subsequence task", self.train.batch_size)
            _check(self.model.d_vocab == self.task.d_vocab, "model.d_vocab",
                   f"must equal task.d_vocab = {self.task.d_vocab} (or be left out)", self.model.d_vocab)
            _check(self.model.n_ctx == self.task.seq_len, "model.n_ctx",
                   f"must equal task.seq_len = {self.task.seq_len} (or be left out)", self.model.n_ctx)
        return self

    @property
    def modulus(self) -> int | None:
        """``p`` of a modular-addition run; None for the sequence task (its model's shapes are in its config)."""
        return self.task.p if isinstance(self.task, ModularAdditionTask) else None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-able values: task and model with every field of every kind (another kind's at its
        default), as written before the kinds were split, so that a spec's dict and :attr:`hash` never change."""
        task = _with_layout(self.task, _TASK_DEFAULTS)
        if task["kind"] != "repeated_subsequence" or task["max_gap"] == LEGACY_GAPS:
            del task["max_gap"]  # as written before max_gap existed
        return _jsonable({"name": self.name, "task": task,
                          "model": _with_layout(self.model, _MODEL_DEFAULTS),
                          "train": dataclasses.asdict(self.train), "description": self.description,
                          "expect": self.expect})

    @property
    def hash(self) -> str:
        """sha256 of everything that changes the trained weights (name and description excluded)."""
        d = self.to_dict()
        payload = {"task": d["task"], "model": d["model"], "train": dict(d["train"])}
        if payload["train"]["batch_size"] == 0:  # full batch: hashed as before batch_size existed
            del payload["train"]["batch_size"]
        # Fields added later are hashed only when they differ from their default, so that every spec written
        # before they existed keeps its hash (and its cached run).
        later = {"frozen": [], "attn_rate": 1.0, "equals_token": True, "causal": True, "n_layers": 1,
                 "layer_norm": False, "d_vocab": 0, "n_ctx": 0}
        payload["model"] = {k: v for k, v in payload["model"].items() if not (k in later and v == later[k])}
        if payload["task"]["kind"] == "modular_addition":  # the sequence task's fields came later
            for key in ("d_vocab", "seq_len", "repeat_len", "n_repeats", "n_sequences", "max_gap"):
                payload["task"].pop(key, None)
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def key(self, device_class: str = "cpu") -> str:
        """The key the run of this spec trained on ``device_class`` (``"cpu"``, ``"cuda"``, ``"mps"``: a torch device
        type) is cached under: :attr:`hash` itself on the CPU, so that every CPU run keeps the key (and the cached
        run) it had before the device was part of it; else sha256 of the hash and the device class (a GPU's
        kernels give other numbers). Raises :class:`SpecError` for a device class that is not a lower-case word."""
        _check(isinstance(device_class, str) and device_class.isalpha() and device_class.islower(), "device class",
               "must be a torch device type such as 'cpu' or 'cuda' (no index)", device_class)
        if device_class == "cpu":
            return self.hash
        return hashlib.sha256(canonical_json({"spec": self.hash, "device": device_class}).encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "spec", stored: bool = False) -> RunSpec:
        """The spec ``data`` describes; raises :class:`SpecError` naming the key for an unknown key, a bad value or
        a setting of another task or model kind. ``stored``: ``data`` is a spec a run directory already holds
        (run.json), written by this or an earlier claimlens; another kind's settings, which earlier versions accepted
        and ignored, are dropped rather than refused (the hash then no longer counts them, so the run's analyses are
        recomputed once under their new key)."""
        data = dict(data)
        data.pop("schema_version", None)
        known = {"name", "task", "model", "train", "description", "expect"}
        _reject_unknown(data, known, source)
        try:
            task_values = data.get("task", {})
            if (stored and isinstance(task_values, dict) and task_values.get("kind") == "repeated_subsequence"
                    and "max_gap" not in task_values):  # stored before max_gap existed: trained on the first layout
                task_values = {**task_values, "max_gap": LEGACY_GAPS}
            task = _build_kind("task", TASK_KINDS, _TASK_DEFAULTS, task_values, source, not stored)
            model = _build_kind("model", MODEL_KINDS, _MODEL_DEFAULTS, data.get("model", {}), source, not stored)
            train = _build(TrainConfig, data.get("train", {}), f"{source}: [train]")
            if isinstance(model, AttnOnlyConfig) and isinstance(task, RepeatedSubsequenceTask):
                # vocabulary and context from the task by default
                model = dataclasses.replace(model, d_vocab=model.d_vocab or task.d_vocab,
                                            n_ctx=model.n_ctx or task.seq_len)
            spec = cls(name=data.get("name", ""), task=task, model=model, train=train,
                       description=data.get("description", ""), expect=dict(data.get("expect", {})))
        except TypeError as exc:  # wrong value types inside dataclass construction
            raise SpecError(f"{source}: {exc}") from None
        try:
            return spec.validate()
        except SpecError as exc:
            raise SpecError(f"{source}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> RunSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"run spec {str(path)!r} does not exist or is not a file")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"run spec {str(path)!r} is not valid TOML: {exc}") from None
        if not any(table in data for table in ("task", "model", "train")):
            # an empty (or name-only) file would silently train every default: the paper's 40 000-epoch recipe
            raise SpecError(f"run spec {str(path)!r} states no [task], [model] or [train] table: it would train "
                            f"the defaults (the paper's recipe, p = 113 for 40 000 epochs, about an hour on a CPU). "
                            f"Start from a built-in spec (fixtures/default.toml in a clone; installed, claimlens/fixtures/ "
                            f"in the package) and edit it")
        data.setdefault("name", path.stem)
        return cls.from_dict(data, source=str(path))


def canonical_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise SpecError(f"{key} {rule}; got {value!r}")


def _reject_unknown(data: dict[str, Any], known: set[str], source: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{source}: unknown key(s) {unknown}; expected some of {sorted(known)}")


def _with_layout(cfg: TaskConfig | ModelConfig, defaults: dict[str, Any]) -> dict[str, Any]:
    values = dataclasses.asdict(cfg)
    return {key: values.get(key, default) for key, default in defaults.items()}


def _build_kind(table: str, kinds: dict[str, type], defaults: dict[str, Any], values: Any, source: str,
                strict: bool = True) -> Any:
    """The ``[table]`` of a spec as the config of its kind (:func:`_pick`), its values checked by :func:`_build`."""
    if not isinstance(values, dict):
        raise SpecError(f"{source}: [{table}] must be a table, got {values!r}")
    try:
        cls, values = _pick(table, kinds, defaults, values, strict=strict)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    return _build(cls, values, f"{source}: [{table}] (kind {cls().kind!r})")


def _build(cls: type, values: Any, source: str) -> Any:
    if not isinstance(values, dict):
        raise SpecError(f"{source} must be a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(values, set(fields), source)
    kwargs = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise SpecError(f"{source}: {key} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise SpecError(f"{source}: {key} must be true or false, got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{source}: {key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{source}: {key} must be an integer, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise SpecError(f"{source}: {key} must be a string, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


TaskConfig = _Tagged("TaskConfig", task_config, TASK_KINDS)  # ModularAdditionTask | RepeatedSubsequenceTask
ModelConfig = _Tagged("ModelConfig", model_config, MODEL_KINDS)  # TransformerConfig | MLPConfig | AttnOnlyConfig
