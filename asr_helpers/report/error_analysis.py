"""Where the errors are: character alignments, confusion counts, CER per speaker, highlighted examples.

A corpus CER says how much is wrong; a grader also wants to see *what* is wrong (which letters
the model confuses, which voices it fails on). Everything here works on reference/hypothesis
pairs, so it serves any decoder's ``recogs-*.txt``.
"""
from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import jiwer
import pandas as pd

from asr_helpers.decoding.metrics import cer

SPEAKERS_TABLE = "SPEAKERS.TXT"  # LibriSpeech's speaker table; the offline corpus writes the same format
EDIT_KINDS = ("substitution", "deletion", "insertion")
_STYLES = {"substitute": "background:#fdd49e", "delete": "background:#f4a6a6", "insert": "background:#a6dba0"}
_GAP = "\u00b7"  # shown on the other line where a character was deleted or inserted


@dataclass(frozen=True)
class Segment:
    """A run of the alignment: ``equal``, ``substitute``, ``delete`` or ``insert``, with both sides' text."""

    kind: str
    ref: str
    hyp: str


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def align_chars(ref: str, hyp: str) -> list[Segment]:
    """The minimum-edit character alignment of two transcripts (runs of spaces count as one, as in CER)."""
    ref, hyp = _squeeze(ref), _squeeze(hyp)
    if not ref or not hyp:
        return [Segment("delete", ref, "")] * bool(ref) + [Segment("insert", "", hyp)] * bool(hyp)
    chunks = jiwer.process_characters(ref, hyp).alignments[0]
    return [Segment(c.type, ref[c.ref_start_idx:c.ref_end_idx], hyp[c.hyp_start_idx:c.hyp_end_idx]) for c in chunks]


def edit_counts(pairs: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """How often each character edit occurs over (reference, hypothesis) pairs, most frequent first.

    Columns: ``kind`` (substitution / deletion / insertion), ``edit`` (``"e→a"``, ``"e"``), ``count``.
    Spaces are shown as ``␣`` so a lost word boundary is visible.
    """
    counts: Counter = Counter()
    for ref, hyp in pairs:
        for segment in align_chars(ref, hyp):
            if segment.kind == "substitute":
                counts.update(("substitution", f"{_visible(r)}\u2192{_visible(h)}") for r, h in zip(segment.ref, segment.hyp))
            elif segment.kind == "delete":
                counts.update(("deletion", _visible(r)) for r in segment.ref)
            elif segment.kind == "insert":
                counts.update(("insertion", _visible(h)) for h in segment.hyp)
    rows = [{"kind": kind, "edit": edit, "count": n} for (kind, edit), n in counts.items()]
    frame = pd.DataFrame(rows, columns=["kind", "edit", "count"])
    return frame.sort_values(["count", "kind", "edit"], ascending=[False, True, True], ignore_index=True)


def top_edits(counts: pd.DataFrame, per_kind: int = 10) -> dict[str, pd.DataFrame]:
    """The ``per_kind`` most frequent edits of each kind (an empty frame for a kind never seen)."""
    return {kind: counts[counts.kind == kind].head(per_kind).reset_index(drop=True) for kind in EDIT_KINDS}


def _visible(char: str) -> str:
    return "\u2423" if char == " " else char


def speaker_names(librispeech_root: Path | None) -> dict[str, str]:
    """Speaker id -> reader name (for the offline corpus: the TTS engine and voice) from ``SPEAKERS.TXT``.

    Returns ``{}`` when the table is missing, so the report falls back to bare speaker ids.
    """
    table = Path(librispeech_root) / SPEAKERS_TABLE if librispeech_root is not None else None
    if table is None or not table.is_file():
        return {}
    names = {}
    for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = [f.strip() for f in line.split("|")]
        if line.startswith(";") or len(fields) < 5:
            continue
        names[fields[0]] = "|".join(fields[4:]).strip("| ")  # a few LibriSpeech names contain "|"
    return names


def speaker_cer(recogs: pd.DataFrame, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Corpus CER per speaker (the utterance id's first field), worst first.

    ``recogs`` has ``id``, ``reference`` and ``hypothesis`` columns (``report.read_recogs``).
    """
    columns = ["speaker", "name", "utterances", "cer"]
    if recogs.empty:
        return pd.DataFrame(columns=columns)
    names = names or {}
    rows = []
    for speaker, group in recogs.groupby(recogs.id.str.split("-").str[0], sort=False):
        rows.append({"speaker": speaker, "name": names.get(speaker, ""), "utterances": len(group),
                     "cer": cer(list(group.reference), list(group.hypothesis))})
    return pd.DataFrame(rows, columns=columns).sort_values("cer", ascending=False, ignore_index=True)


def aligned_html(ref: str, hyp: str, width: int = 90) -> str:
    """Reference over hypothesis in monospace, aligned column by column, with substitutions, deletions
    and insertions coloured; long transcripts wrap every ``width`` columns, both lines together."""
    columns = []  # (style, reference character, hypothesis character)
    for segment in align_chars(ref, hyp):
        size = max(len(segment.ref), len(segment.hyp))
        style = _STYLES.get(segment.kind, "")
        columns += zip([style] * size, segment.ref.ljust(size, _GAP), segment.hyp.ljust(size, _GAP))
    blocks = []
    for start in range(0, max(len(columns), 1), width):
        block = columns[start:start + width]
        blocks.append(f"<b>ref</b> {_styled(block, 1)}\n<b>hyp</b> {_styled(block, 2)}")
    return ('<div style="font-family:monospace;white-space:pre;line-height:1.5;margin:2px 0 10px">'
            + "\n".join(blocks) + "</div>")


def _styled(columns: list[tuple[str, str, str]], side: int) -> str:
    """One side of aligned columns as HTML, one span per run of equally styled columns."""
    parts, run_style, run = [], None, []
    for column in columns + [(None, "", "")]:
        if column[0] != run_style and run:
            text = html.escape("".join(run))
            parts.append(f'<span style="{run_style}">{text}</span>' if run_style else text)
            run = []
        run_style = column[0]
        run.append(column[side])
    return "".join(parts)


def legend_html() -> str:
    """The colour key shown once above the aligned examples."""
    labels = {"substitute": "substituted", "delete": "deleted (missing from the hypothesis)",
              "insert": "inserted (not in the reference)"}
    keys = " ".join(f'<span style="{_STYLES[k]};padding:0 4px">{v}</span>' for k, v in labels.items())
    return f'<div style="font-size:90%">Colours: {keys}; {_GAP} marks the gap on the other line.</div>'
