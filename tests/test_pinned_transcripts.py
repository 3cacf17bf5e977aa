"""Every decoder's transcripts of a fixed model and fixed files stay what they were (tests/fixtures/pinned)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

PINNED = Path(__file__).parent / "fixtures" / "pinned"
EXPECTED = json.loads((PINNED / "expected.json").read_text())


@pytest.mark.parametrize("decoder", sorted(EXPECTED))
def test_every_decoder_writes_the_pinned_transcripts(decoder, tmp_path, capsys):
    code, out, err = run_cli(capsys, "transcribe", "--checkpoint", str(PINNED / "model.pt"),
                             "--input", str(PINNED / "audio"), "--output", str(tmp_path), "--decoder", decoder,
                             "--lm", str(PINNED / "3-gram.arpa"), "--beam-width", "8", "--attention-beam", "4",
                             "--pool-size", "1")
    assert code == 0, err
    written = {p.stem: p.read_text() for p in sorted(tmp_path.glob("*.txt"))}
    assert written == EXPECTED[decoder]
