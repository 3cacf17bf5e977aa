"""The plug-in CTC model: loss and log-probs from a batch, the one output-length rule, shapes per stage."""
from __future__ import annotations

import torch

from asr_helpers.data.dataset import collate
from asr_helpers.models.recognizer import ModelOutput, pipeline_shapes
from asr_helpers.models.registry import build_model
from asr_helpers.data.text import CharTokenizer

TOK = CharTokenizer()


def batch_of(seconds: list[float], texts: list[str]):
    torch.manual_seed(1)
    return collate([{"wave": 0.1 * torch.randn(int(s * 16000)), "tokens": torch.tensor(TOK.encode(t)), "text": t,
                     "id": str(i)} for i, (s, t) in enumerate(zip(seconds, texts))])


def test_forward_returns_loss_log_probs_and_the_conv_output_lengths():
    model = build_model("deepspeech2", "tiny", TOK).eval()
    batch = batch_of([1.0, 0.6], ["hello there", "hi"])
    output = model(batch)
    assert isinstance(output, ModelOutput) and output.loss.ndim == 0 and torch.isfinite(output.loss)
    frames = model.features.frame_lengths(batch.wave_lengths)
    assert output.lengths.tolist() == model.net.output_lengths(frames).tolist()
    assert output.log_probs.shape == (2, int(output.lengths.max()), TOK.vocab_size)
    assert len(model.transcribe(output)) == 2
    assert set(model.checkpoint_entries()) == {"model", "model_config"}


def test_learnable_follows_the_output_length_rule():
    model = build_model("deepspeech2", "tiny", TOK)
    samples = torch.tensor([16000])
    frames = int(model.net.output_lengths(model.features.frame_lengths(samples)))
    too_long = [[1, 2] * frames]
    repeats = [[3] * ((frames + 1) // 2 + 1)]  # fewer tokens than frames, but repeats need blanks between
    assert model.learnable([1.0] * 3, [[1, 2] * (frames // 2)] + too_long + repeats) == [True, False, False]
    assert model.learnable([1.0], [[1, 2] * (frames // 2)], max_speed_factor=1.2) == [False]


def test_pipeline_shapes_follow_one_batch_through_every_stage():
    model = build_model("deepspeech2", "tiny", TOK, augment="full")
    batch = batch_of([1.0, 0.5], ["a cat", "sat"])
    stages = dict(pipeline_shapes(model, batch))
    assert model.training, "the trace leaves the model's mode as it was"
    frames = stages["log-mel [B, mels, frames]"][2]
    time_after_convs = stages["convolutions [B, C, F, T']"][3]
    assert stages["wave [B, samples]"] == (2, 16000) and stages["log-mel [B, mels, frames]"][:2] == (2, 40)
    assert time_after_convs == int(model.net.output_lengths(torch.tensor([frames])))
    assert stages["recurrent layers [B, T', hidden]"][:2] == (2, time_after_convs)
    assert stages["log-probs [B, T', vocab]"] == (2, time_after_convs, TOK.vocab_size)
    assert stages["CTC loss (scalar)"] == ()
