"""The MLP family of "Grokking with weight decay" (catalogue §3.5): the rules on the source's printed losses and on
synthetic curves, each rule's negative control on the other built-in model, the weight norms against a naive sum,
and the MLP forward's first-layer table against the per-example product."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from claimlens import models
from claimlens.config import MLPConfig
from claimlens.core.series import Series
from claimlens.core.verdicts import Bound, ClaimSpec
from claimlens.families.mlp import rules as MLP
from claimlens.tasks import grid_tokens


def _th(spec: ClaimSpec):
    return {k: Bound(t.value, k, t.source) for k, t in spec.thresholds.items()}


def _source_log() -> dict[str, Series]:
    return {"train_loss": Series.of("train_loss", list(MLP.SOURCE_TRAIN_LOSS), list(MLP.SOURCE_TRAIN_LOSS.values())),
            "test_loss": Series.of("test_loss", list(MLP.SOURCE_TEST_LOSS), list(MLP.SOURCE_TEST_LOSS.values()))}


# ----------------------------------------------------------------------------- the rules on the source and synthetic curves


def test_summed_rule_passes_on_the_sources_printed_losses():
    v = MLP.summed_embeddings_grok(_source_log(), "sum", _th(MLP.SUMMED_EMBEDDINGS_GROK))
    assert v.passed, v.failure_message()
    delay = next(c for c in v.checks if c.name.startswith("epochs from memorisation"))
    assert delay.value == 16000  # losses only: train loss ≤ 0.1 at 999, test loss ≤ 0.1 at 16 999
    exact = next(c for c in v.checks if c.name.startswith("first epoch with test loss"))
    assert exact.value == 16999 and exact.source_value == 16999


def _accuracy_log(memorised: int, generalised: int | None, last: int = 30000) -> dict[str, Series]:
    epochs = torch.arange(0, last + 1, 250)
    train = (epochs >= memorised).double()
    test = torch.full_like(train, 0.05) if generalised is None else torch.where(epochs >= generalised, 1.0, 0.05)
    loss = torch.where(epochs >= (generalised or last + 1), 1e-3, 5.0)
    return {"train_acc": Series.of("train_acc", epochs, train), "test_acc": Series.of("test_acc", epochs, test),
            "train_loss": Series.of("train_loss", epochs, 1 - train + 1e-3), "test_loss": Series.of("test_loss", epochs, loss)}


def test_summed_rule_fails_without_a_delay_or_without_generalising_and_skips_the_other_model():
    th = _th(MLP.SUMMED_EMBEDDINGS_GROK)
    assert MLP.summed_embeddings_grok(_accuracy_log(500, 17000), "sum", th).passed
    assert not MLP.summed_embeddings_grok(_accuracy_log(500, 3000), "sum", th).passed  # groks, but promptly
    never = MLP.summed_embeddings_grok(_accuracy_log(500, None), "sum", th)
    assert not never.passed and "never generalised" in never.failure_message()
    assert MLP.summed_embeddings_grok(_accuracy_log(500, 17000), "concat", th).skipped


def test_concatenated_rule_needs_the_full_length_and_fails_when_the_model_generalises():
    th = _th(MLP.CONCATENATED_NEVER_GROK)
    assert MLP.concatenated_never_grok(_accuracy_log(500, None)["test_acc"], "concat", th).passed
    assert not MLP.concatenated_never_grok(_accuracy_log(500, 17000)["test_acc"], "concat", th).passed
    short = MLP.concatenated_never_grok(_accuracy_log(500, None, last=5000)["test_acc"], "concat", th)
    assert short.skipped and "ends at epoch 5000" in short.skipped
    assert MLP.concatenated_never_grok(_accuracy_log(500, None)["test_acc"], "sum", th).skipped


def _norms(values, start=0, step=250):
    epochs = list(range(start, start + step * len(values), step))
    return Series.of("Σθ²", epochs, values), Series.of("Σ|θ|", epochs, [v ** 0.5 for v in values])


def test_weight_norm_rule_on_falling_rising_and_never_grokking_norms():
    th = _th(MLP.WEIGHT_NORM_DECLINES)
    test_acc = _accuracy_log(500, 17000)["test_acc"]
    n = len(test_acc)
    falling = _norms([1000.0 * 0.99 ** i for i in range(n)])  # ×0.96 per 1000 epochs: ×0.53 from 1000 to 17 000
    assert MLP.weight_norm_declines(*falling, test_acc, "sum", th).passed
    rising = _norms([1000.0 + i for i in range(n)])
    assert not MLP.weight_norm_declines(*rising, test_acc, "sum", th).passed
    never = MLP.weight_norm_declines(*falling, _accuracy_log(500, None)["test_acc"], "sum", th)
    assert not never.passed and "never reached" in never.failure_message()
    assert MLP.weight_norm_declines(*falling, test_acc, "concat", th).skipped


def test_spikes_are_counted_between_consecutive_checkpoints():
    th = _th(MLP.LONG_TRAINING_SPIKES)
    loss = Series.of("test_loss", [0, 1000, 2000, 3000, 4000, 5000], [1.0, 1e-3, 2e-2, 1e-3, 1e-3, 5e-2])
    v = MLP.long_training_spikes(loss, th)
    assert not v.skipped and v.passed  # informational: it reports, it does not judge
    count = next(c for c in v.checks if c.name.startswith("test-loss spikes"))
    assert count.value == 2 and "2000, 5000" in count.detail
    assert MLP.long_training_spikes(loss.window(end=0), th).skipped


def test_at_epochs_reads_a_log_at_the_checkpoints():
    log = Series.of("test_loss", range(11), [float(i) for i in range(11)])
    picked = log.at_epochs([0, 5, 10, 12])
    assert picked.epochs.tolist() == [0, 5, 10] and picked.values.tolist() == [0.0, 5.0, 10.0]


# ----------------------------------------------------------------------------- the model and the weight norms


@settings(max_examples=12, deadline=None)
@given(combine=st.sampled_from(["sum", "concat"]), hidden=st.sampled_from([(8,), (8, 6), ()]),
       act=st.sampled_from(["relu", "gelu"]), seed=st.integers(0, 1000))
def test_mlp_forward_equals_the_per_example_product(combine, hidden, act, seed):
    """The first layer applied to the vocabulary table and gathered, against the plain per-example product."""
    p = 7
    cfg = MLPConfig(d_embed=5, hidden=hidden, combine=combine, act_fn=act)
    params = models.init_params(cfg, p, seed)
    tokens = grid_tokens(p)
    out = models.forward(params, tokens, cfg, cache=True)
    E = params["embed.W_E"]
    h = E[tokens[:, 0]] + E[tokens[:, 1]] if combine == "sum" else torch.cat([E[tokens[:, 0]], E[tokens[:, 1]]], 1)
    f = torch.nn.functional.relu if act == "relu" else torch.nn.functional.gelu
    first = None
    for i in range(len(hidden)):
        pre = h @ params[f"mlp.{i}.W"] + params[f"mlp.{i}.b"]
        h = f(pre)
        if i == 0:
            first = (pre, h)
    torch.testing.assert_close(out.logits, h @ params["unembed.W_U"] + params["unembed.b_U"], rtol=1e-5, atol=1e-6)
    if hidden:
        torch.testing.assert_close(out.mlp_pre, first[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.mlp_post, first[1], rtol=1e-5, atol=1e-6)


def test_weight_norms_equal_a_naive_sum(tiny_mlp_run):
    from claimlens.families.mlp.analysis import weight_norms

    sq, ab = weight_norms(tiny_mlp_run)
    assert sq.epochs.tolist() == list(tiny_mlp_run.epochs)
    for i, epoch in enumerate(tiny_mlp_run.epochs):
        params = tiny_mlp_run.checkpoint(epoch)
        naive_sq = sum(float(x) ** 2 for t in params.values() for x in t.flatten())
        naive_ab = sum(abs(float(x)) for t in params.values() for x in t.flatten())
        assert float(sq.values[i]) == pytest.approx(naive_sq, rel=1e-9)
        assert float(ab.values[i]) == pytest.approx(naive_ab, rel=1e-9)


# ----------------------------------------------------------------------------- the built-in models (negative controls)


@pytest.fixture(scope="module")
def built_in():
    """fixtures/mlp_sum.toml and mlp_concat.toml: the source's recipe, 30 000 epochs each (about a minute each on
    two cores, trained on first use and cached)."""
    from claimlens.builtin import builtin_run
    from claimlens.families.mlp.analysis import weight_norms

    out = {}
    for name in ("mlp_sum", "mlp_concat"):
        run = builtin_run(name, progress=False)
        log = run.log()
        out[name] = ({n: Series.of(n, log["epoch"], log[n]) for n in ("train_loss", "test_loss", "train_acc",
                                                                         "test_acc")}, weight_norms(run))
    return out


@pytest.mark.slow
def test_each_rule_fails_on_the_other_built_in_model(built_in):
    """Judged as if it were the model the claim is about, the other model fails each rule."""
    sum_log, _sum_norms = built_in["mlp_sum"]
    concat_log, concat_norms = built_in["mlp_concat"]
    assert not MLP.summed_embeddings_grok(concat_log, "sum", _th(MLP.SUMMED_EMBEDDINGS_GROK)).passed
    assert not MLP.weight_norm_declines(*concat_norms, concat_log["test_acc"], "sum",
                                        _th(MLP.WEIGHT_NORM_DECLINES)).passed
    assert not MLP.concatenated_never_grok(sum_log["test_acc"], "concat", _th(MLP.CONCATENATED_NEVER_GROK)).passed
