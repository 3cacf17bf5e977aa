"""The training benchmark runs both sides and reports a consistent ratio; its FLOPs and options hold."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from asr_helpers.models.deepspeech2 import DeepSpeech2, model_config, training_flops_per_audio_second
from asr_helpers.tools.bench import time_augment_throughput
from asr_helpers.tools.bench_train import bench_model, bench_train, peak_tflops, with_time_stride
from asr_helpers.training.trainer import Trainer


def test_bench_train_compares_with_the_baseline():
    result = bench_train("tiny", seconds=2.0, compare_baseline=True, batch_seconds=30.0, utterances=12,
                         rnn_type="lstm")
    assert result["rnn_type"] == "lstm"  # the tiny preset's GRU, overridden
    assert result["steps"] >= 1 and result["audio_sec_per_sec"] > 0 and result["baseline_audio_sec_per_sec"] > 0
    assert result["speedup_vs_baseline"] == result["audio_sec_per_sec"] / result["baseline_audio_sec_per_sec"]
    assert 0 <= result["padding_fraction"] < 1 and 0 <= result["baseline_padding_fraction"] < 1
    assert result["baseline_batch_size"] == max(1, round(result["mean_batch_size"]))
    assert result["achieved_tflops"] == pytest.approx(result["flops_per_audio_second"] * result["audio_sec_per_sec"] / 1e12)
    assert result["mfu"] is None  # no data-sheet peak on a CPU


def test_bench_train_takes_the_trainers_step_for_the_joint_model(monkeypatch):
    batches = []
    step = Trainer.train_step
    monkeypatch.setattr(Trainer, "train_step", lambda self, batch: batches.append(batch) or step(self, batch))
    result = bench_train("tiny", seconds=1.0, batch_seconds=20.0, utterances=4, arch="las", time_stride=3)
    assert result["arch"] == "las" and result["time_stride"] == 3 and result["audio_sec_per_sec"] > 0
    assert len(batches) == result["steps"] + 1  # the timed steps and the untimed first one
    assert result["parameters"] > bench_model("deepspeech2", "tiny", "masked", time_stride=3).parameter_count()
    with pytest.raises(ValueError, match="model must be one of"):
        bench_train("tiny", seconds=1.0, utterances=4, arch="conformer")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_counted_flops_match_the_shapes(preset):
    """PyTorch's counter sees every product of a masked GRU on the CPU, so it checks the formula."""
    config = model_config(preset, 29, rnn_mode="masked", rnn_type="gru")
    model, frames = DeepSpeech2(config), 300
    with FlopCounterMode(display=False) as counter:
        log_probs, _ = model(torch.randn(2, config.n_mels, frames), torch.tensor([frames, frames]))
        log_probs.sum().backward()
    counted = counter.get_total_flops() / (2 * frames / 100)
    assert training_flops_per_audio_second(config) == pytest.approx(counted, rel=0.02)


def test_one_way_rnns_count_half_the_recurrent_flops():
    """ds2_stream's LSTMs run one way: its count keeps the convolutions and head, and halves the RNNs."""
    from asr_helpers.models.ds2_stream import DS2Stream
    config = model_config("small", 29)
    flops = {d: training_flops_per_audio_second(config, rnn_directions=d) for d in (0, 1, 2)}
    assert flops[1] == pytest.approx(flops[0] + (flops[2] - flops[0]) / 2) and flops[0] < flops[1] < flops[2]
    assert (DeepSpeech2.rnn_directions, DS2Stream.rnn_directions) == (2, 1)


def test_time_stride_three_runs_a_third_of_the_frames():
    config = with_time_stride(model_config("base", 29), 3)
    assert config.time_stride == 3 and config.conv_strides[1:] == model_config("base", 29).conv_strides[1:]
    model = DeepSpeech2(config).eval()
    with torch.no_grad():
        _, lengths = model(torch.randn(1, config.n_mels, 301), torch.tensor([301]))
    assert int(lengths) == 101
    two = training_flops_per_audio_second(model_config("base", 29))
    assert training_flops_per_audio_second(config) < two
    with pytest.raises(ValueError, match="not a multiple"):
        with_time_stride(model_config("base", 29, conv_strides=((2, 1), (2, 2), (2, 1))), 3)


def test_peak_is_known_for_half_precision_on_named_gpus_only():
    assert peak_tflops("Tesla T4", "fp16") == 65.0 and peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert peak_tflops("Tesla T4", "fp32") is None and peak_tflops("Some Future GPU", "fp16") is None


def test_augment_throughput_restores_the_thread_count():
    threads = torch.get_num_threads()
    assert time_augment_throughput(2.0, "light", utterance_seconds=1.0) > 0
    assert torch.get_num_threads() == threads
