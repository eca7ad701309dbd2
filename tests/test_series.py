"""Temporal helpers on hand-worked series, and their failure messages."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claimlens.core.series import (
    Series,
    checkpoint_gap,
    detect_phases,
    lead_margin,
    spearman,
)

S = Series.of("loss", [0, 10, 20, 30, 40, 50], [5.0, 3.0, 4.0, 1.0, 0.5, 0.6])


def test_first_crossing_window_at_and_extrema():
    assert S.first_crossing(1.0, "below") == 30
    assert S.first_crossing(4.5, "above") == 0
    assert S.first_crossing(4.5, "above", after=10) is None
    assert S.window(10, 30).epochs.tolist() == [10, 20, 30]
    assert S.at(25) == 4.0 and S.argmin() == (40, 0.5) and S.argmax() == (0, 5.0)
    with pytest.raises(KeyError, match="starts at epoch 0, after -1"):
        S.at(-1)


def test_epochs_must_increase():
    with pytest.raises(ValueError, match="strictly increasing"):
        Series.of("x", [0, 20, 10], [1, 2, 3])


def test_monotone_violations():
    assert S.monotone_violations("decreasing") == [(20, pytest.approx(1 / 3)), (50, pytest.approx(0.2))]
    assert S.monotone_violations("decreasing", rel_tol=0.25) == [(20, pytest.approx(1 / 3))]


def test_labelled_series_rows_and_values():
    s = Series.of("attn", [0, 10], [[0.1, 0.2], [0.9, 0.8]], labels=("pos=0", "pos=1"))
    assert s.row("pos=1").values.tolist() == [0.9, 0.8] and s.row("pos=1").name == "attn[pos=1]"
    with pytest.raises(ValueError, match="has 2 rows"):
        s.values
    with pytest.raises(KeyError, match="no label 'pos=2'"):
        s.row("pos=2")
    assert s.window(start=10).data.tolist() == [[0.2], [0.8]]


def test_lead_margin_reads_the_run_epochs():
    epochs = [0, 100, 200, 400, 800, 1600, 3200]  # irregular, as an imported run may be
    assert checkpoint_gap(epochs, 0) == 100 and checkpoint_gap(epochs, 800) == 400
    # the share of the later event's epoch, when it is the larger: 0.5 × 60 > 2 × 10 ...
    assert lead_margin([0, 10, 20, 30, 40, 50, 60], 20, 60, fraction=0.5, min_checkpoints=2) == 30
    # ... otherwise two of the larger gap before either event: 2 × 1600 (before 3200) > 0.1 × 3200,
    # and 2 × 200 (before 400) > 2 × 100 (before 100)
    assert lead_margin(epochs, 200, 3200, fraction=0.1, min_checkpoints=2) == 3200
    assert lead_margin(epochs, 100, 400, fraction=0.1, min_checkpoints=2) == 400
    with pytest.raises(ValueError, match="epoch 150 is not a checkpoint"):
        lead_margin(epochs, 150, 400, fraction=0.1, min_checkpoints=2)


@given(st.integers(1, 200), st.integers(5, 60), st.data())
def test_a_lead_within_the_checkpoint_spacing_never_passes(spacing, n, data):
    """Whatever the cadence, a lead of one checkpoint is below the margin (min_checkpoints ≥ 2)."""
    epochs = [i * spacing for i in range(n)]
    i = data.draw(st.integers(1, n - 2))
    first, second = epochs[i], epochs[i + 1]
    margin = lead_margin(epochs, first, second, fraction=data.draw(st.floats(0, 1)), min_checkpoints=2)
    assert second - first < margin
    # saving half as often coarsens the resolution, so the margin for the same two events can only grow
    a, b = sorted(data.draw(st.lists(st.integers(1, (n - 1) // 2), min_size=2, max_size=2, unique=True)))
    fine = lead_margin(epochs, epochs[2 * a], epochs[2 * b], fraction=0.1, min_checkpoints=2)
    assert lead_margin(epochs[::2], epochs[2 * a], epochs[2 * b], fraction=0.1, min_checkpoints=2) >= fine


def test_phase_detection_on_a_synthetic_grokking_curve():
    epochs = list(range(0, 1001, 50))
    # excluded loss: falls to a minimum at 150, then rises; test loss peaks (9) at 150, is 10x below at 450,
    # is within 2x of its final value (0.002) first at 850; test accuracy passes 0.95 at 550.
    excl = [4, 2, 1, 0.5, 0.8, 2, 4, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]
    test = [4, 6, 8, 9, 8, 6, 4, 2, 1, 0.8, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.003, 0.0025, 0.0022, 0.002]
    acc = [0.0] * 11 + [0.96] + [1.0] * 9
    phases = detect_phases(Series.of("excl", epochs, excl), Series.of("test", epochs, test), Series.of("acc", epochs, acc))
    assert phases.as_dict() == {"t1": 150, "t2": 450, "t3": 850, "grok_epoch": 550}


def test_phase_detection_without_grokking_still_finds_t1():
    epochs = [0, 10, 20, 30]
    phases = detect_phases(Series.of("e", epochs, [3, 1, 2, 3]), Series.of("t", epochs, [4, 5, 6, 7]),
                           Series.of("a", epochs, [0, 0, 0, 0]))
    assert phases.t1 == 10 and phases.t2 is None and phases.t3 is None and phases.grok_epoch is None


@given(values=st.lists(st.floats(0.01, 100), min_size=2, max_size=40))
def test_sorted_series_are_monotone(values):
    up = Series.of("x", range(len(values)), sorted(values))
    assert up.monotone_violations("increasing") == []
    down = Series.of("x", range(len(values)), sorted(values, reverse=True))
    assert down.monotone_violations("decreasing") == []
    crossing = up.first_crossing(values[0], "above")
    assert crossing is not None and float(up.values[crossing]) >= values[0]


def naive_spearman(x, y):
    """Textbook: rank by counting (ties averaged), then Pearson's formula on the ranks, in plain Python."""

    def ranks(v):
        return [sum(u < a for u in v) + (sum(u == a for u in v) - 1) / 2 for a in v]

    rx, ry = ranks(list(x)), ranks(list(y))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (vx * vy)


floats = st.floats(-1e3, 1e3, allow_nan=False)


@given(st.lists(st.tuples(st.integers(-5, 5), floats), min_size=3, max_size=30))
def test_spearman_matches_the_naive_formula(pairs):
    x, y = [float(a) for a, _ in pairs], [b for _, b in pairs]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return
    assert spearman(x, y) == pytest.approx(naive_spearman(x, y), abs=1e-9)


@given(st.lists(floats, min_size=3, max_size=30, unique=True))
def test_spearman_is_one_under_monotone_maps_and_minus_one_reversed(x):
    assert spearman(x, [v ** 3 + 2 * v for v in x]) == pytest.approx(1.0)
    assert spearman(x, [-v for v in x]) == pytest.approx(-1.0)


def test_spearman_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal length"):
        spearman([1.0, 2.0], [1.0, 2.0, 3.0])
