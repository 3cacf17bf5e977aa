"""CTC beam search + KenLM on flashlight's C++ decoder: the second LM engine beside pyctcdecode.

``FlashlightLMDecoder`` has ``ctc.LMDecoder``'s interface (``decode``, ``decode_batch`` on a
forked pool, ``set_params``, ``close``, a context manager), so ``transcribe``, 04's tuning and
the tuned alpha/beta work unchanged. It drives the classes of ``flashlight-text`` (PyPI) that
torchaudio's ``ctc_decoder`` wraps, directly: one word trie serves every utterance, and numpy
arrays go in without torch tensors or a lexicon file on disk. Two modes:

- lexicon (engine ``flashlight``): the unigram list is spelled into a trie and the search,
  LM included, runs in C++; it writes only words of the list (pyctcdecode also writes other
  words, charged its unknown-word offset). Each word is spelled with the space after it, so
  words need a space between them as in pyctcdecode (spelled without it, a word boundary is
  free and a misheard word splits into short frequent ones: dev-clean WER 42.7 % against
  40.3 % on a las run), and a frame that is surely a space, after the last, closes the last word.
- lexicon-free (``flashlight-lexfree``): flashlight's lexicon-free search asks its LM for a
  score at every token (it expects a character LM), so ``WordLM`` answers in Python from the
  word KenLM the way pyctcdecode scores: a word when the space (or the end) closes it, and a
  word in progress that no unigram starts with is charged pyctcdecode's partial-word penalty.

Same scale as pyctcdecode: KenLM gives log10 and pyctcdecode scores ``alpha * ln(10) * log10 p +
beta`` per word, so flashlight's ``lm_weight`` is ``alpha * ln(10)`` and ``word_score`` is beta.
Same pruning: tokens below ``token_min_logp`` at a frame (bar the frame's best, and the blank,
which pyctcdecode needs less as it can write any word) are masked before the search, and
``-beam_prune_logp`` is the beam threshold. This module needs ``flashlight-text``;
``lm_engines`` imports it only when a flashlight engine is chosen.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import kenlm
import numpy as np
from flashlight.lib.text import decoder as fl
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from asr_helpers.decoding.ctc import load_kenlm
from asr_helpers.decoding.forked_pool import ForkedPool

LN10 = math.log(10.0)
UNK_OFFSET = -10.0          # pyctcdecode's unk_score_offset: log10 charge of a word outside the unigrams
MASKED = np.float32(-1e30)  # a pruned token's log-prob: never chosen, and no inf - inf
UNK_WORD = "<unk>"


def special_ids(labels: Sequence[str]) -> tuple[int, int]:
    """The blank ('') and word separator (' ') ids; BPE pieces are refused (no lexicon spells them)."""
    if "" not in labels or " " not in labels or any(len(label) > 1 for label in labels):
        raise ValueError("the flashlight LM engines need character labels with a blank and a space; "
                         "use --lm-engine pyctcdecode for BPE models")
    return list(labels).index(""), list(labels).index(" ")


def partial_penalty(partial: str, prefixes: frozenset[str]) -> float:
    """pyctcdecode's charge for a word in progress that no unigram starts with (longer: more)."""
    if not partial or partial in prefixes:
        return 0.0
    return UNK_OFFSET * max(1.0, len(partial) / 6)


class WordLM(fl.LM):
    """A word KenLM as a per-token LM for the lexicon-free search, scored as pyctcdecode does.

    A state is a node of flashlight's state tree (one per token history, so hypotheses merge
    only when their text is the same); ``_info`` keeps per node the KenLM context, the word in
    progress and the score of reaching it, computed once. ``start`` clears it, so it holds one
    utterance's hypotheses at a time. ``alpha`` and ``beta`` are applied here (the search's
    ``lm_weight`` is 1), so the lexicon-free search has a word bonus too.
    """

    def __init__(self, model: kenlm.Model, words: Sequence[str], labels: Sequence[str], separator: int) -> None:
        fl.LM.__init__(self)
        self.model, self.labels, self.separator = model, list(labels), separator
        self.words = frozenset(words)
        self.prefixes = frozenset(w[:i] for w in words for i in range(1, len(w) + 1))
        self.alpha, self.beta = 0.5, 1.0
        self._info: dict = {}

    def start(self, start_with_nothing: bool):
        state, context = fl.LMState(), kenlm.State()
        self.model.BeginSentenceWrite(context)
        self._info = {state: (context, "", 0.0)}
        return state

    def score(self, state, token: int):
        child = state.child(token)
        known = self._info.get(child)
        if known is None:
            known = self._info[child] = self._step(self._info[state], token)
        return child, known[2]

    def finish(self, state):
        context, partial, _ = self._info[state]
        score = 0.0
        if partial:
            context, score = self._close_word(context, partial)
        return state, score + self.alpha * LN10 * self.model.BaseScore(context, "</s>", kenlm.State())

    def _step(self, info: tuple, token: int) -> tuple:
        """(KenLM context, word in progress, score change) after one more token."""
        context, partial, _ = info
        if token != self.separator:
            grown = partial + self.labels[token]
            return context, grown, partial_penalty(grown, self.prefixes) - partial_penalty(partial, self.prefixes)
        if not partial:
            return context, "", 0.0
        after, score = self._close_word(context, partial)
        return after, "", score

    def _close_word(self, context, word: str) -> tuple:
        """The KenLM context after ``word`` and the score change of closing it (its partial charge refunded)."""
        after = kenlm.State()
        log10 = self.model.BaseScore(context, word, after) + (0.0 if word in self.words else UNK_OFFSET)
        return after, self.alpha * LN10 * log10 + self.beta - partial_penalty(word, self.prefixes)


def word_trie(lm: fl.LM, words: Sequence[str], labels: Sequence[str], separator: int) -> fl.Trie:
    """The lexicon: each word (its index in ``words``) spelled in label ids, smeared with unigram scores
    so a word in progress is charged its best completion (flashlight's look-ahead)."""
    index = {label: i for i, label in enumerate(labels)}
    trie, start = fl.Trie(len(labels), separator), lm.start(False)
    for i, word in enumerate(words):
        trie.insert([index[c] for c in word] + [separator], i, lm.score(start, i)[1])
    trie.smear(fl.SmearingMode.MAX)
    return trie


class FlashlightLMDecoder:
    """CTC beam search with n-gram shallow fusion on flashlight; ``lexicon`` picks the mode (module doc).

    Takes ``ctc.LMDecoder``'s arguments; the unigrams (a list, a file, or ``unigrams.txt`` next
    to the model) are the lexicon, less words spelled with characters the labels lack.
    """

    def __init__(self, labels: Sequence[str], lm_path: Path | str | None = None,
                 unigrams: Sequence[str] | Path | str | None = None, *, alpha: float = 0.5, beta: float = 1.0,
                 beam_width: int = 64, token_min_logp: float = -5.0, beam_prune_logp: float = -10.0,
                 lexicon: bool = True) -> None:
        self.labels = list(labels)
        self.blank, self.separator = special_ids(self.labels)
        if lm_path is None:
            raise ValueError("the flashlight LM engines need a language model (lm_path)")
        self.lm_path, self.lexicon = Path(lm_path), lexicon
        self.beam_width, self.token_min_logp, self.beam_prune_logp = beam_width, token_min_logp, beam_prune_logp
        model, words = load_kenlm(self.lm_path, self.labels, unigrams)
        spellable = set(self.labels) - {"", " "}
        self.words = [w for w in words if set(w) <= spellable]
        if lexicon:
            self._lm = KenLM(str(self.lm_path), Dictionary(self.words + [UNK_WORD]))
            self._trie = word_trie(self._lm, self.words, self.labels, self.separator)
            self._closing_frame = np.full((1, len(self.labels)), MASKED, dtype=np.float32)
            self._closing_frame[0, self.separator] = 0.0
        else:
            self._lm = WordLM(model, self.words, self.labels, self.separator)
        self.params = (alpha, beta)
        self._pool = ForkedPool()

    def set_params(self, alpha: float, beta: float) -> None:
        """Change the LM weight and word bonus (the next search uses them; pool workers get them per task)."""
        self.params = (alpha, beta)

    def _search(self, beam_size_token: int):
        """A search for one utterance (cheap: the trie and LM are shared); only tokens that can survive
        the masking are tried at a frame."""
        alpha, beta = self.params
        common = dict(beam_size=self.beam_width, beam_size_token=beam_size_token,
                      beam_threshold=-self.beam_prune_logp)
        if self.lexicon:
            options = fl.LexiconDecoderOptions(**common, lm_weight=alpha * LN10, word_score=beta,
                                               unk_score=float("-inf"), sil_score=0.0, log_add=True,
                                               criterion_type=fl.CriterionType.CTC)
            return fl.LexiconDecoder(options, self._trie, self._lm, self.separator, self.blank,
                                     len(self.words), [], False)
        self._lm.alpha, self._lm.beta = alpha, beta
        options = fl.LexiconFreeDecoderOptions(**common, lm_weight=1.0, sil_score=0.0, log_add=True,
                                               criterion_type=fl.CriterionType.CTC)
        return fl.LexiconFreeDecoder(options, self._lm, self.separator, self.blank, [])

    def decode(self, log_probs) -> str:
        """Best text for one utterance's log-probs [T, V]."""
        return self.decode_prepared(self._masked(log_probs))

    def decode_prepared(self, matrix: np.ndarray) -> str:
        """Best text for a matrix ``_masked`` has prepared (what a pool worker is sent)."""
        if not len(matrix):
            return ""
        if self.lexicon:
            matrix = np.vstack([matrix, self._closing_frame])
        kept = int((matrix > MASKED).sum(axis=1).max())
        results = self._search(kept).decode(matrix.ctypes.data, matrix.shape[0], matrix.shape[1])
        return self._text(results[0]) if results else ""

    def _text(self, result) -> str:
        if self.lexicon:
            return " ".join(self.words[w] for w in result.words if 0 <= w < len(self.words))
        ids = list(result.tokens)
        tokens = [t for i, t in enumerate(ids) if 0 <= t != self.blank and (i == 0 or t != ids[i - 1])]
        return " ".join("".join(self.labels[t] for t in tokens).split())

    def _masked(self, log_probs) -> np.ndarray:
        """float32 [T, V] with tokens below ``token_min_logp`` (except each frame's best, and the blank)
        set to ``MASKED``."""
        matrix = np.array(log_probs.detach().cpu().numpy() if hasattr(log_probs, "detach") else log_probs,
                          dtype=np.float32, order="C")
        if matrix.ndim != 2 or matrix.shape[1] != len(self.labels):
            raise ValueError(f"expected log-probs [frames, {len(self.labels)}], got shape {matrix.shape}")
        if matrix.size and not np.isfinite(matrix.max(axis=1)).all():
            raise ValueError("log-probs contain NaN or rows without any finite value")
        keep = matrix >= self.token_min_logp
        keep[np.arange(len(matrix)), matrix.argmax(axis=1)] = True
        keep[:, self.blank] = True  # so a letter no lexicon word can take never ends every hypothesis
        matrix[~keep] = MASKED
        return matrix

    def decode_batch(self, log_probs_list: Sequence, pool_size: int = 1) -> list[str]:
        """Best texts for many utterances, on ``pool_size`` processes forked once after loading
        (``forked_pool``: they share the LM's pages, and each task carries the current alpha and beta)."""
        return self._pool.decode(self, [self._masked(m) for m in log_probs_list], pool_size)

    def close(self) -> None:
        """Stop the worker pool (the LM is freed with the decoder)."""
        self._pool.close()

    def __enter__(self) -> FlashlightLMDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
