"""What the label-synchronous beam search asks of a scorer, and the attention decoder as one.

The search (``beam_search``) extends hypotheses one output symbol at a time; each named scorer says,
for a whole batch of hypotheses at once, what every next symbol is worth (a log score), and the
search adds the scores up with a weight per name. The shape is ESPnet's ``ScorerInterface`` /
``BatchScorerInterface`` / ``BatchPartialScorerInterface``, duck-typed:

- ``full`` scorers score every symbol (the attention decoder); the search takes each hypothesis's
  candidates from one of them. Partial scorers score only the candidates they are handed (the CTC
  prefix score ``ctc_prefix.CTCPrefixScorer``, the word LM ``lm_fusion.FusionLM``), so their cost
  grows with the beam, not with the vocabulary.
- A scorer's state is one object for the whole batch of hypotheses (row ``i`` is hypothesis ``i``)
  of every utterance searched together; it knows which utterance each row belongs to, so the search
  only hands over rows (``select``) and utterances leave the batch by leaving no rows.
- The end symbol is a candidate like any other: its score is what ending the transcript there adds
  (the CTC probability of exactly that transcript; the LM's last word and sentence end). Nothing
  is added after a hypothesis ends, so ESPnet's ``final_score`` has no job here.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

import torch


class Scorer(Protocol):
    """A scorer of the beam search (see the module docstring)."""

    full: bool  # scores every symbol (True) or only the candidates it is handed

    def init_state(self, count: int) -> Any:
        """The state of the empty prefix of each of ``count`` utterances: row ``u`` is utterance ``u``."""

    def score(self, prefixes: Sequence[list[int]], state: Any,
              candidates: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """Step scores of the hypotheses ``prefixes`` (token ids, no start symbol) whose batch state is ``state``.

        A full scorer returns ``[N, V]`` log scores (``candidates`` is None); a partial one scores the
        ``[N, C]`` token ids ``candidates`` and returns ``[N, C]``. Either also returns the batch state
        after the step, from which ``select`` picks the survivors' states.
        """

    def select(self, state: Any, rows: Sequence[int], columns: Sequence[int]) -> Any:
        """The batch state of the extensions kept: hypothesis ``rows[j]`` extended by its candidate
        ``columns[j]`` (a full scorer's state depends on the row only)."""


class AttentionState(NamedTuple):
    """The decoder's state of every row and the utterance each row reads."""
    decoder: Any
    utterances: torch.Tensor


class AttentionScorer:
    """A batch of utterances' attention decoder as a full scorer: the log-probs of every next symbol.

    ``decoder`` has ``initial_state(memory)``, ``step(memory, tokens, state) -> (logits, state)``,
    ``state.select(index)`` and the end symbol ``eos`` (also the start symbol); ``memory`` holds the
    utterances' encoder states (padded, with their mask). Each step runs the decoder once for every row
    of every utterance, on the memory gathered by the rows' utterances (kept while they stay the same).
    """

    full = True

    def __init__(self, decoder, memory):
        self.decoder, self.memory, self.eos = decoder, memory, decoder.eos
        self.device = memory.values.device
        self._gathered: tuple[torch.Tensor, Any] | None = None

    @property
    def frames(self) -> list[int]:
        """Each utterance's encoder frames: a CTC alignment has room for this many symbols at most."""
        return self.memory.mask.sum(1).tolist()

    def init_state(self, count: int) -> AttentionState:
        if count != self.memory.values.shape[0]:
            raise ValueError(f"this attention scorer holds {self.memory.values.shape[0]} utterances, not {count}")
        return AttentionState(self.decoder.initial_state(self.memory), torch.arange(count, device=self.device))

    def _rows_memory(self, utterances: torch.Tensor):
        """The memory of each row's utterance (one utterance: a view; else gathered once per row layout)."""
        if self.memory.values.shape[0] == 1:
            return self.memory.expand(len(utterances))
        if self._gathered is None or not torch.equal(self._gathered[0], utterances):
            self._gathered = (utterances, self.memory.rows(utterances))
        return self._gathered[1]

    def score(self, prefixes: Sequence[list[int]], state: AttentionState, candidates: torch.Tensor | None = None):
        tokens = torch.tensor([p[-1] if p else self.eos for p in prefixes], device=self.device)
        logits, decoder_state = self.decoder.step(self._rows_memory(state.utterances), tokens, state.decoder)
        return logits.float().log_softmax(-1).cpu(), AttentionState(decoder_state, state.utterances)

    def select(self, state: AttentionState, rows: Sequence[int], columns: Sequence[int]) -> AttentionState:
        index = torch.tensor(list(rows), device=self.device, dtype=torch.long)
        return AttentionState(state.decoder.select(index), state.utterances[index])
