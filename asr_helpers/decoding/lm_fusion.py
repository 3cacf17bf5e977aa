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

As a partial scorer of the beam search (``scorers.Scorer``), ``FusionLM`` scores a batch of
hypotheses' candidates by their gains, ``alpha * (change in LM score) + beta * (words completed)``,
the end symbol by finishing the transcript (the word in progress, then the sentence end).
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
class LMBatch:
    """Where each row stands for the LM: ids (``FusionLM``'s own) of the KenLM state after its completed
    words (``history``) and of the word in progress (``node``), the completed words' natural-log score and
    count, and ``score``: ``completed`` plus the look-ahead of the word in progress."""
    history: np.ndarray   # [N] (a scored step: [N, C], one entry per candidate)
    node: np.ndarray
    completed: np.ndarray
    words: np.ndarray
    score: np.ndarray


_ENDS_WORD, _ENDS_TEXT = -1, -2  # a unit's entry in a word's child table: it completes a word / it is the end symbol
_MEMO_LIMIT = 200_000  # word scores remembered (history, word) before the memo starts afresh


class FusionLM:
    """A KenLM word model scoring the joint search's hypotheses unit by unit (see the module docstring).

    ``pieces[i]`` is the text output unit ``i`` adds (a space ends a word; '' for the blank and for
    symbols beyond the tokenizer). ``eos`` is the search's end symbol (default: one past the pieces,
    as the attention decoder has it). Unigrams come from ``unigrams.txt`` beside the model or from an
    ARPA model itself, as for the CTC LM decoder.

    Scoring a batch stays out of Python loops except where KenLM must be asked: a unit that only adds
    letters moves a row along a table of words in progress (each word's children over the whole unit
    vocabulary and their look-ahead, built once per word), gathered for all rows and candidates at once;
    a unit that completes a word, and the end symbol, are worked out once per distinct (history, word in
    progress, unit) of the step, and KenLM is called once per distinct (history, word), remembered.
    Those loops stay in Python because KenLM's states are Python objects with no batch interface.
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
        self._histories: list = []              # id -> kenlm.State
        self._history_ids: dict = {}            # kenlm.State -> id
        self._partials: list[str] = []          # id -> word in progress
        self._partial_ids: dict[str, int] = {}
        self._children: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # word id -> (child ids, their look-ahead)
        self._word_scores: dict[tuple[int, str], tuple[int, float]] = {}  # (history, word) -> (history, log score)

    @classmethod
    def for_tokenizer(cls, lm_path: Path | str, tokenizer, **weights) -> FusionLM:
        """Pieces from a tokenizer's labels: characters as they are, BPE pieces with their word-start mark as a space."""
        return cls(lm_path, [label.replace("\u2581", " ") for label in tokenizer.labels], **weights)

    def with_weights(self, alpha: float, beta: float) -> FusionLM:
        """The same loaded model, look-ahead and memo with other weights (a tuning grid loads the LM once)."""
        weighted = copy.copy(self)
        weighted.alpha, weighted.beta = alpha, beta
        return weighted

    def init_state(self, count: int) -> LMBatch:
        """The empty transcript of ``count`` utterances: the sentence start, no word yet."""
        context = self._state_type()
        self.model.BeginSentenceWrite(context)
        return LMBatch(np.full(count, self._history_id(context)), np.full(count, self._partial_id("")),
                       np.zeros(count), np.zeros(count, dtype=np.int64), np.zeros(count))

    def score(self, prefixes: Sequence[list[int]], state: LMBatch,
              candidates: torch.Tensor) -> tuple[torch.Tensor, LMBatch]:
        """The gains ``[N, C]`` of each hypothesis's candidates (``[N, C]`` token ids) and the states they lead to
        (an ``LMBatch`` of ``[N, C]`` arrays): ``alpha * (change in LM score) + beta * (words completed)``."""
        tokens = np.asarray(candidates, dtype=np.int64)
        count = tokens.shape[1]
        nodes, inverse = np.unique(state.node, return_inverse=True)
        tables = [self._children_of(int(node)) for node in nodes]
        child = np.stack([t[0] for t in tables])[inverse[:, None], tokens]
        after = LMBatch(np.repeat(state.history[:, None], count, 1), np.where(child >= 0, child, 0),
                        np.repeat(state.completed[:, None], count, 1), np.repeat(state.words[:, None], count, 1),
                        np.stack([t[1] for t in tables])[inverse[:, None], tokens])
        after.score[:] = after.completed + after.score
        self._complete(state, tokens, np.argwhere(child == _ENDS_WORD), after, ends_text=False)
        self._complete(state, tokens, np.argwhere(child == _ENDS_TEXT), after, ends_text=True)
        gains = self.alpha * (after.score - state.score[:, None]) + self.beta * (after.words - state.words[:, None])
        return torch.from_numpy(gains), after

    def select(self, state: LMBatch, rows, columns) -> LMBatch:
        rows, columns = np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        return LMBatch(*(values[rows, columns] for values in (state.history, state.node, state.completed,
                                                               state.words, state.score)))

    def _complete(self, state: LMBatch, tokens: np.ndarray, where: np.ndarray, after: LMBatch, ends_text: bool) -> None:
        """Fill ``after`` at the (row, column) pairs ``where`` whose unit completes a word (or, ``ends_text``,
        is the end symbol), working each distinct (history, word in progress, unit) out once."""
        if not len(where):
            return
        rows, columns = where[:, 0], where[:, 1]
        keys = np.stack([state.history[rows], state.node[rows], tokens[rows, columns]], axis=1)
        distinct, which = np.unique(keys, axis=0, return_inverse=True)
        which = which.reshape(-1)
        outcomes = [(self._finish if ends_text else self._word_end)(h, n, t) for h, n, t in distinct.tolist()]
        width = max(len(scores) for _, _, scores, _, _ in outcomes)
        scores = np.array([o[2] + [0.0] * (width - len(o[2])) for o in outcomes]).reshape(len(outcomes), width)
        completed = state.completed[rows]
        for j in range(width):  # one word at a time, as the sums run in ``sentence_score``'s order
            completed = completed + scores[which, j]
        history, node, words, ahead = (np.array([o[k] for o in outcomes]) for k in (0, 1, 3, 4))
        after.history[rows, columns], after.node[rows, columns] = history[which], node[which]
        after.completed[rows, columns], after.words[rows, columns] = completed, state.words[rows] + words[which]
        after.score[rows, columns] = completed + ahead[which]

    def _children_of(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """Word in progress ``node``'s table over the units: the word each unit that only adds letters makes of it
        and that word's look-ahead (``_ENDS_WORD`` for a unit with a space, ``_ENDS_TEXT`` for the end symbol)."""
        if node not in self._children:
            partial, width = self._partials[node], max(len(self.pieces), self.eos + 1)
            child, ahead = np.empty(width, dtype=np.int64), np.zeros(width)
            for token in range(width):
                piece = self.pieces[token] if token < len(self.pieces) else ""
                if token == self.eos or " " in piece:
                    child[token] = _ENDS_TEXT if token == self.eos else _ENDS_WORD
                else:
                    child[token], ahead[token] = self._partial_id(partial + piece), self.lookahead(partial + piece)
            self._children[node] = (child, ahead)
        return self._children[node]

    def _word_end(self, history: int, node: int, token: int) -> tuple[int, int, list[float], int, float]:
        """(history, word in progress, the completed words' scores, their count, the look-ahead) after ``token``."""
        partial, scores = self._partials[node], []
        for char in self.pieces[token]:
            if char != " ":
                partial += char
            elif partial:
                history, score = self._word(history, partial)
                partial = ""
                scores.append(score)
        return history, self._partial_id(partial), scores, len(scores), self.lookahead(partial)

    def _finish(self, history: int, node: int, _token: int) -> tuple[int, int, list[float], int, float]:
        """The same once the transcript ends: the word in progress completed, then the sentence end."""
        scores = []
        if self._partials[node]:
            history, score = self._word(history, self._partials[node])
            scores.append(score)
        words = len(scores)
        history, score = self._word(history, "</s>")
        return history, self._partial_id(""), scores + [score], words, 0.0

    def _word(self, history: int, word: str) -> tuple[int, float]:
        """KenLM's state after ``word`` follows state ``history``, and the word's natural-log score (remembered)."""
        if (history, word) not in self._word_scores:
            if len(self._word_scores) >= _MEMO_LIMIT:
                self._word_scores.clear()
            after = self._state_type()
            score = LN10 * self.model.BaseScore(self._histories[history], word, after)
            self._word_scores[(history, word)] = (self._history_id(after), score)
        return self._word_scores[(history, word)]

    def _history_id(self, context) -> int:
        if context not in self._history_ids:
            self._history_ids[context] = len(self._histories)
            self._histories.append(context)
        return self._history_ids[context]

    def _partial_id(self, partial: str) -> int:
        if partial not in self._partial_ids:
            self._partial_ids[partial] = len(self._partials)
            self._partials.append(partial)
        return self._partial_ids[partial]

    def sentence_score(self, text: str) -> float:
        """Natural-log LM score of a whole transcript (what the gains over its units add up to with beta 0)."""
        return LN10 * self.model.score(text, bos=True, eos=True)
