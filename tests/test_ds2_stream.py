"""The streaming DeepSpeech2 (``model: ds2_stream``): its front end and network run chunk by chunk give what
the full-utterance forward gives, for any chunking; its outputs never read past the look-ahead."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from asr_helpers.data.features import StreamingLogMel
from asr_helpers.data.text import CharTokenizer
from asr_helpers.decoding.ctc import greedy_decode
from asr_helpers.inference.streaming import Streamer
from asr_helpers.models.ds2_stream import DS2Stream, StreamingRecognizer
from asr_helpers.models.registry import build_model

TOK = CharTokenizer()


def stream_model(lookahead: int = 2, feature_norm: str = "global", **encoder) -> StreamingRecognizer:
    """A tiny ds2_stream in eval mode with random BatchNorm statistics (so frozen normalisation is exercised)
    and random look-ahead taps (a fresh model's row convolution is the identity: it would hide a misplaced frame)."""
    torch.manual_seed(0)
    model = build_model("ds2_stream", "tiny", TOK, {"lookahead": lookahead, "feature_norm": feature_norm},
                        encoder=encoder)
    torch.nn.init.normal_(model.net.row.weight, 0.0, 0.5)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def speechy(samples: int, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope: frames differ, so any misplaced frame shows."""
    rng = np.random.default_rng(seed)
    envelope = 0.5 + 0.5 * np.sin(np.arange(samples) / 900.0)
    return (0.2 * envelope * rng.standard_normal(samples)).astype(np.float32)


def full_forward(model: StreamingRecognizer, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised log-mel ``[n_mels, frames]`` and log-probs ``[frames', vocab]`` of the whole utterance."""
    with torch.no_grad():
        feats, frames = model.features(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        log_probs, lengths = model.net(feats, frames)
    return feats[0, :, : int(frames[0])], log_probs[0, : int(lengths[0])]


def chunked(wave: np.ndarray, sizes) -> list[np.ndarray]:
    chunks, start = [], 0
    for size in sizes:
        if start >= len(wave):
            break
        chunks.append(wave[start:start + size])
        start += size
    return chunks + ([wave[start:]] if start < len(wave) else [])


def random_sizes(seed: int, high: int) -> list[int]:
    """Irregular chunk sizes from 0 (empty chunks) up to ``high`` samples, many under the 512-sample window."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, size=4000).tolist()


@pytest.mark.parametrize("lookahead, norm, encoder", [(2, "global", {}), (0, "global", {}), (2, "running", {}),
                                                      (3, "global", {"rnn_type": "gru"}),
                                                      (1, "running", {"conv_strides": ((2, 3), (2, 1))})])
@pytest.mark.parametrize("seed, high", [(0, 4000), (1, 600), (2, 200)])
def test_any_chunking_gives_the_full_utterance_forward(lookahead, norm, encoder, seed, high):
    model = stream_model(lookahead, norm, **encoder)
    wave = speechy(16000 + 317, seed)  # a final partial chunk: not a whole number of hops
    feats, log_probs = full_forward(model, wave)
    streamer = Streamer(model)
    partials = [streamer.feed(chunk) for chunk in chunked(wave, random_sizes(seed, high))]
    result = streamer.finish()
    assert result.log_mel.shape == tuple(feats.shape) and result.log_probs.shape == tuple(log_probs.shape)
    assert np.allclose(result.log_mel, feats.numpy(), atol=1e-4)
    assert np.allclose(result.log_probs, log_probs.numpy(), atol=1e-4)
    assert result.text == greedy_decode(log_probs[None], torch.tensor([len(log_probs)]), TOK)[0]
    assert all(result.text.startswith(p) or not p for p in partials[-1:])
    assert result.seconds == pytest.approx(len(wave) / 16000)


def test_one_sample_chunks_give_the_full_utterance_forward():
    model = stream_model(2)
    wave = speechy(1200, seed=3)  # shorter than 3 STFT windows: every frame is completed by a 1-sample chunk
    feats, log_probs = full_forward(model, wave)
    streamer = Streamer(model)
    for sample in wave:
        streamer.feed(wave[:0])
        streamer.feed(np.array([sample], dtype=np.float32))
    result = streamer.finish()
    assert np.allclose(result.log_mel, feats.numpy(), atol=1e-4)
    assert np.allclose(result.log_probs, log_probs.numpy(), atol=1e-4)


@pytest.mark.parametrize("lookahead", [0, 2, 5])
def test_an_output_frame_never_reads_audio_past_its_lookahead(lookahead):
    model = stream_model(lookahead)
    wave = speechy(12000, seed=4)
    changed = wave.copy()
    changed[8000:] = speechy(4000, seed=5)
    _, before = full_forward(model, wave)
    _, after = full_forward(model, changed)
    hop, stride = model.features.hop_length, model.net.config.time_stride
    last_frame = (8000 - model.features.mel.n_fft) // hop  # the last log-mel frame that ends before sample 8000
    untouched = last_frame // stride + 1 - lookahead        # output frames that read no later log-mel frame
    assert torch.allclose(before[:untouched], after[:untouched], atol=1e-6)
    assert not torch.allclose(before[untouched:untouched + 1], after[untouched:untouched + 1], atol=1e-6)


def test_frames_cover_every_sample_and_a_stream_flushes_them_with_zeros():
    front = StreamingLogMel(n_mels=40)
    assert front.frame_lengths(torch.tensor([1, 160, 161, 16000])).tolist() == [1, 1, 2, 100]
    front.eval()
    wave = torch.from_numpy(speechy(700))
    feats, frames = front(wave[None], torch.tensor([700]))
    emitted, used, recent = front.stream(wave, final=False)
    rest, _, _ = front.stream(wave[used:], final=True, frames_left=int(frames[0]) - emitted.shape[1])
    assert recent.shape == (40, 0)  # the global normalisation keeps no frames
    assert frames.tolist() == [5] and emitted.shape[1] == 2
    assert torch.allclose(torch.cat([emitted, rest], 1), feats[0], atol=1e-5)


def test_the_normalisation_learns_training_statistics_and_freezes_in_eval():
    front = StreamingLogMel(n_mels=40)
    waves = torch.from_numpy(np.stack([speechy(8000, 0), speechy(8000, 1)]))
    front.train()
    front(waves, torch.tensor([8000, 6000]))
    learnt = front.norm.running_mean.clone()
    assert not torch.equal(learnt, torch.zeros(40))
    front.eval()
    front(waves, torch.tensor([8000, 6000]))
    assert torch.equal(front.norm.running_mean, learnt)
    assert "norm.running_mean" in {name.removeprefix("features.") for name in
                                   build_model("ds2_stream", "tiny", TOK).checkpoint_entries()["model"]}


def test_stream_step_refuses_training_mode_and_the_settings_are_checked():
    net = build_model("ds2_stream", "tiny", TOK).net
    with pytest.raises(RuntimeError, match="eval mode"):
        net.stream_step(net.initial_state(), torch.zeros(net.config.n_mels, 4))
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="lookahead must be"):
            build_model("ds2_stream", "tiny", TOK, {"lookahead": bad})
    with pytest.raises(ValueError, match="at least its stride"):
        DS2Stream(net.config.__class__(n_mels=40, conv_kernels=((11, 1),), conv_strides=((2, 2),),
                                       conv_channels=(4,)), 1)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_each_output_frame_is_emitted_once_its_lookahead_is_heard_and_no_later(lookahead):
    model = stream_model(lookahead)
    wave = speechy(4000, seed=6)
    streamer, emitted_at = Streamer(model), []
    for i in range(len(wave)):
        streamer.feed(wave[i:i + 1])
        emitted_at += [i + 1] * (streamer.emitted_frames - len(emitted_at))
    frame_samples = model.net.config.time_stride * model.features.hop_length
    stretch_ends = [j * frame_samples + model.features.hop_length for j in range(len(emitted_at))]
    waits_ms = {(at - end) / 16 for at, end in zip(emitted_at, stretch_ends)}
    assert waits_ms == {model.latency_ms()}


def test_the_utterance_normalised_ablation_trains_decodes_whole_and_refuses_to_stream(tmp_path):
    """``feature_norm: utterance`` gives the uncentred log-mel each utterance's own statistics (what
    DeepSpeech2's features do), survives a checkpoint, and is refused by the Streamer in one line."""
    from asr_helpers.data.features import utterance_normalise
    from asr_helpers.models.registry import model_spec
    model = build_model("ds2_stream", "tiny", TOK, {"feature_norm": "utterance"}).eval()
    waves = torch.from_numpy(np.stack([speechy(8000, 0), speechy(8000, 1)]))
    feats, frames = model.features(waves, torch.tensor([8000, 6000]))
    mask = torch.arange(feats.shape[-1])[None, :] < frames[:, None]
    expected = utterance_normalise(model.features.log_mel(torch.nn.functional.pad(waves * (torch.arange(8000) < torch.tensor([[8000], [6000]])), (0, 512))[:, : model.features.samples_for(int(frames.max()))]), mask)
    assert torch.allclose(feats, expected, atol=1e-5)
    assert feats[1, :, int(frames[1]):].abs().max() == 0
    assert abs(float(feats[0].mean(-1).abs().max())) < 1e-4  # zero mean per mel over the utterance
    entries = model.checkpoint_entries()
    assert entries["stream_config"]["feature_norm"] == "utterance"
    assert not any(name.startswith("features.norm") for name in entries["model"])
    restored = model_spec("ds2_stream").recognizer.from_checkpoint({**entries, "tokenizer": TOK.to_dict()}, TOK)
    assert not restored.can_stream and build_model("ds2_stream", "tiny", TOK).can_stream
    with pytest.raises(ValueError, match="cannot stream"):
        Streamer(model)
    with pytest.raises(ValueError, match="feature_norm must be one of global, running, utterance"):
        build_model("ds2_stream", "tiny", TOK, {"feature_norm": "batch"})


def test_the_running_mean_streams_past_its_window_and_keeps_only_the_frames_it_reads(monkeypatch):
    """``feature_norm: running`` over a stream several windows long (a 37-frame window here): chunked equals
    whole, and the streamer carries at most window - 1 frames between chunks."""
    monkeypatch.setattr(StreamingLogMel, "RUNNING_WINDOW", 37)
    model = stream_model(2, "running")
    wave = speechy(16000 + 911, seed=7)
    feats, log_probs = full_forward(model, wave)
    streamer, carried = Streamer(model), set()
    for chunk in chunked(wave, random_sizes(8, 1500)):
        streamer.feed(chunk)
        carried.add(streamer._recent.shape[1])
    result = streamer.finish()
    assert max(carried) == 36 and np.allclose(result.log_mel, feats.numpy(), atol=1e-4)
    assert np.allclose(result.log_probs, log_probs.numpy(), atol=1e-4)


@pytest.mark.parametrize("gain_db", [-10, 10, 20])
def test_the_running_mean_makes_the_features_blind_to_the_recording_level(gain_db):
    """A gain g adds 2 ln g to every log-mel value; the running mean removes it, the global statistics do not.
    (Only above the log's floor: where a quiet recording's power meets it, what the floor hides is lost.)"""
    wave = 5 * speechy(12000, seed=9)
    louder = wave * np.float32(10 ** (gain_db / 20))
    running, plain = stream_model(2, "running"), stream_model(2, "global")
    for model, blind in ((running, True), (plain, False)):
        same = torch.allclose(full_forward(model, wave)[0], full_forward(model, louder)[0], atol=0.1)
        assert same == blind
    entries = running.checkpoint_entries()
    assert entries["stream_config"]["feature_norm"] == "running" and "features.norm.running_mean" in entries["model"]
    from asr_helpers.models.registry import model_spec
    restored = model_spec("ds2_stream").recognizer.from_checkpoint({**entries, "tokenizer": TOK.to_dict()}, TOK)
    assert restored.features.norm_name == "running" and restored.can_stream


@pytest.mark.parametrize("frames", [1, 36, 37, 38, 120])
def test_the_causal_window_mean_is_each_frames_mean_over_the_window_ending_there(frames):
    from asr_helpers.data.features import causal_window_mean
    feats = torch.randn(2, 5, frames)
    brute = torch.stack([feats[..., max(0, t - 36):t + 1].double().mean(-1) for t in range(frames)], -1)
    assert torch.allclose(causal_window_mean(feats, 37).double(), brute, atol=1e-6)
