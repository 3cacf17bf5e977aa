"""The training benchmark runs both sides and reports a consistent ratio."""
from __future__ import annotations

from asr_helpers.bench import bench_train


def test_bench_train_compares_with_the_baseline():
    result = bench_train("tiny", seconds=2.0, compare_baseline=True, batch_seconds=30.0, utterances=12,
                         rnn_type="lstm")
    assert result["rnn_type"] == "lstm"  # the tiny preset's GRU, overridden
    assert result["steps"] >= 1 and result["audio_sec_per_sec"] > 0 and result["baseline_audio_sec_per_sec"] > 0
    assert result["speedup_vs_baseline"] == result["audio_sec_per_sec"] / result["baseline_audio_sec_per_sec"]
    assert 0 <= result["padding_fraction"] < 1 and 0 <= result["baseline_padding_fraction"] < 1
    assert result["baseline_batch_size"] == max(1, round(result["mean_batch_size"]))
    assert result["flops_per_audio_second"] is None  # counted on GPUs only
