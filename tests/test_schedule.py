import pytest

from asr_helpers.training.schedule import one_cycle, session_progress


def test_one_cycle_shape():
    peak = 1e-3
    assert one_cycle(0.0, peak) == pytest.approx(peak / 25)
    assert one_cycle(0.15, peak) == pytest.approx(peak)
    assert one_cycle(1.0, peak) == pytest.approx(peak / 1e3)
    rising = [one_cycle(p / 100, peak) for p in range(16)]
    falling = [one_cycle(p / 100, peak) for p in range(15, 101)]
    assert rising == sorted(rising) and falling == sorted(falling, reverse=True)


def test_progress_follows_the_budget_when_it_is_ahead():
    assert session_progress(10, 100, 0.0, elapsed=5, budget=None) == pytest.approx(0.1)
    assert session_progress(10, 100, 0.0, elapsed=50, budget=100) == pytest.approx(0.5)
    assert session_progress(90, 100, 0.0, elapsed=1, budget=100) == pytest.approx(0.9)
    # a resumed session squeezes the remaining schedule into its own budget
    assert session_progress(10, 100, 0.6, elapsed=50, budget=100) == pytest.approx(0.8)
    assert session_progress(10, 100, 0.6, elapsed=500, budget=100) == pytest.approx(1.0)
