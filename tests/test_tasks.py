import torch
from hypothesis import given
from hypothesis import strategies as st

from claimlens.config import ModularAdditionTask
from claimlens.tasks import ModularAddition, grid_labels, grid_tokens, nanda_split


def test_grid_order_a_outer_b_inner():
    tokens = grid_tokens(5)
    assert tokens.shape == (25, 3)
    assert tokens[13].tolist() == [2, 3, 5]  # row a·p + b
    assert grid_labels(5)[13].item() == 0


def test_paper_split_sizes():
    train, test = nanda_split(113, 0.3, 0)
    assert (train.numel(), test.numel()) == (3830, 8939)


@given(p=st.integers(3, 40), frac=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_split_partitions_the_grid_and_is_reproducible(p, frac, seed):
    task = ModularAddition.from_config(ModularAdditionTask(p=p, frac_train=frac, split_seed=seed))
    task.check()
    assert task.train_idx.numel() == int(frac * p * p)
    again = ModularAddition.from_config(ModularAdditionTask(p=p, frac_train=frac, split_seed=seed))
    assert torch.equal(task.train_idx, again.train_idx)


@given(p=st.integers(3, 40))
def test_labels_are_sums_mod_p(p):
    tokens, labels = grid_tokens(p), grid_labels(p)
    a, b = torch.div(torch.arange(p * p), p, rounding_mode="floor"), torch.arange(p * p) % p
    assert torch.equal(tokens[:, 0], a) and torch.equal(tokens[:, 1], b) and (tokens[:, 2] == p).all()
    assert torch.equal(labels, (a + b) % p)
