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


class RowGroups(NamedTuple):
    """``N`` rows (beam-search hypotheses) that each belong to one of ``count`` utterances, laid out as a grid
    ``[count, width]`` (``width``: the most rows of one utterance), so that work per utterance (its encoder
    memory, its CTC probabilities) is done once for all its rows in one batched product."""
    count: int
    slots: torch.Tensor  # [N] row n's place in the flattened grid: utterance * width + its position among the rows
    width: int

    @classmethod
    def of(cls, utterances: torch.Tensor, count: int) -> RowGroups:
        """Rows of utterances ``utterances[n]`` (ids below ``count``)."""
        counts = torch.bincount(utterances, minlength=count)
        order = torch.argsort(utterances, stable=True)
        position = torch.empty_like(utterances)
        position[order] = (torch.arange(len(utterances), device=utterances.device)
                           - (counts.cumsum(0) - counts)[utterances[order]])
        width = int(counts.max())
        return cls(count, utterances * width + position, width)

    def group(self, rows: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` per row -> ``[count, width, ...]`` per utterance (zeros where an utterance has fewer rows)."""
        grid = rows.new_zeros((self.count * self.width, *rows.shape[1:]))
        grid[self.slots] = rows
        return grid.view(self.count, self.width, *rows.shape[1:])

    def ungroup(self, grid: torch.Tensor) -> torch.Tensor:
        """The inverse of ``group``."""
        return grid.reshape(-1, *grid.shape[2:])[self.slots]


class RowMemory(NamedTuple):
    """A batch of utterances' encoder memory read by decoder rows grouped by utterance (``rows``): attention
    treats each utterance's rows as that utterance's queries, so the memory is never copied per row."""
    memory: Any  # models.attention.EncoderMemory: values [B, T, D], keys [B, T, A], mask [B, T]
    rows: RowGroups


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
        self._present: tuple[torch.Tensor, Any] | None = None

    @property
    def frames(self) -> list[int]:
        """Each utterance's encoder frames: a CTC alignment has room for this many symbols at most."""
        return self.memory.mask.sum(1).tolist()

    def init_state(self, count: int) -> AttentionState:
        if count != self.memory.values.shape[0]:
            raise ValueError(f"this attention scorer holds {self.memory.values.shape[0]} utterances, not {count}")
        return AttentionState(self.decoder.initial_state(self.memory), torch.arange(count, device=self.device))

    def _rows_memory(self, utterances: torch.Tensor) -> RowMemory:
        """What the rows read: the memory of the utterances they belong to (cut down to those still searched,
        kept until another one leaves)."""
        present = torch.unique(utterances)
        if self._present is None or not torch.equal(self._present[0], present):
            memory = self.memory if len(present) == self.memory.values.shape[0] else self.memory.rows(present)
            self._present = (present, memory)
        return RowMemory(self._present[1], RowGroups.of(torch.searchsorted(present, utterances), len(present)))

    def score(self, prefixes: Sequence[list[int]], state: AttentionState, candidates: torch.Tensor | None = None):
        tokens = torch.tensor([p[-1] if p else self.eos for p in prefixes], device=self.device)
        logits, decoder_state = self.decoder.step(self._rows_memory(state.utterances), tokens, state.decoder)
        return logits.float().log_softmax(-1).cpu(), AttentionState(decoder_state, state.utterances)

    def select(self, state: AttentionState, rows: Sequence[int], columns: Sequence[int]) -> AttentionState:
        index = torch.tensor(list(rows), device=self.device, dtype=torch.long)
        return AttentionState(state.decoder.select(index), state.utterances[index])
