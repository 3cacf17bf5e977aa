"""A KenLM word model inside the joint CTC/attention search: shallow fusion with a prefix look-ahead.

The joint search extends hypotheses one output unit (a character or a BPE piece) at a time, but a
word model only scores whole words. Scoring words only when they end fails: a hypothesis inside
a word carries no LM cost yet, so the search postpones word ends (measured: 54 % CER where the
joint search alone had 16 %). The look-ahead charges a partial word ``p`` what the words it can
still become weigh, ``log sum of P_unigram(w) over the words w starting with p``, and replaces that
charge with the word's real LM score ``log P(w | previous words)`` once it ends. Every unit's
share is known as soon as it is added, and a finished transcript's total is exactly its LM score
(the charges telescope). A partial word that starts no known word pays ``unk_penalty`` for each
letter beyond the longest prefix a known word has (refunded, like every charge, when the word ends).

``FusionLM.advance`` gives the LM state after one more unit; ``gain`` is what the search adds to a
hypothesis's score for that step: ``alpha * (change in LM score) + beta * (words completed)``. As a
partial scorer of the beam search (``scorers.Scorer``) it scores a batch of hypotheses' candidates by
their gains, the end symbol by finishing the transcript (``finish``).
"""
from __future__ import annotations

import bisect
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from asr_helpers.decoding.ctc import load_kenlm

LN10 = math.log(10)


class PrefixLookahead:
    """Natural log of the unigram probability mass of the vocabulary words that start with a prefix."""

    def __init__(self, words: Sequence[str], log10_probs: Sequence[float], unk_penalty: float = -10.0):
        ordered = sorted(zip(words, log10_probs))
        self.words = [word for word, _ in ordered]
        self.mass = np.concatenate([[0.0], np.cumsum([10.0 ** p for _, p in ordered])])
        self.unk_penalty = unk_penalty
        self._memo: dict[str, float] = {"": 0.0}

    def __call__(self, prefix: str) -> float:
        if prefix not in self._memo:
            low = bisect.bisect_left(self.words, prefix)
            high = bisect.bisect_left(self.words, prefix + "\uffff", low)
            mass = self.mass[high] - self.mass[low]
            self._memo[prefix] = math.log(mass) if mass > 0 else self(prefix[:-1]) + self.unk_penalty
        return self._memo[prefix]


@dataclass(frozen=True)
class LMState:
    """Where a hypothesis stands for the LM: the completed words (KenLM's state) and the word in progress."""
    context: object     # kenlm.State after the completed words
    partial: str        # letters of the word in progress ('' between words)
    score: float        # natural log: the completed words' LM score plus the look-ahead of ``partial``
    words: int          # completed words
    completed: float    # natural log: the completed words' LM score alone


class FusionLM:
    """A KenLM word model scoring the joint search's hypotheses unit by unit (see the module docstring).

    ``pieces[i]`` is the text output unit ``i`` adds (a space ends a word; '' for the blank and for
    symbols beyond the tokenizer). ``eos`` is the search's end symbol (default: one past the pieces,
    as the attention decoder has it). Unigrams come from ``unigrams.txt`` beside the model or from an
    ARPA model itself, as for the CTC LM decoder.
    """

    full = False

    def __init__(self, lm_path: Path | str, pieces: Sequence[str], alpha: float = 0.5, beta: float = 0.0,
                 unk_penalty: float = -10.0, eos: int | None = None):
        import kenlm
        self.model, words = load_kenlm(Path(lm_path), pieces)
        self.pieces = list(pieces)
        self.eos = len(self.pieces) if eos is None else eos
        self.alpha, self.beta = alpha, beta
        self.lookahead = PrefixLookahead(words, [self.model.score(w, bos=False, eos=False) for w in words], unk_penalty)
        self._state_type = kenlm.State

    @classmethod
    def for_tokenizer(cls, lm_path: Path | str, tokenizer, **weights) -> FusionLM:
        """Pieces from a tokenizer's labels: characters as they are, BPE pieces with their word-start mark as a space."""
        return cls(lm_path, [label.replace("\u2581", " ") for label in tokenizer.labels], **weights)

    def with_weights(self, alpha: float, beta: float) -> FusionLM:
        """The same loaded model and look-ahead with other weights (a tuning grid loads the LM once)."""
        weighted = copy.copy(self)
        weighted.alpha, weighted.beta = alpha, beta
        return weighted

    def init_state(self) -> list[LMState]:
        """The state of the empty transcript (a batch of one): the sentence start, no word yet."""
        context = self._state_type()
        self.model.BeginSentenceWrite(context)
        return [LMState(context, "", 0.0, 0, 0.0)]

    def score(self, prefixes: Sequence[list[int]], states: list[LMState],
              candidates: torch.Tensor) -> tuple[torch.Tensor, list[list[LMState]]]:
        """The gains ``[N, C]`` of each hypothesis's candidates (``[N, C]`` token ids) and the states they lead to."""
        gains = np.zeros(tuple(candidates.shape))
        after = []
        for i, state in enumerate(states):
            row = [self.finish(state) if token == self.eos else self.advance(state, token)
                   for token in candidates[i].tolist()]
            gains[i] = [self.gain(state, new) for new in row]
            after.append(row)
        return torch.from_numpy(gains), after

    def select(self, states: list[list[LMState]], rows, columns) -> list[LMState]:
        return [states[row][column] for row, column in zip(rows, columns)]

    def _word(self, context, word: str, completed: float) -> tuple[object, float]:
        """KenLM's state and the completed words' score once ``word`` follows ``context``."""
        after = self._state_type()
        return after, completed + LN10 * self.model.BaseScore(context, word, after)

    def advance(self, state: LMState, token: int) -> LMState:
        """The state after output unit ``token``."""
        context, partial, completed, words = state.context, state.partial, state.completed, state.words
        for char in self.pieces[token] if token < len(self.pieces) else "":
            if char != " ":
                partial += char
            elif partial:
                context, completed = self._word(context, partial, completed)
                partial, words = "", words + 1
        return LMState(context, partial, completed + self.lookahead(partial), words, completed)

    def finish(self, state: LMState) -> LMState:
        """The state once the transcript ends: the word in progress completed, then the sentence end."""
        context, completed, words = state.context, state.completed, state.words
        if state.partial:
            context, completed = self._word(context, state.partial, completed)
            words += 1
        end = self._state_type()
        completed += LN10 * self.model.BaseScore(context, "</s>", end)
        return LMState(end, "", completed, words, completed)

    def gain(self, before: LMState, after: LMState) -> float:
        """What the search adds for going from ``before`` to ``after``."""
        return self.alpha * (after.score - before.score) + self.beta * (after.words - before.words)

    def sentence_score(self, text: str) -> float:
        """Natural-log LM score of a whole transcript (what the gains over its units add up to with beta 0)."""
        return LN10 * self.model.score(text, bos=True, eos=True)
