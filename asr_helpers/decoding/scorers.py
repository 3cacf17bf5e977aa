"""What the label-synchronous beam search asks of a scorer, and the attention decoder as one.

The search (``beam_search``) extends hypotheses one output symbol at a time; each named scorer says,
for a whole batch of hypotheses at once, what every next symbol is worth (a log score), and the
search adds the scores up with a weight per name. The shape is ESPnet's ``ScorerInterface`` /
``BatchScorerInterface`` / ``BatchPartialScorerInterface``, duck-typed:

- ``full`` scorers score every symbol (the attention decoder); the search takes each hypothesis's
  candidates from one of them. Partial scorers score only the candidates they are handed (the CTC
  prefix score ``ctc_prefix.CTCPrefixScorer``, the word LM ``lm_fusion.FusionLM``), so their cost
  grows with the beam, not with the vocabulary.
- A scorer's state is one object for the whole batch of hypotheses (row ``i`` is hypothesis ``i``),
  so the batch can grow to the hypotheses of many utterances without changing the interface.
- The end symbol is a candidate like any other: its score is what ending the transcript there adds
  (the CTC probability of exactly that transcript; the LM's last word and sentence end). Nothing
  is added after a hypothesis ends, so ESPnet's ``final_score`` has no job here.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch


class Scorer(Protocol):
    """A scorer of the beam search (see the module docstring)."""

    full: bool  # scores every symbol (True) or only the candidates it is handed

    def init_state(self) -> Any:
        """The state of the empty prefix: a batch of one hypothesis."""

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


class AttentionScorer:
    """One utterance's attention decoder as a full scorer: the log-probs of every next symbol.

    It wraps what the search was handed before there were scorers: a decoder with
    ``initial_state(memory)``, ``step(memory, tokens, state) -> (logits, state)``, ``state.select(index)``
    and the end symbol ``eos`` (also the start symbol), and the utterance's encoder memory (batch 1).
    """

    full = True

    def __init__(self, decoder, memory):
        if memory.values.shape[0] != 1:
            raise ValueError(f"an attention scorer reads one utterance, got a batch of {memory.values.shape[0]}")
        self.decoder, self.memory, self.eos = decoder, memory, decoder.eos
        self.device = memory.values.device

    @property
    def frames(self) -> int:
        """The utterance's encoder frames: a CTC alignment has room for this many symbols at most."""
        return int(self.memory.mask.sum())

    def init_state(self):
        return self.decoder.initial_state(self.memory)

    def score(self, prefixes: Sequence[list[int]], state, candidates: torch.Tensor | None = None):
        tokens = torch.tensor([p[-1] if p else self.eos for p in prefixes], device=self.device)
        logits, state = self.decoder.step(self.memory.expand(len(prefixes)), tokens, state)
        return logits.float().log_softmax(-1).cpu(), state

    def select(self, state, rows: Sequence[int], columns: Sequence[int]):
        return state.select(torch.tensor(list(rows), device=self.device))
