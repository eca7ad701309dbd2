"""An imported model must fit what its spec says it is (issue: never a silent wrong verdict on a user's run).

The split check judges a few checkpoints' accuracy on the stated training set, its complement and all pairs; the
processing check measures the signatures TransformerLens's weight processing leaves (tensors centred along
``d_model`` or the vocabulary to float precision). Inputs are made here from the tiny run of ``conftest.py``."""

import pytest
import torch

from claimlens.errors import CheckpointError
from claimlens.runs.evidence import processing_signatures, split_fit
from claimlens.runs.importers import import_run


def _full_run(tiny_run, path, *, epochs=None, params=None, **config_changes):
    from tests.test_importers import TINY_CONFIG

    epochs = tiny_run.epochs if epochs is None else epochs
    sds = [dict(params) if params is not None else dict(tiny_run.checkpoint(e)) for e in epochs]
    torch.save({"state_dicts": sds, "epochs": list(epochs), "config": {**TINY_CONFIG, **config_changes}}, path)
    return path


def test_a_model_trained_on_another_split_is_refused_with_the_evidence(tiny_run, tmp_path):
    """E3-02's kind: the config states split seed 7, the model was trained on seed 1's split (and no logged loss
    says so): it fits pairs that are plainly not its stated training set."""
    path = _full_run(tiny_run, tmp_path / "f.pth", seed=7)
    with pytest.raises(CheckpointError, match=r"does not fit the split it is said to have.*of its stated training "
                                              r"pairs.*Likely causes: the split.*--split-unknown") as err:
        import_run(path, tmp_path / "run", progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
    run = import_run(path, tmp_path / "run", split_unknown=True, progress=False)
    assert run.manifest["split"]["rule"] == "unknown" and "--split-unknown" in run.manifest["split"]["reason"]


def test_the_right_split_fits_and_the_evidence_is_recorded(tiny_run, tmp_path):
    run = import_run(_full_run(tiny_run, tmp_path / "f.pth"), tmp_path / "run", progress=False)
    fits = run.manifest["source"]["split_fit"]
    assert len(fits) == 5 and fits[-1]["epoch"] == tiny_run.epochs[-1]
    assert {f["verdict"] for f in fits} <= {"fits", "chance"} and fits[-1]["verdict"] == "fits"


def test_a_model_that_never_learnt_is_not_a_mismatch(tiny_run, tmp_path):
    """An untrained checkpoint (a negative control) with a split seed it was never trained on: no evidence either
    way, imported with a note."""
    path = _full_run(tiny_run, tmp_path / "f.pth", epochs=[tiny_run.epochs[0]], seed=7)
    run = import_run(path, tmp_path / "run", progress=False)
    assert run.manifest["source"]["split_fit"][0]["verdict"] == "chance"
    assert any("chance accuracy" in note for note in run.manifest["source"]["conversions"])


@pytest.mark.parametrize(("train", "test", "verdict"), [(1.0, 0.02, "fits"), (0.6, 0.05, "fits"), (1.0, 1.0, "fits"),
                                                        (0.42, 0.6, "mismatch"), (0.5, 0.5, "mismatch"),
                                                        (0.045, 0.04, "chance"), (0.0, 1.0, "mismatch")])
def test_split_fit_reads_the_accuracies(train, test, verdict):
    assert split_fit(0, train, test, 264, 265, 23).verdict == verdict


def _processed(params, how):
    """``params`` processed by TransformerLens 4's own weight processing (``ProcessWeights``)."""
    from transformer_lens.weight_processing import ProcessWeights

    from claimlens.models.bridge import bridge_config
    from conftest import tiny_spec

    spec = tiny_spec()
    cfg = bridge_config(spec.model, spec.task.p)
    sd = {k: v.clone() for k, v in params.items()}
    if how == "fold_ln":  # a LayerNorm model whose LayerNorms are folded: the keys of a LayerNorm-free one remain
        d = spec.model.d_model
        g = torch.Generator().manual_seed(0)
        for k in ("blocks.0.ln1", "blocks.0.ln2", "ln_final"):
            sd[f"{k}.w"] = 1 + 0.1 * torch.randn(d, generator=g)
            sd[f"{k}.b"] = 0.1 * torch.randn(d, generator=g)
        cfg.normalization_type = "LN"
        sd = ProcessWeights.fold_layer_norm(sd, cfg)
        return {k: v for k, v in sd.items() if k in params}
    return getattr(ProcessWeights, how)(sd, cfg)


@pytest.mark.parametrize("how", ["center_writing_weights", "center_unembed", "fold_ln"])
def test_weights_processed_by_transformer_lens_are_recognised_and_refused(tiny_run, tmp_path, how):
    params = _processed(tiny_run.final(), how)
    assert set(processing_signatures(params)) == {how}
    path = _full_run(tiny_run, tmp_path / "f.pth", epochs=[tiny_run.epochs[-1]], params=params)
    with pytest.raises(CheckpointError, match=rf"signature of processing by an analysis library.*{how}.*Save the "
                                              rf"state dict of the model as trained"):
        import_run(path, tmp_path / "run", progress=False)


def test_trained_weights_carry_no_processing_signature(tiny_run):
    for epoch in tiny_run.epochs[::4]:
        assert processing_signatures(tiny_run.checkpoint(epoch)) == {}
