"""The engines behind the ``lm`` decoder (CTC beam search + KenLM), by name.

``pyctcdecode`` (the reference, ``ctc.LMDecoder``), ``flashlight`` (flashlight's C++ search with a
lexicon of the unigrams) and ``flashlight-lexfree`` (its lexicon-free search, the word LM scored
in Python); see ``flashlight_lm``. Every engine takes the same arguments and weights, so a tuned
alpha/beta means the same to each. Cheap to import: an engine's module loads when it is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

LM_ENGINES = ("pyctcdecode", "flashlight", "flashlight-lexfree")
DEFAULT_ENGINE = "pyctcdecode"


def build_lm_decoder(engine: str, labels: Sequence[str], lm_path: Path | str | None,
                     unigrams: Sequence[str] | Path | str | None = None, **options):
    """The LM decoder of ``engine`` (``ctc.LMDecoder``'s arguments: alpha, beta, beam_width, ...).

    An unknown engine, or a flashlight one without ``flashlight-text`` installed, is a one-line error.
    """
    if engine == "pyctcdecode":
        from asr_helpers.decoding.ctc import LMDecoder
        return LMDecoder(labels, lm_path, unigrams, **options)
    if engine not in LM_ENGINES:
        raise ValueError(f"unknown LM engine {engine!r}; choose from {', '.join(LM_ENGINES)}")
    try:
        from asr_helpers.decoding.flashlight_lm import FlashlightLMDecoder
    except ImportError as error:
        raise ImportError(f"--lm-engine {engine} needs flashlight-text (pip install flashlight-text): {error}") \
            from None
    return FlashlightLMDecoder(labels, lm_path, unigrams, lexicon=engine == "flashlight", **options)
