"""Transformers of any depth, end to end: the Clock/Pizza release's 1- to 4-layer models (Zhong et al. 2023,
``fjzzq2/pizza`` ``code/train-main.py``) and its MLPs imported with the logits of the source's own forward; the
inputs claimlens cannot express refused in one line; a deep run trained, measured and sampled; the claims about the
1-layer circuit skipping a deep model with the reason.

The source models here are small re-implementations of the source's modules, written from its code: the same
state-dict names and layouts (``embed.W_E [d_model, d_vocab]``, ``blocks.{l}.attn.W_K/W_Q/W_V [heads, d_head,
d_model]``, ``W_O [d_model, heads·d_head]``, the unused ``mask`` buffer, ``mlp.W_in [d_mlp, d_model]``, ``b_in``,
``W_out [d_model, d_mlp]``, ``b_out``, ``unembed.W_U [d_model, d_vocab]``; ``d_head = d_model // n_heads``,
``d_mlp = 4·d_model``), the same forward (no LayerNorm, no causal mask, attention ``α·softmax + (1 − α)·J``),
trained full batch for a few hundred steps and saved as the source saves them (``model_<id>.pt`` beside
``config_<id>.json``). The source stores no split; these files store theirs (``train_indices`` /
``test_indices``), which the importer reads.
"""

from __future__ import annotations

import ast
import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from claimlens.config import TransformerConfig
from claimlens.errors import CheckpointError, SpecError
from claimlens.models import forward
from claimlens.runs.importers import import_run
from claimlens.tasks import grid_tokens

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the source's transformer


def source_transformer(p: int, d_model: int, n_heads: int, n_layers: int, eqn_sign: int, seed: int) -> dict:
    """A fresh state dict of the source's ``Transformer`` (its initialisation scales, its names and layouts)."""
    d_head, d_mlp = d_model // n_heads, 4 * d_model
    d_vocab, n_ctx = p + eqn_sign, 2 + eqn_sign
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape, scale):
        return torch.randn(*shape, generator=gen) / math.sqrt(scale)

    sd = {"embed.W_E": draw(d_model, d_vocab, scale=d_model), "pos_embed.W_pos": draw(n_ctx, d_model, scale=d_model)}
    for layer in range(n_layers):
        b = f"blocks.{layer}."
        sd[b + "attn.W_K"] = draw(n_heads, d_head, d_model, scale=d_model)
        sd[b + "attn.W_Q"] = draw(n_heads, d_head, d_model, scale=d_model)
        sd[b + "attn.W_V"] = draw(n_heads, d_head, d_model, scale=d_model)
        sd[b + "attn.W_O"] = draw(d_model, d_head * n_heads, scale=d_model)
        sd[b + "attn.mask"] = torch.ones(n_ctx, n_ctx).tril()  # registered by the source, never applied
        sd[b + "mlp.W_in"] = draw(d_mlp, d_model, scale=d_mlp)
        sd[b + "mlp.b_in"] = torch.zeros(d_mlp)
        sd[b + "mlp.W_out"] = draw(d_model, d_mlp, scale=d_model)
        sd[b + "mlp.b_out"] = torch.zeros(d_model)
    sd["unembed.W_U"] = draw(d_model, d_vocab, scale=d_vocab)
    return sd


def source_forward(sd: dict, tokens: torch.Tensor, alpha: float, act=F.relu) -> torch.Tensor:
    """The source's ``Transformer.forward``: logits ``[batch, pos, d_vocab]`` for ``tokens [batch, pos]``."""
    x = sd["embed.W_E"][:, tokens].permute(1, 2, 0) + sd["pos_embed.W_pos"][: tokens.shape[1]]
    layer = 0
    while f"blocks.{layer}.attn.W_Q" in sd:
        b = f"blocks.{layer}."
        k, q, v = (torch.einsum("ihd,bpd->biph", sd[b + n], x) for n in ("attn.W_K", "attn.W_Q", "attn.W_V"))
        scores = torch.einsum("biph,biqh->biqp", k, q) / math.sqrt(k.shape[-1])  # [batch, head, query, key]
        attn = scores.softmax(-1) * alpha + (1 - alpha)  # no mask
        z = torch.einsum("biph,biqp->biqh", v, attn)  # [batch, head, query, d_head]
        z = z.permute(0, 2, 1, 3).flatten(2)  # [batch, query, head·d_head], head outer
        x = x + torch.einsum("df,bqf->bqd", sd[b + "attn.W_O"], z)
        pre = torch.einsum("md,bpd->bpm", sd[b + "mlp.W_in"], x) + sd[b + "mlp.b_in"]
        x = x + torch.einsum("dm,bpm->bpd", sd[b + "mlp.W_out"], act(pre)) + sd[b + "mlp.b_out"]
        layer += 1
    return x @ sd["unembed.W_U"]


def grid(p: int, eqn_sign: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The source's dataset rows (``[a, b]`` or ``[a, b, =]``, row ``a·p + b``) and labels."""
    tokens = grid_tokens(p)[:, : 2 + eqn_sign]
    return tokens, (tokens[:, 0] + tokens[:, 1]) % p


def train_source(sd: dict, forward_fn, p: int, eqn_sign: int, steps: int, seed: int = 0):
    """Full-batch AdamW (the source's optimiser) on 80% of the pairs; returns the trained state dict and the split."""
    sd = {k: v.clone().requires_grad_(not k.endswith(".mask")) for k, v in sd.items()}
    tokens, labels = grid(p, eqn_sign)
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    train, test = perm[: int(0.8 * p * p)].sort().values, perm[int(0.8 * p * p):].sort().values
    opt = torch.optim.AdamW([v for v in sd.values() if v.requires_grad], lr=3e-3, weight_decay=1.0, betas=(0.9, 0.98))
    for _ in range(steps):
        loss = F.cross_entropy(forward_fn(sd, tokens[train]).double(), labels[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in sd.items()}, train, test


def save_source(folder: Path, runid: str, sd: dict, config: dict, train, test) -> Path:
    """``model_<runid>.pt`` (the state dict, and the split the source does not save) beside ``config_<runid>.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd, "train_indices": train.tolist(), "test_indices": test.tolist()}, folder / f"model_{runid}.pt")
    (folder / f"config_{runid}.json").write_text(json.dumps({**config, "runid": runid, "func": None}))
    return folder / f"model_{runid}.pt"


def source_config(p: int, d_model: int, n_heads: int, n_layers: int, alpha: float, eqn_sign: int, steps: int) -> dict:
    """The sidecar the source writes (its keys, its spellings: ``attention_dir`` 'casual' is unused)."""
    return {"name": f"modadd_{p}", "funcs": f"lambda x: (x[0]+x[1])%{p}", "C": p, "n_heads": n_heads,
            "d_model": d_model, "n_layers": n_layers, "attention_dir": "casual", "act_fn": "ReLU", "epoch": steps,
            "batch_size": p * p, "lr": 3e-3, "weight_decay": 1.0, "frac": 0.8, "attn_coeff": alpha,
            "diff_vocab": 0, "eqn_sign": eqn_sign}


# (n_layers, d_model, n_heads, attn_coeff, eqn_sign): 22 and 18 with 4 heads give n_heads·d_head ≠ d_model
DEPTHS = [(1, 24, 4, 0.0, 0), (2, 22, 4, 1.0, 0), (3, 24, 3, 0.5, 1), (4, 18, 4, 1.0, 1)]


@pytest.mark.parametrize("n_layers, d_model, n_heads, alpha, eqn_sign", DEPTHS, ids=[f"{d[0]}layer" for d in DEPTHS])
def test_a_clock_pizza_transformer_of_any_depth_imports_with_the_source_logits(tmp_path, n_layers, d_model, n_heads,
                                                                               alpha, eqn_sign):
    p, steps = 11, 200
    sd = source_transformer(p, d_model, n_heads, n_layers, eqn_sign, seed=n_layers)
    sd, train, test = train_source(sd, lambda w, x: source_forward(w, x, alpha)[:, -1], p, eqn_sign, steps)
    path = save_source(tmp_path / "src", f"depth{n_layers}abc", sd,
                       source_config(p, d_model, n_heads, n_layers, alpha, eqn_sign, steps), train, test)

    run = import_run(path, tmp_path / "run", progress=False)  # no --spec, no flags

    m = run.spec.model
    assert (m.n_layers, m.d_model, m.n_heads, m.d_head, m.d_mlp) == (n_layers, d_model, n_heads, d_model // n_heads,
                                                                      4 * d_model)
    assert (m.attn_rate, m.equals_token, m.causal, run.spec.task.p) == (alpha, bool(eqn_sign), False, p)
    assert run.epochs == [steps] and run.task.train_idx.tolist() == train.tolist()
    tokens, _ = grid(p, eqn_sign)
    with torch.no_grad():
        ours = forward(run.final(), run.task.tokens, m).logits
        theirs = source_forward(sd, tokens, alpha)[:, -1, :p]  # the '=' class of eqn_sign models dropped
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    notes = " ".join(run.manifest["source"]["conversions"])
    assert f"n_layers = {n_layers}" in notes and "progress-measures-paper layout" in notes


def _two_layer_source(tmp_path: Path, **config_changes) -> Path:
    p = 7
    sd = source_transformer(p, 16, 4, 2, 0, seed=0)
    train, test = torch.arange(0, 40), torch.arange(40, 49)
    config = {**source_config(p, 16, 4, 2, 1.0, 0, 10), **config_changes}
    return save_source(tmp_path / "src", "twolayers", sd, config, train, test)


@pytest.mark.parametrize("change, fragment", [
    ({"n_layers": 3}, r"the weights hold 2 layers \(blocks.0 … blocks.1\) but the config says n_layers = 3"),
    ({"n_layers": 1}, r"the weights hold 2 layers .* n_layers = 1"),
    ({"diff_vocab": 1}, r"diff_vocab = 1: a and b use separate vocabularies"),
    ({"act_fn": "Tanh"}, r"act_fn = 'Tanh'"),
    ({"use_linear": True, "eqn_sign": 1}, r"use_linear with eqn_sign = 1"),
])
def test_what_claimlens_cannot_express_is_refused_in_one_line(tmp_path, change, fragment):
    path = _two_layer_source(tmp_path, **change)
    with pytest.raises((CheckpointError, SpecError), match=fragment) as info:
        import_run(path, tmp_path / "run", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_a_spec_of_another_depth_or_mask_than_the_clock_pizza_config_is_refused(tmp_path):
    from claimlens.config import RunSpec

    path = _two_layer_source(tmp_path)
    model = {"d_model": 16, "n_heads": 4, "d_head": 4, "d_mlp": 64, "equals_token": False}
    base = {"name": "x", "task": {"p": 7, "frac_train": 0.8}, "train": {"epochs": 10, "checkpoint_every": 10}}
    for wrong, fragment in (({"n_layers": 1}, "n_layers = 1 in the spec, 2 in the config"),
                            ({"n_layers": 2}, "causal = True in the spec, False in the config")):
        spec = RunSpec.from_dict({**base, "model": {**model, **wrong}})
        with pytest.raises(CheckpointError, match=fragment):
            import_run(path, tmp_path / "run", spec=spec, progress=False)
    spec = RunSpec.from_dict({**base, "model": {**model, "n_layers": 2, "causal": False}})
    assert import_run(path, tmp_path / "run", spec=spec, progress=False).spec.model.n_layers == 2


def test_layer_norm_weights_are_refused_in_one_line():
    from claimlens.models import init_params
    from claimlens.runs.layouts import to_property_format

    cfg = TransformerConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=2)
    sd = {**init_params(cfg, 7, 0), "blocks.0.ln1.w": torch.ones(16), "blocks.0.ln1.b": torch.zeros(16)}
    with pytest.raises(CheckpointError, match=r"LayerNorm weights \(blocks.0.ln1.b, blocks.0.ln1.w\).*no LayerNorm"):
        to_property_format(sd, cfg, 7, where="x.pth")


def test_a_transformer_lens_config_of_two_layers_imports_and_one_of_another_depth_is_refused(tmp_path):
    from claimlens.models import init_params

    p, cfg = 7, TransformerConfig(d_model=16, n_heads=4, d_head=3, d_mlp=32, n_layers=2)  # 4·3 ≠ 16
    params = {k: v + 0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
              for k, v in init_params(cfg, p, seed=0).items()}
    tl = {"n_layers": 2, "d_model": 16, "d_head": 3, "n_heads": 4, "d_mlp": 32, "d_vocab": p + 1, "d_vocab_out": p,
          "n_ctx": 3, "act_fn": "relu", "normalization_type": None, "attention_dir": "bidirectional", "seed": 5}
    split = {"train_indices": list(range(30)), "test_indices": list(range(30, 49))}
    torch.save({"model": params, "epoch": 100, "config": tl, **split}, tmp_path / "tl.pth")
    run = import_run(tmp_path / "tl.pth", tmp_path / "run", progress=False)
    assert (run.spec.model.n_layers, run.spec.model.d_head, run.spec.model.causal) == (2, 3, False)
    torch.testing.assert_close(forward(run.final(), grid_tokens(p), run.spec.model).logits,
                               forward(params, grid_tokens(p), run.spec.model).logits)
    torch.save({"model": params, "epoch": 100, "config": {**tl, "n_layers": 3}, **split}, tmp_path / "tl3.pth")
    with pytest.raises(CheckpointError, match=r"weights hold 2 layers .* n_layers = 3") as info:
        import_run(tmp_path / "tl3.pth", tmp_path / "run3", progress=False)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- the source's MLPs


def linearformer(p: int, d_model: int, n_layers: int, seed: int) -> dict:
    """``code/train-main.py``'s ``Linearformer`` (``use_linear``): state dict (its names and layouts)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {"embed.W_E": torch.randn(d_model // 2, p, generator=gen) / math.sqrt(d_model // 2)}
    for layer in range(n_layers):
        sd[f"blocks.{layer}.W_in"] = torch.randn(d_model, d_model, generator=gen) / math.sqrt(d_model)
        sd[f"blocks.{layer}.b_in"] = torch.zeros(d_model)
    sd["unembed.W_U"] = torch.randn(d_model, p, generator=gen) / math.sqrt(p)
    return sd


def linearformer_forward(sd: dict, tokens: torch.Tensor) -> torch.Tensor:
    """Concatenated embeddings, zero-padded to d_model, then Linear+ReLU blocks without residual, then W_U."""
    d_model = sd["unembed.W_U"].shape[0]
    x = sd["embed.W_E"][:, tokens].permute(1, 2, 0).flatten(1)  # [batch, 2·(d_model // 2)]
    x = F.pad(x, (0, d_model - x.shape[1]))
    layer = 0
    while f"blocks.{layer}.W_in" in sd:
        x = F.relu(x @ sd[f"blocks.{layer}.W_in"].T + sd[f"blocks.{layer}.b_in"])
        layer += 1
    return x @ sd["unembed.W_U"]


def linear_script_model(kind: str, p: int, width: int, seed: int) -> dict:
    """``code/train-linear.py``'s ``MyModel{kind}`` (A–D): ``embed``/``unembed`` as ``nn.Embedding``, ``l1``/``l2`` as
    ``nn.Linear`` (weight ``[out, in]``)."""
    gen = torch.Generator().manual_seed(seed)
    d_embed = width // 2 if kind == "D" else width
    sd = {"embed.weight": torch.randn(p, d_embed, generator=gen) / math.sqrt(width // 2),
          "unembed.weight": torch.randn(p, width, generator=gen) / math.sqrt(width),
          "l1.weight": torch.randn(width, width, generator=gen) / math.sqrt(width),
          "l1.bias": torch.randn(width, generator=gen) / math.sqrt(width)}
    if kind in "BC":
        sd["l2.weight"] = torch.randn(width, width, generator=gen) / math.sqrt(width)
        sd["l2.bias"] = torch.randn(width, generator=gen) / math.sqrt(width)
    return sd


def linear_script_forward(kind: str, sd: dict, tokens: torch.Tensor) -> torch.Tensor:
    def l1(x):
        return x @ sd["l1.weight"].T + sd["l1.bias"]

    e_a, e_b = sd["embed.weight"][tokens[:, 0]], sd["embed.weight"][tokens[:, 1]]
    h = {"A": lambda: l1(e_a + e_b), "B": lambda: l1(e_a + e_b), "C": lambda: l1(e_a) + l1(e_b),
         "D": lambda: l1(torch.cat([e_a, e_b], 1))}[kind]()
    h = F.relu(h)
    if kind in "BC":
        h = F.relu(h @ sd["l2.weight"].T + sd["l2.bias"])
    return h @ sd["unembed.weight"].T


@pytest.mark.parametrize("variant", ["linearformer", "A", "B", "C", "D"])
def test_the_clock_pizza_mlps_import_as_claimlens_mlps_with_the_source_logits(tmp_path, variant):
    # an odd width for the Linearformer (it pads its concatenated input by one zero); MyModelD needs an even one
    p, width, steps = 11, 17 if variant == "linearformer" else 16, 100
    tokens, _ = grid(p, 0)
    if variant == "linearformer":
        sd = linearformer(p, width, n_layers=2, seed=0)
        fwd = linearformer_forward
        config = {**source_config(p, width, 4, 2, 1.0, 0, steps), "use_linear": True}
    else:
        sd = linear_script_model(variant, p, width, seed=0)
        fwd = functools.partial(linear_script_forward, variant)
        config = {"C": p, "model_type": variant, "n_vocab": p, "d_model": width, "d_hidden": width,
                  "epoch": steps, "lr": 3e-3, "weight_decay": 1.0, "frac": 0.8}
    sd, train, test = train_source(sd, fwd, p, 0, steps)
    run = import_run(save_source(tmp_path / "src", "mlpabc", sd, config, train, test), tmp_path / "run",
                     progress=False)
    assert run.spec.model.kind == "mlp"
    with torch.no_grad():
        torch.testing.assert_close(forward(run.final(), run.task.tokens, run.spec.model).logits, fwd(sd, tokens),
                                   rtol=1e-5, atol=1e-5)
    if variant != "linearformer":  # code/train-linear.py: AdamW's default betas, no warm-up
        assert (run.spec.train.betas, run.spec.train.warmup_steps) == ((0.9, 0.999), 0)


def test_the_mlp_with_separate_embeddings_is_refused_in_one_line(tmp_path):
    sd = {"embed1.weight": torch.zeros(7, 8), "embed2.weight": torch.zeros(7, 8), "unembed.weight": torch.zeros(7, 8),
          "l1.weight": torch.zeros(8, 8), "l1.bias": torch.zeros(8)}
    config = {"C": 7, "model_type": "X", "n_vocab": 7, "d_model": 8, "d_hidden": 8, "epoch": 1, "frac": 0.8}
    path = save_source(tmp_path / "src", "xmodel", sd, config, torch.arange(40), torch.arange(40, 49))
    with pytest.raises(CheckpointError, match=r"model_type 'X' .*separate embeddings.*cannot represent") as info:
        import_run(path, tmp_path / "run", progress=False)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- a deep run trained and measured


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    from claimlens.config import ModularAdditionTask, RunSpec, TrainConfig
    from claimlens.training import Trainer

    spec = RunSpec(name="deep", task=ModularAdditionTask(p=13, frac_train=0.6, split_seed=1),
                   model=TransformerConfig(d_model=18, n_heads=4, d_head=4, d_mlp=36, n_layers=2, attn_rate=0.5),
                   train=TrainConfig(epochs=40, checkpoint_every=20, lr=3e-3, seed=3)).validate()
    return Trainer(spec, tmp_path_factory.mktemp("runs") / "deep", progress=False).train()


def test_a_deep_run_trains_and_every_depth_free_measure_reads_it(deep_run):
    from claimlens.core.checkpoint import final_checkpoint
    from claimlens.families.grokking.analysis import evaluate
    from claimlens.families.pizza.analysis import formula_fits, measure_checkpoint

    assert deep_run.spec.model.n_layers == 2 and deep_run.epochs == [0, 20, 40]
    measures = evaluate(deep_run, cache=False)
    assert measures.keys.rule == "embedding_norm"  # the neuron rule reads the 1-layer circuit
    assert torch.isfinite(measures["excluded_loss_all_keys"].values).all()
    assert measures["train_loss"].values[-1] < measures["train_loss"].values[0]
    final = final_checkpoint(deep_run)
    pizza = measure_checkpoint(final)
    assert -1 <= pizza["gs"] <= 1 and math.isfinite(pizza["di"])
    assert len(formula_fits(final.params, deep_run.spec.model, 13)) >= 3  # (needs p ≥ 12: 12 components)


def test_a_deep_run_is_sampled_by_either_llc_engine_with_the_same_chains(deep_run):
    from claimlens.families.llc.analysis import estimate_at
    from claimlens.families.llc.metrics import SGLDConfig

    config = SGLDConfig(num_chains=2, num_draws=6, num_burnin=2)
    fast = estimate_at(deep_run, deep_run.epochs[-1], config)
    reference = estimate_at(deep_run, deep_run.epochs[-1], config, engine="autograd")
    assert math.isfinite(fast.mean) and fast.per_chain.shape == (2,)
    torch.testing.assert_close(fast.per_chain, reference.per_chain, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- the 1-layer circuit's claims


def test_a_claim_about_the_one_layer_circuit_skips_a_deep_model_saying_why():
    from types import SimpleNamespace

    from claimlens.families.grokking import rules as G
    from claimlens.plugin.fixtures import needs_one_layer

    claim = SimpleNamespace(spec=G.NEURONS_CLUSTER)
    deep = SimpleNamespace(name="cp3", has_weights=True, spec=SimpleNamespace(model=TransformerConfig(n_layers=3)))
    with pytest.raises(pytest.skip.Exception, match=r"claim neurons_cluster_by_single_frequency reads the 1-layer "
                                                    r"circuit of .*§4.3.*; run 'cp3' is a transformer of 3 layers"):
        needs_one_layer(deep, claim)
    needs_one_layer(SimpleNamespace(name="one", has_weights=True, spec=SimpleNamespace(model=TransformerConfig())),
                    claim)  # one layer: judged


# The grokking claims about the 1-layer circuit (catalogue §3.1: its heads, its MLP's neurons, W_L, the ablations);
# every other claim of the family is defined for any depth and judges a deep model.
ONE_LAYER_CLAIMS = {
    "test_gini_jumps_in_cleanup", "test_key_frequencies_stable", "test_key_frequencies", "test_neurons_cluster",
    "test_neuron_logit_map_is_rank_10", "test_fourier_ablations", "test_skip_and_attention_ablations",
    "test_attention_heads_single_frequency_fit", "test_trig_fraction", "test_late_phase_change_after_cleanup",
    "test_attention_becomes_symmetric", "test_final_model_is_symmetric",
}


def test_exactly_the_one_layer_circuit_claims_skip_deep_models():
    tree = ast.parse((ROOT / "claims" / "test_grokking.py").read_text())
    calling = {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
               and any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "needs_one_layer" for n in ast.walk(f))}
    assert calling == ONE_LAYER_CLAIMS
    readers = {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")
               and any(isinstance(n, (ast.Name, ast.Attribute)) and getattr(n, "id", getattr(n, "attr", ""))
                       in ("_W_L", "mlp_post", "pattern", "ablated_logits") for n in ast.walk(f))}
    assert readers <= ONE_LAYER_CLAIMS, readers - ONE_LAYER_CLAIMS
