"""The decoder table: every decoder's facts in one place.

Notebook 04, ``transcribe``, the widgets, the report, the checklist and the benchmarks read a
decoder's label, whether it needs a word LM, which model output it needs, and which weights 04
tunes for it (and on which metric) from here. A model offers the decoders whose ``head`` it has
(``models.registry``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder: ``head`` is the model output it reads (``ctc`` log-probs, or the ``attention`` decoder
    with the encoder states); ``tuned`` the weights notebook 04 tunes on dev, chosen by lowest ``metric``;
    ``scorers`` the scorers of the label-synchronous beam search it is a weight set of (``beam_search``;
    empty: not that search)."""
    name: str
    label: str
    head: str
    needs_lm: bool = False
    tuned: tuple[str, ...] = ()
    metric: str = ""
    scorers: tuple[str, ...] = ()


TABLE: dict[str, DecoderSpec] = {spec.name: spec for spec in (
    DecoderSpec("greedy", "CTC greedy (argmax)", "ctc"),
    DecoderSpec("beam", "CTC prefix beam search", "ctc"),
    DecoderSpec("lm", "CTC beam search + KenLM (pyctcdecode)", "ctc", needs_lm=True, tuned=("alpha", "beta"),
                metric="wer"),
    DecoderSpec("attention", "attention decoder, greedy", "attention"),
    DecoderSpec("attention_beam", "attention decoder, beam search", "attention", scorers=("attention",)),
    DecoderSpec("joint", "joint CTC/attention beam search", "attention", tuned=("ctc_weight",), metric="cer",
                scorers=("attention", "ctc")),
    DecoderSpec("joint+lm", "joint beam search with the word LM fused in", "attention", needs_lm=True,
                tuned=("ctc_weight", "alpha", "beta"), metric="cer", scorers=("attention", "ctc", "lm")),
)}
DECODERS = tuple(TABLE)  # every decoder name, in the order tables and figures list them


def spec(name: str) -> DecoderSpec:
    """The decoder called ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in TABLE:
        raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
    return TABLE[name]


def file_safe(name: str) -> str:
    """A decoder name as run-folder file names spell it (``joint+lm`` -> ``joint_lm``: no ``+`` in a file name)."""
    return name.replace("+", "_")


def decoders_for(heads: frozenset[str] | set[str], with_lm: bool = True) -> list[str]:
    """Decoder names a model with these output ``heads`` offers (those needing an LM only ``with_lm``)."""
    return [s.name for s in TABLE.values() if s.head in heads and (with_lm or not s.needs_lm)]
