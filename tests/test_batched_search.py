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


@pytest.mark.parametrize("attention", ["location", "dot"])
def test_the_decoder_steps_rows_of_several_utterances_as_it_steps_each_alone(attention):
    """Rows 0, 0, 1, 2, 2, 2 read utterances of three lengths (padded together): every row's next-symbol
    scores are those of its utterance's decoder run alone, for two steps (the rows' layout changing between)."""
    from asr_helpers.data.text import CharTokenizer
    from asr_helpers.decoding.scorers import AttentionScorer
    from asr_helpers.models.las import JointCTCAttention, joint_config
    torch.manual_seed(0)
    model = JointCTCAttention(joint_config("tiny", CharTokenizer().vocab_size, attention=attention)).eval()
    lengths = torch.tensor([40, 25, 33])
    with torch.no_grad():
        encoded = model.encode(torch.randn(3, 40, 40), lengths)
        together = AttentionScorer(model.decoder, model.memory(encoded))
        frames = encoded.lengths
        assert len(set(frames.tolist())) == 3
        alone = [AttentionScorer(model.decoder, model.memory_of(encoded.states[u:u + 1, :n], frames[u:u + 1]))
                 for u, n in enumerate(frames.tolist())]
        rows = [0, 0, 1, 2, 2, 2]
        state = together.select(together.init_state(3), rows, [0] * 6)
        singles = [a.select(a.init_state(1), [0] * rows.count(u), [0] * rows.count(u)) for u, a in enumerate(alone)]
        first, state = together.score([[5], [7], [5], [9], [5], [7]], state)
        for u, (a, single) in enumerate(zip(alone, singles)):
            mine = [i for i, r in enumerate(rows) if r == u]
            expected, singles[u] = a.score([[[5], [7], [5], [9], [5], [7]][i] for i in mine], single)
            assert torch.allclose(first[mine], expected, atol=1e-5), (attention, u)
        state = together.select(state, [1, 2, 4], [0, 0, 0])  # one row of each utterance goes on
        second, _ = together.score([[7, 3], [5, 3], [5, 3]], state)
        for u, (local, prefix) in enumerate(zip([1, 0, 1], [[7, 3], [5, 3], [5, 3]])):
            expected, _ = alone[u].score([prefix], alone[u].select(singles[u], [local], [0]))
            assert torch.allclose(second[u:u + 1], expected, atol=1e-5), (attention, u)
