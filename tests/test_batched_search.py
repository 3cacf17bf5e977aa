"""The batched search: utterances searched together find what each finds searched alone (the pinned tiny model)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_helpers.data.audio import load_audio
from asr_helpers.decoding.attention_decoding import AttentionSearch, frame_batches, search_settings
from asr_helpers.training.checkpoint import load_recognizer

PINNED = Path(__file__).parent / "fixtures" / "pinned"
CUTS = {"a": ("9301-93011-0000", 1.6), "b": ("9303-93031-0000", 2.4), "c": ("9303-93031-0001", 1.0),
        "b_short": ("9303-93031-0000", 0.5)}  # utterance: (file, seconds of its start)
COMPOSITIONS = [["a"], ["a", "b", "c"], ["c", "a"], ["b", "b_short"], ["a", "b", "c", "b_short", "a"]]


@pytest.fixture(scope="module")
def model_and_items():
    recognizer, tokenizer, _ = load_recognizer(PINNED / "model.pt")
    items = {}
    with torch.no_grad():
        for name, (stem, seconds) in CUTS.items():
            wave = load_audio(PINNED / "audio" / f"{stem}.flac")[: int(seconds * 16000)]
            feats, frames = recognizer.features(wave[None], torch.tensor([len(wave)]))
            items[name] = recognizer.encodings(feats, frames)[0]
    return recognizer, tokenizer, items


@pytest.mark.parametrize("decoder", ["attention_beam", "joint", "joint+lm"])
@pytest.mark.parametrize("beam", [2, 4])
def test_a_batch_finds_each_utterances_own_best_hypothesis(model_and_items, decoder, beam):
    """Different lengths (``b_short`` ends long before the others), a batch of one, more utterances than
    the beam, one utterance twice: each utterance's best is the one it gets searched alone."""
    recognizer, tokenizer, items = model_and_items
    search = AttentionSearch(recognizer.joint, tokenizer, search_settings(beam=beam, lm_beam=beam))
    if decoder == "joint+lm":
        search = search.with_lm(PINNED / "3-gram.arpa")
    alone = {name: search.hypotheses(decoder, [item])[0][0] for name, item in items.items()}
    assert len({tuple(h.tokens) for h in alone.values()}) > 1, "the utterances differ"
    for names in COMPOSITIONS:
        found = search.hypotheses(decoder, [items[name] for name in names])
        for name, nbest in zip(names, found):
            assert nbest[0].tokens == alone[name].tokens, (names, name)
            assert nbest[0].score == pytest.approx(alone[name].score, abs=1e-4)
            assert nbest[0].scores == pytest.approx(alone[name].scores, abs=1e-4)


def test_decode_batches_by_padded_frames_and_keeps_the_order(model_and_items):
    recognizer, tokenizer, items = model_and_items
    assert frame_batches([30, 10, 20, 200], 90) == [[1, 2, 0], [3]]
    assert frame_batches([5, 5], 1) == [[0], [1]], "an utterance over the budget goes alone"
    names = ["a", "b_short", "c", "b"]
    one_by_one = [AttentionSearch(recognizer.joint, tokenizer, batch_frames=1).decode("joint", [items[n]])[0]
                  for n in names]
    assert AttentionSearch(recognizer.joint, tokenizer).decode("joint", [items[n] for n in names]) == one_by_one
