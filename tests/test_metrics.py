"""Metrics against naive references, by properties, and on a hand-built ground-truth model."""

import math

import naive
import pytest
import torch
from groundtruth import trig_model
from hypothesis import given, settings
from hypothesis import strategies as st

from claimlens.core import fourier as fo
from claimlens.core.losses import cross_entropy_f64
from claimlens.families.grokking import metrics as pm
from claimlens.models import forward
from claimlens.tasks import grid_labels, grid_tokens, nanda_split
from conftest import no_shape_checks

odd_p = st.sampled_from([3, 5, 7, 11, 13])


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- Fourier toolkit


@pytest.mark.parametrize("p", [5, 7, 13])
def test_basis_matches_naive_and_order(p):
    torch.testing.assert_close(fo.fourier_basis(p), torch.tensor(naive.basis(p), dtype=torch.float64))
    F = fo.fourier_basis(p)
    k = 2
    cos_k = torch.cos(2 * math.pi * k * torch.arange(p, dtype=torch.float64) / p)
    torch.testing.assert_close(F[2 * k - 1], cos_k / cos_k.norm())  # row 2k−1 is cos k (catalogue §5.1)
    assert fo.basis_names(p)[2 * k - 1] == f"cos {k}"


@given(p=odd_p)
def test_basis_is_orthonormal(p):
    F = fo.fourier_basis(p)
    torch.testing.assert_close(F @ F.T, torch.eye(p, dtype=torch.float64))


@given(p=odd_p, seed=st.integers(0, 10_000))
def test_parseval_1d_and_2d(p, seed):
    F = fo.fourier_basis(p)
    x, T = rand(4, p, seed=seed), rand(p, p, 3, seed=seed + 1)
    torch.testing.assert_close(fo.fft1d(x, F).norm(), x.norm())
    torch.testing.assert_close(fo.fft2d(T, F).norm(), T.norm())


def test_fft2d_matches_direct_double_sum():
    p = 5
    T = rand(p, p, seed=3)
    torch.testing.assert_close(fo.fft2d(T, fo.fourier_basis(p)), torch.tensor(naive.dft2(T.tolist(), p), dtype=torch.float64))


@given(p=odd_p, seed=st.integers(0, 10_000))
def test_ifft2d_inverts_fft2d(p, seed):
    F, T = fo.fourier_basis(p), rand(p, p, 3, seed=seed)
    assert torch.allclose(fo.ifft2d(fo.fft2d(T, F), F), T, atol=1e-10)


def test_transform_direction_is_F_times_W():
    p = 7
    W = rand(p, 3)
    torch.testing.assert_close(fo.fft_tokens(W, fo.fourier_basis(p)), fo.fourier_basis(p) @ W)


@given(p=st.sampled_from([5, 7, 11]), k=st.integers(1, 5))
def test_trig_directions_are_unit_cos_sin_of_a_plus_b(p, k):
    k = 1 + (k - 1) % ((p - 1) // 2)
    u = fo.trig_directions(p, k)
    s = torch.arange(p * p) // p + torch.arange(p * p) % p
    for row, f in zip(u, (torch.cos, torch.sin)):
        target = f(2 * math.pi * k * s.double() / p)
        torch.testing.assert_close(row, target / target.norm())
    torch.testing.assert_close(u @ u.T, torch.eye(2, dtype=torch.float64))


@given(seed=st.integers(0, 10_000), keys=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))
def test_projection_is_idempotent_and_splits_the_logits(seed, keys):
    p = 7
    L = rand(p * p, p, seed=seed)
    D = fo.key_directions(p, keys)
    kept = fo.project(L, D)
    torch.testing.assert_close(fo.project(kept, D), kept)
    excluded = L - kept
    torch.testing.assert_close(kept + excluded, L)
    assert abs(float((kept * excluded).sum())) < 1e-9  # orthogonal parts


# ----------------------------------------------------------------------------- progress measures vs naive


@pytest.fixture(scope="module")
def small_logits():
    p = 7
    L = rand(p * p, p, seed=11) * 3
    labels = grid_labels(p)
    train, test = nanda_split(p, 0.4, 0)
    return p, L, labels, train, test


def test_cross_entropy_matches_naive(small_logits):
    p, L, labels, train, _ = small_logits
    assert cross_entropy_f64(L, labels).item() == pytest.approx(naive.ce(L.tolist(), labels.tolist()), rel=1e-12)


@pytest.mark.parametrize("keys", [[1], [2, 3], [1, 2, 3]])
def test_excluded_loss_matches_naive(small_logits, keys):
    p, L, labels, train, _ = small_logits
    ours = pm.excluded_loss(L, labels, train, keys, p)
    for k, value in zip(keys, ours.tolist()):
        assert value == pytest.approx(naive.excluded_loss(L.tolist(), labels.tolist(), train.tolist(), p, [k]), rel=1e-10)
    assert pm.excluded_loss_all_keys(L, labels, train, keys, p).item() == pytest.approx(
        naive.excluded_loss(L.tolist(), labels.tolist(), train.tolist(), p, keys), rel=1e-10)


@pytest.mark.parametrize("split", ["all", "train", "test"])
def test_restricted_loss_matches_naive(small_logits, split):
    p, L, labels, train, test = small_logits
    rows = {"all": None, "train": train, "test": test}[split]
    naive_rows = list(range(p * p)) if rows is None else rows.tolist()
    ours = pm.restricted_loss(L, labels, rows, [1, 3], p).item()
    assert ours == pytest.approx(naive.restricted_loss(L.tolist(), labels.tolist(), naive_rows, p, [1, 3]), rel=1e-10)


def test_trig_fraction_matches_naive(small_logits):
    p, L, *_ = small_logits
    X = rand(p * p, 4, seed=5)
    assert pm.trig_variance_fraction(X, [1, 2], p).item() == pytest.approx(naive.trig_fraction(X.tolist(), p, [1, 2]), rel=1e-10)


@given(c=st.lists(st.floats(0, 100), min_size=2, max_size=30).filter(lambda c: sum(c) > 1e-6))
def test_gini_matches_hurley_rickard_form(c):
    assert pm.gini(torch.tensor(c, dtype=torch.float64)).item() == pytest.approx(naive.gini_hurley_rickard(c), abs=1e-9)


@given(n=st.integers(2, 120), data=st.data())
def test_gini_reference_points_and_invariances(n, data):
    k = data.draw(st.integers(1, n))
    c = torch.zeros(n, dtype=torch.float64)
    c[:k] = 3.0
    assert pm.gini(c).item() == pytest.approx(1 - k / n, abs=1e-12)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    assert pm.gini(c[perm] * 7).item() == pytest.approx(pm.gini(c).item(), abs=1e-12)


def test_gini_of_random_embedding_is_small_and_ideal_sparsity_is_high():
    assert pm.gini(pm.fourier_row_norms(rand(114, 128), 113)).item() < 0.1  # catalogue: random W_E ≈ 0.03–0.05
    assert pm.gini(torch.tensor([1.0] * 12 + [0.0] * 101)).item() == pytest.approx(0.894, abs=1e-3)


def test_attention_and_weight_norms_against_loops():
    pattern = rand(10, 4, 3, seed=2).softmax(-1)
    ours = pm.attention_to_position(pattern)
    for h in range(4):
        for j in range(3):
            assert ours[h, j].item() == pytest.approx(sum(pattern[n, h, j].item() for n in range(10)) / 10)
    params = {"a": rand(3, 2), "b": rand(4)}
    ssw = pm.sum_sq_weights(params)
    assert ssw["total"] == pytest.approx(sum(v * v for t in params.values() for v in t.flatten().tolist()))


@given(seed=st.integers(0, 1000))
@settings(max_examples=10)
def test_trig_metrics_are_invariant_under_swapping_a_and_b(seed):
    p = 7
    L = rand(p * p, p, seed=seed)
    labels = grid_labels(p)
    swap = (torch.arange(p * p) % p) * p + torch.arange(p * p) // p  # row of (b, a)
    Ls = L[swap]
    assert pm.restricted_loss(Ls, labels, None, [1, 2], p).item() == pytest.approx(
        pm.restricted_loss(L, labels, None, [1, 2], p).item(), rel=1e-10)
    assert pm.trig_variance_fraction(Ls, [2], p).item() == pytest.approx(pm.trig_variance_fraction(L, [2], p).item(), rel=1e-10)
    assert pm.excluded_loss(Ls, labels, swap[:20], [3], p).item() == pytest.approx(
        pm.excluded_loss(L, labels, torch.arange(p * p)[:20], [3], p).item(), rel=1e-10)


@given(u=st.sampled_from([2, 3, 4, 5, 6]), seed=st.integers(0, 1000))
@settings(max_examples=10)
def test_relabelling_by_a_unit_maps_frequencies(u, seed):
    """Relabel x → u·x mod p: a pure frequency-k function becomes a pure frequency-(u·k mod p, folded) one."""
    p, k = 7, 1
    a = torch.arange(p * p) // p
    b = torch.arange(p * p) % p
    x = torch.cos(2 * math.pi * k * (u * (a + b)).double() / p)[:, None] * rand(1, 3, seed=seed)
    uk = (u * k) % p
    uk = min(uk, p - uk)
    assert pm.trig_variance_fraction(x, [uk], p).item() == pytest.approx(1.0, abs=1e-9)
    others = [f for f in range(1, 4) if f != uk]
    assert pm.trig_variance_fraction(x, others, p).item() == pytest.approx(0.0, abs=1e-9)


def test_cos_sum_fit_matches_least_squares():
    p, keys = 7, [1, 3]
    L = rand(p * p, p, seed=9)
    fit = pm.cos_sum_fit(L, keys, p)
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).flatten()
    design = torch.stack([torch.cos(2 * math.pi * k * (s[:, None] - a[None, :]) / p).flatten() for k in keys], 1)
    centred = (L - L.mean(0)).flatten()
    coef = torch.linalg.lstsq(design, centred[:, None]).solution.flatten()
    torch.testing.assert_close((design @ coef).reshape(p * p, p) + L.mean(0), fit.fitted_logits)


def test_quadratic_fraction_of_a_pure_product_neuron():
    p, k = 11, 2
    a = torch.arange(p * p) // p
    b = torch.arange(p * p) % p
    w = 2 * math.pi * k / p
    X = torch.stack([torch.cos(w * a) * torch.cos(w * b), torch.cos(w * a) + torch.sin(w * b)], 1).double()
    q = pm.quadratic_fraction(X, torch.tensor([k, k]), p)
    assert q[0].item() == pytest.approx(1.0, abs=1e-9) and q[1].item() == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(p=st.sampled_from([5, 7, 11]), seed=st.integers(0, 2**16), n=st.integers(1, 4))
def test_neuron_block_shares_equal_the_naive_sums(p, seed, n):
    """G-NFRAC (3×3 blocks per candidate) and G-QUAD (2×2 block of each neuron's frequency, all blocks for −1),
    vectorised over neurons and sharing one 2D transform, against per-neuron direct sums."""
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(p * p, n, generator=g, dtype=torch.float64)
    freq = torch.randint(-1, (p - 1) // 2 + 1, (n,), generator=g)
    freq[freq == 0] = -1
    candidates = fo.frequencies(p)
    power = fo.neuron_fourier_power(acts, p)
    fracs = fo.neuron_frequency_fractions(acts, p, candidates, power=power)
    quad = pm.quadratic_fraction(acts, freq, p, power=power)
    torch.testing.assert_close(quad, pm.quadratic_fraction(acts, freq, p))  # the same without the shared transform
    for m in range(n):
        column = acts[:, m].tolist()
        for i, k in enumerate(candidates):
            assert fracs[i, m].item() == pytest.approx(naive.neuron_block_shares(column, p, k)[0], rel=1e-9)
        assert quad[m].item() == pytest.approx(naive.neuron_block_shares(column, p, int(freq[m]))[1], rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(p=st.sampled_from([3, 5, 7, 11, 13]), seed=st.integers(0, 2**16), n=st.integers(1, 4),
       scale=st.sampled_from([1e-6, 1.0, 1e4]))
def test_neuron_block_power_equals_the_parts_of_the_full_transform(p, seed, n, scale):
    """The half transform reads the same coefficients as the full 2D transform, and its total is Parseval's;
    compared as shares of each neuron's total (what the metrics use), also for a neuron with a large mean and a
    small spread."""
    g = torch.Generator().manual_seed(seed)
    acts = scale * torch.randn(p * p, n, generator=g, dtype=torch.float64) + 3.0 * scale
    acts[:, 0] = 10 + 1e-4 * acts[:, 0] / scale  # mean 1e5× the spread: Σx² − (Σx)²/N would err by ~1e-6 here
    fast = fo.neuron_block_power(acts, p)
    full = fo.neuron_fourier_power(acts, p)
    ref = fo.NeuronPower.from_full(full)
    per = ref.total  # [n]

    def close(a, b):
        # the large-mean neuron 0: both transforms err by ~(mean / spread)·ε ≈ 1e-11 of its total; Σx² − (Σx)²/N
        # would err by ~1e-6, far outside 1e-9
        torch.testing.assert_close(a[..., :1] / per[:1], b[..., :1] / per[:1], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(a[..., 1:] / per[1:], b[..., 1:] / per[1:], rtol=1e-9, atol=1e-12)

    for name in ("total", "row0", "col0", "pairs"):
        close(getattr(fast, name), getattr(ref, name))
    for k in range(1, (p - 1) // 2 + 1):  # the blocks against direct indexing of the full power
        idx = torch.tensor([0, 2 * k - 1, 2 * k])
        close(fast.frequency_blocks()[k - 1], full[idx[:, None], idx[None, :]].sum((0, 1)))
        close(fast.pair_blocks()[k - 1], full[2 * k - 1:2 * k + 1, 2 * k - 1:2 * k + 1].sum((0, 1)))
    fracs = fo.neuron_frequency_fractions(acts, p, fo.frequencies(p), power=fast)
    torch.testing.assert_close(fracs, fo.neuron_frequency_fractions(acts, p, fo.frequencies(p), power=full),
                               rtol=1e-7, atol=1e-9)


def test_a_constant_neuron_has_no_fourier_power():
    """Centring makes a constant neuron all zeros; the half transform must not report its rounding residue."""
    p = 7
    acts = torch.randn(p * p, 3, dtype=torch.float64)
    acts[:, 1] = 0.7310585786  # constant, not 0: F_i · x is ~1e-16, not exactly 0
    fast = fo.neuron_block_power(acts, p)
    for name in ("total", "row0", "col0", "pairs"):
        assert (getattr(fast, name)[..., 1] == 0).all(), name
    assert fo.neuron_frequency_fractions(acts, p, fo.frequencies(p), power=fast)[:, 1].eq(0).all()
    assert pm.quadratic_fraction(acts, torch.tensor([1, 2, 3]), p, power=fast)[1].item() == 0.0
    assert pm.quadratic_fraction(acts, torch.tensor([1, 2, 3]), p)[1].item() == 0.0
    full = fo.neuron_fourier_power(acts, p)  # the reference, passed as power=, agrees
    assert fo.neuron_frequency_fractions(acts, p, fo.frequencies(p), power=full)[:, 1].eq(0).all()
    torch.testing.assert_close(fo.neuron_frequency_fractions(acts, p, fo.frequencies(p), power=full),
                               fo.neuron_frequency_fractions(acts, p, fo.frequencies(p)), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- ground truth


@pytest.fixture(scope="module", params=[(31, [3, 7, 11]), (23, [2, 9])], ids=lambda v: f"p={v[0]}-keys={v[1]}")
def trig_run(request):
    p, keys = request.param
    cfg, params = trig_model(p, keys)
    acts = forward(params, grid_tokens(p), cfg, cache=True)
    return p, keys, cfg, params, acts


def test_ground_truth_model_is_correct(trig_run):
    p, keys, cfg, params, acts = trig_run
    assert (acts.logits.argmax(-1) == grid_labels(p)).all()


def test_ground_truth_key_frequencies(trig_run):
    p, keys, cfg, params, acts = trig_run
    rule1 = fo.key_frequencies_from_neurons(acts.mlp_post, p, fo.frequencies(p))
    assert rule1.keys == keys and rule1.rule == "neuron_cluster_argmax"
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    rule3 = fo.key_frequencies_by_norm(fo.fft_tokens(W_L, fo.fourier_basis(p)), p, "neuron_logit_map")
    assert rule3.keys == keys


def test_ground_truth_restricted_and_excluded_losses(trig_run):
    p, keys, cfg, params, acts = trig_run
    L, labels = acts.logits.double(), grid_labels(p)
    train, _ = nanda_split(p, 0.3, 0)
    full = cross_entropy_f64(L[train], labels[train]).item()
    restricted = pm.restricted_loss(L, labels, train, keys, p).item()
    assert restricted == pytest.approx(full, rel=0.05), "the logits live in the key directions"
    excluded = pm.excluded_loss(L, labels, train, keys, p)
    assert (excluded > 20 * full).all(), f"removing any key must hurt: excluded {excluded.tolist()} vs full {full:.2e}"
    assert pm.excluded_loss_all_keys(L, labels, train, keys, p).item() > math.log(p) * 0.5
    assert pm.cos_sum_fit(L, keys, p).fve > 0.999
    assert pm.trig_variance_fraction(L, keys, p).item() > 0.999


# ----------------------------------------------------------------------------- Fourier ablations (NCLSS §4.4)


@pytest.mark.parametrize("keys", [[1], [2, 3]])
def test_key_block_logits_match_naive(small_logits, keys):
    p, L, *_ = small_logits
    ours = pm.key_block_logits(L, keys, p)
    assert torch.allclose(ours, torch.tensor(naive.key_block_logits(L.tolist(), p, keys), dtype=torch.float64),
                          atol=1e-10)


@given(seed=st.integers(0, 10_000), keys=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))
@settings(max_examples=25, deadline=None)
def test_key_block_logits_are_a_projection_containing_the_trig_directions(seed, keys):
    p = 7
    L = rand(p * p, p, seed=seed)
    kept = pm.key_block_logits(L, keys, p)
    assert torch.allclose(pm.key_block_logits(kept, keys, p), kept, atol=1e-10), "idempotent"
    assert torch.allclose(kept.mean(0), L.mean(0), atol=1e-10), "the per-class mean (bias correction) is kept"
    # cos/sin(w_k(a+b)) lie in the key blocks, so the restricted logits are unchanged by the block projection
    restricted = pm.restricted_logits(L, keys, p)
    assert torch.allclose(pm.key_block_logits(restricted, keys, p), restricted, atol=1e-10)
    assert kept.pow(2).sum() <= L.pow(2).sum() + 1e-9


def test_key_neuron_directions_match_naive():
    p, keys = 7, [1, 3]
    W_L = rand(p, 10, seed=3)
    Q = pm.key_neuron_directions(W_L, keys, p)
    assert Q.shape == (10, 4) and torch.allclose(Q.T @ Q, torch.eye(4, dtype=torch.float64), atol=1e-12)
    P_naive = torch.tensor(naive.key_neuron_projector(W_L.tolist(), p, keys), dtype=torch.float64)
    assert torch.allclose(Q @ Q.T, P_naive, atol=1e-10)


def test_key_neuron_directions_drop_zero_and_dependent_directions():
    p = 7
    W_L = torch.zeros(p, 10, dtype=torch.float64)
    W_L[:, 0] = fo.fourier_basis(p)[1]  # only cos(w_1 c) is written, by neuron 0
    Q = pm.key_neuron_directions(W_L, [1, 2], p)
    assert Q.shape == (10, 1) and torch.allclose((Q @ Q.T)[0, 0], torch.tensor(1.0, dtype=torch.float64))
    P_naive = torch.tensor(naive.key_neuron_projector(W_L.tolist(), p, [1, 2]), dtype=torch.float64)
    assert torch.allclose(Q @ Q.T, P_naive, atol=1e-10)
    assert pm.key_neuron_directions(torch.zeros(p, 10), [1], p).shape == (10, 0)


def test_singular_values_for_counts_the_largest():
    sv = torch.tensor([[3.0, 1.0], [4.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # squared: 9, 16 | 1, 1, 1, 1
    assert pm.singular_values_for(0.9, sv).tolist() == [2, 4]
    assert pm.singular_values_for(0.5, sv).tolist() == [1, 2]
    assert pm.singular_values_for(0.64, torch.tensor([[4.0], [3.0]])).tolist() == [1]  # exactly 16/25 is enough


def test_ground_truth_fourier_ablations(trig_run):
    """The hand-built model computes only with its keys: keeping the key blocks costs nothing, removing the
    key W_L directions from the neurons leaves chance or worse."""
    p, keys, _, params, acts = trig_run
    L, labels = acts.logits.double(), grid_labels(p)
    full = cross_entropy_f64(L, labels).item()
    assert cross_entropy_f64(pm.key_block_logits(L, keys, p), labels).item() == pytest.approx(full, rel=0.05)
    W_L = pm.neuron_logit_map(params["blocks.0.mlp.W_out"], params["unembed.W_U"])
    Q = pm.key_neuron_directions(W_L, keys, p)
    in_span = acts.mlp_post.double() @ Q @ Q.T
    assert cross_entropy_f64(L - in_span @ W_L.T, labels).item() >= math.log(p) * 0.99
    assert cross_entropy_f64(L - (acts.mlp_post.double() - in_span) @ W_L.T, labels).item() == pytest.approx(
        full, rel=0.05)


# ----------------------------------------------------------------------------- Revision 2 measures


def test_key_vote_share_drops_stray_argmaxes():
    """Rule 1 with a 5% vote share: a frequency that only a few neurons pick is not a key (catalogue Revision 2)."""
    p = 13
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    cols = [torch.cos(2 * math.pi * 3 * (a + b) / p) for _ in range(39)] + [torch.cos(2 * math.pi * 5 * (a + b) / p)]
    acts = torch.stack(cols, dim=1)  # 39 neurons of frequency 3, one of frequency 5 (2.5% of the votes)
    assert fo.key_frequencies_from_neurons(acts, p, fo.frequencies(p), min_vote_share=0).keys == [3, 5]
    kf = fo.key_frequencies_from_neurons(acts, p, fo.frequencies(p))
    assert kf.keys == [3] and kf.details["votes"] == {3: 39, 5: 1}


@given(odd_p, st.integers(0, 1000))
@settings(max_examples=25)
def test_class_balanced_loss_matches_a_loop_and_equals_all_pairs_for_a_plus_b_logits(p, seed):
    labels = grid_labels(p)
    L = rand(p * p, p, seed=seed)
    rows = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))[: p * p // 2 + p]
    counts = torch.bincount(labels[rows], minlength=p)
    got = pm.class_balanced_loss(L, labels, rows, p).item()
    if bool((counts == 0).any()):
        assert math.isnan(got)
        return
    per_class = [naive.ce([L[i].tolist() for i in rows if labels[i] == c], [c] * int(counts[c])) for c in range(p)]
    assert got == pytest.approx(sum(per_class) / p, rel=1e-10)
    # logits that depend on a + b only: the class-balanced loss of any split is the all-pairs loss (the identity)
    by_sum = rand(p, p, seed=seed + 1)[labels]
    assert pm.class_balanced_loss(by_sum, labels, rows, p).item() == \
        pytest.approx(cross_entropy_f64(by_sum, labels).item(), rel=1e-12)


def test_direction_ablation_ratio_matches_a_naive_projection():
    p = 7
    labels, L = grid_labels(p), rand(p * p, p, seed=3)
    D = pm.random_grid_directions(p, 2, seed=0)
    torch.testing.assert_close(D @ D.T, torch.eye(2, dtype=torch.float64))
    train, _ = nanda_split(p, 0.5, 0)
    edited = [[L[i, c].item() - sum(D[m, i].item() * sum(D[m, j].item() * L[j, c].item() for j in range(p * p))
                                    for m in range(2)) for c in range(p)] for i in range(p * p)]
    expected = naive.ce([edited[i] for i in train], labels[train].tolist()) / naive.ce(
        [L[i].tolist() for i in train], labels[train].tolist())
    assert pm.direction_ablation_ratio(L, labels, train, D).item() == pytest.approx(expected, rel=1e-10)


def test_neuron_logit_map_residual_is_zero_in_the_key_rows_and_matches_least_squares():
    from claimlens.families.grokking import metrics as alg

    p, keys = 11, [2, 3]
    F = fo.fourier_basis(p)
    rows = F[[1 + 2 * (k - 1) for k in keys] + [2 * k for k in keys]]  # the cos and sin rows of the keys
    W_in_rows = rows.T @ rand(4, 30, seed=1)  # [p, M] inside the key rows
    assert alg.neuron_logit_map_residual(W_in_rows, keys, p) < 1e-12
    W = rand(p, 30, seed=2)
    Wc = W - W.mean(0)
    coef = torch.linalg.lstsq(rows.T, Wc).solution
    expected = (Wc - rows.T @ coef).norm() / Wc.norm()
    assert alg.neuron_logit_map_residual(W, keys, p) == pytest.approx(expected.item(), rel=1e-9)


def test_attention_head_fit_recovers_the_frequency_of_a_synthetic_head():
    from claimlens.families.grokking import metrics as alg

    p, k = 13, 4
    a = torch.arange(p, dtype=torch.float64).repeat_interleave(p)
    b = torch.arange(p, dtype=torch.float64).repeat(p)
    w = 2 * math.pi * k / p
    to_a = 0.5 + 0.2 * (torch.cos(w * a) - torch.cos(w * b)) + 0.1 * (torch.sin(w * a) - torch.sin(w * b))
    noise = 0.01 * rand(p * p, seed=4)
    pattern = torch.stack([to_a, 1 - to_a, torch.zeros_like(to_a)], dim=1).unsqueeze(1)  # [N, 1 head, 3]
    exact = alg.attention_head_fits(pattern, p)[0]
    assert exact.frequency == k and exact.fve == pytest.approx(1.0, abs=1e-10)
    noisy = alg.attention_head_fits((pattern + noise[:, None, None]).clamp(0, 1), p)[0]
    assert noisy.frequency == k and 0.9 < noisy.fve < 1.0


def test_ablated_logits_match_a_transformer_lens_forward_with_hooks(trig_run):
    """Zero-ablating the attention heads (hook_z) and the MLP's skip connection, through TransformerLens 4's
    hooks, gives the logits claimlens computes from one ordinary forward pass."""
    from claimlens.models import ablated_logits, build_bridge

    p, keys, cfg, params, acts = trig_run
    bridge = build_bridge(cfg, p, params)
    tokens = grid_tokens(p)

    def zero(x, hook):
        return torch.zeros_like(x)

    with torch.no_grad():
        attn_off = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero)])[:, -1]
        mid = {}
        def keep_mid(x, hook):
            mid["x"] = x
            return x

        def drop_skip(x, hook):  # resid_post = resid_mid + mlp_out  ->  mlp_out
            return x - mid["x"]

        skip_off = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_mid", keep_mid),
                                                            ("blocks.0.hook_resid_post", drop_skip)])[:, -1]
    torch.testing.assert_close(ablated_logits(params, acts, cfg, "attention").float(), attn_off.float(), rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(ablated_logits(params, acts, cfg, "mlp_skip").float(), skip_off.float(), rtol=1e-4,
                               atol=1e-4)


def test_neuron_block_shares_refuse_a_mismatched_power_or_frequency():
    p = 7
    acts = torch.randn(p * p, 3, dtype=torch.float64)
    with no_shape_checks(), pytest.raises(ValueError, match="power has shape"):  # its own error, as outside the tests
        pm.quadratic_fraction(acts, torch.tensor([1, 2, 3]), p, power=fo.neuron_fourier_power(acts[:, :2], p))
    with pytest.raises(ValueError, match="power has shape"):
        fo.key_frequencies_from_neurons(acts, p, power=fo.neuron_fourier_power(torch.randn(25, 3), 5))
    with pytest.raises(ValueError, match=r"above \(p − 1\)/2 = 3"):
        pm.quadratic_fraction(acts, torch.tensor([1, 2, 4]), p)
    for candidates in ([1, 4], [0, 1]):
        with pytest.raises(ValueError, match=r"outside 1 … \(p − 1\)/2 = 3"):
            fo.neuron_frequency_fractions(acts, p, candidates)
