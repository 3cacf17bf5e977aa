"""The CTC prefix score: how likely a CTC head finds that a transcript *starts* with a prefix.

Joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition"; ESPnet's ``CTCPrefixScore``) extends each beam hypothesis ``g``
by a token ``c`` and asks the CTC head for ``log p(g + c + anything | x)``. The attention
decoder alone happily emits a fluent transcript the audio does not support (skipped or repeated
words); the prefix score vetoes such hypotheses because CTC must align every token with frames.

State of a prefix ``g``: two log-probabilities per frame ``t``, the probability that frames
``0..t`` collapse to ``g`` ending in a non-blank (``r_n``) or in a blank (``r_b``). The prefix
score of ``g + c`` needs only ``g``'s state: ``psi = log sum over t of phi[t - 1] * p_t(c)``, one
log-sum-exp over frames for every candidate of every hypothesis of every utterance at once. The
state of ``g + c`` (a linear recursion over frames, solved with cumulative sums and a cumulative
log-sum-exp) is computed only for the extensions the search keeps, a beam's worth instead of the
pre-beam's 1.5 x beam per hypothesis. Utterances of different lengths share padded ``[B, V, T]``
log-probs; each row reads its own utterance's frames only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from asr_helpers.decoding.scorers import RowGroups

LOG_ZERO = -1e10  # finite "log 0" (as in ESPnet), so score differences never turn into NaN
_LOG_FLOOR = -1e4  # log-probs below this are 0 in float32 anyway; keeps the cumulative sums exact
_SMALLEST_SUM = 1e-250  # a product sum below this may have lost digits to underflow: redone in logs


@dataclass(frozen=True)
class PrefixState:
    """A batch of prefixes: ``r_n``/``r_b`` ``[N, T]``, prefix scores ``psi`` ``[N]``, each row's utterance ``[N]``."""
    r_n: torch.Tensor
    r_b: torch.Tensor
    psi: torch.Tensor
    utterances: torch.Tensor


@dataclass(frozen=True)
class PendingStep:
    """One step scored but not yet taken: the prefixes before it (``length`` tokens, the last one ``last``
    ``[N]``, -1 when empty), their candidates ``[N, C]`` and the candidates' prefix scores ``[N, C]``."""
    before: PrefixState
    length: int
    last: torch.Tensor
    candidates: torch.Tensor
    psi: torch.Tensor


def _linear_recursion(start_value: torch.Tensor, feed: torch.Tensor, emit: torch.Tensor) -> torch.Tensor:
    """Solve ``a[t] = logaddexp(a[t-1], feed[t-1]) + emit[t]`` for ``t = 1..n`` given ``a[0]``, along the last axis.

    Arrays are ``[K, n + 1]``; column 0 of ``feed`` is used, column 0 of ``emit`` is not. With
    ``E[t] = emit[1] + ... + emit[t]``: ``a[t] = E[t] + logsumexp(a[0], feed[s] - E[s] for s < t)``.
    """
    cumulative = torch.cat([torch.zeros_like(emit[:, :1]), torch.cumsum(emit[:, 1:], dim=1)], dim=1)
    terms = torch.cat([start_value[:, None], feed[:, :-1] - cumulative[:, :-1]], dim=1)
    return cumulative + torch.logcumsumexp(terms, dim=1)


def padded_log_probs(log_probs: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Utterances' CTC log-probs (``[frames, vocab]`` arrays or tensors) as one ``[B, vocab, T]`` float64
    tensor, floored at ``_LOG_FLOOR`` and padded with 0, and their frames ``[B]``."""
    matrices = [torch.as_tensor(np.asarray(m.detach().float().cpu() if hasattr(m, "detach") else m),
                                dtype=torch.float64) for m in log_probs]
    for m in matrices:
        if m.ndim != 2 or m.shape[0] == 0:
            raise ValueError(f"expected CTC log-probs [frames, vocab] with frames > 0, got shape {tuple(m.shape)}")
    frames = torch.tensor([m.shape[0] for m in matrices])
    padded = torch.zeros(len(matrices), matrices[0].shape[1], int(frames.max()), dtype=torch.float64)
    for row, m in enumerate(matrices):
        padded[row, :, :m.shape[0]] = m.clamp(min=_LOG_FLOOR).T
    return padded, frames


class CTCPrefixScorer:
    """Prefix scores of a batch of utterances' CTC log-probs (a list of ``[frames, vocab]``, numpy or tensor).

    ``eos`` is the attention decoder's end symbol (any id, usually one past the CTC vocabulary):
    its score is the probability that the transcript is exactly the prefix. The blank is never a
    candidate (score ``LOG_ZERO``). As a partial scorer of the beam search (``scorers.Scorer``) it
    scores a step by the change of the prefix score; ``device`` is where the work runs (the model's).
    """

    full = False

    def __init__(self, log_probs: Sequence, blank: int, eos: int, device: torch.device | str = "cpu"):
        padded, frames = padded_log_probs(log_probs)
        self.x = padded.to(device)           # [B, V, T]
        self.p = self.x.exp().transpose(1, 2).contiguous()  # [B, T, V] probabilities (padding: 1, never weighed)
        self.frames = frames.to(device)      # [B]
        self.blank, self.eos = blank, eos

    def init_state(self, count: int) -> PrefixState:
        """The empty prefix of each of the ``count`` utterances: every frame so far was blank (psi = 0)."""
        if count != len(self.x):
            raise ValueError(f"this CTC scorer holds {len(self.x)} utterances, not {count}")
        r_b = torch.cumsum(self.x[:, self.blank], dim=1)
        return PrefixState(torch.full_like(r_b, LOG_ZERO), r_b, torch.zeros(count, dtype=torch.float64,
                                                                            device=r_b.device),
                           torch.arange(count, device=r_b.device))

    def score(self, prefixes: Sequence[list[int]], state: PrefixState,
              candidates: torch.Tensor) -> tuple[torch.Tensor, PendingStep]:
        """What each candidate adds, ``log p(prefix + c ...) - log p(prefix ...)`` ``[N, C]``, and the pending step."""
        pending = self.prefix_scores(prefixes, state, candidates)
        return (pending.psi - state.psi[:, None]).cpu(), pending

    def prefix_scores(self, prefixes: Sequence[list[int]], state: PrefixState, candidates) -> PendingStep:
        """Prefix scores ``log p(prefix + c ...)`` ``[N, C]`` for candidates ``[N, C]`` (token ids) of
        hypotheses of one length (a beam at one step, no start symbol), as a step still to be taken."""
        device = self.x.device
        candidates = torch.as_tensor(np.asarray(candidates), dtype=torch.long, device=device).reshape(len(prefixes), -1)
        if len({len(p) for p in prefixes}) > 1:
            raise ValueError("prefix scores need prefixes of one length (a beam at one step)")
        length = len(prefixes[0])
        last = torch.tensor([p[-1] if p else -1 for p in prefixes], device=device)
        ends, blanks = candidates == self.eos, candidates == self.blank
        tokens = candidates.masked_fill(ends, self.blank)  # any CTC id: the end's score is set below
        psi = self._psi(length, state, last, tokens)
        frame = (self.frames[state.utterances] - 1)[:, None]
        end = torch.logaddexp(state.r_n.gather(1, frame), state.r_b.gather(1, frame))
        psi = torch.where(ends, end.expand_as(psi), psi).masked_fill(blanks, LOG_ZERO)
        return PendingStep(state, length, last, candidates, psi)

    def _psi(self, length: int, state: PrefixState, last: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``log p(prefix + tokens[n, c] ...)`` ``[N, C]``: the new token's first frame ``t`` (at least ``length``),
        after the prefix was done by frame ``t - 1`` (``phi``); a token equal to the last one needs a blank between."""
        start, total, utterances = max(length, 1), self.x.shape[2], state.utterances
        first = (self.x[:, :, 0][utterances[:, None], tokens] if length == 0 else
                 torch.full(tokens.shape, LOG_ZERO, dtype=self.x.dtype, device=self.x.device))
        if start >= total:
            return first
        beyond = torch.arange(start, total, device=self.x.device) >= self.frames[utterances][:, None]   # [N, T']
        r_n, r_b = state.r_n[:, start - 1:total - 1], state.r_b[:, start - 1:total - 1]
        new = self._emitted(torch.logaddexp(r_n, r_b).masked_fill(beyond, float("-inf")), utterances, start, tokens)
        repeat = tokens == last[:, None]
        if bool(repeat.any()):
            emit = self.x[:, :, start:][utterances, last.clamp(min=0)]                               # [N, T']
            again = torch.logsumexp((r_b + emit).masked_fill(beyond, float("-inf")), dim=1)
            new = torch.where(repeat, again[:, None], new)
        return torch.logaddexp(first, new)

    def _emitted(self, phi: torch.Tensor, utterances: torch.Tensor, start: int, tokens: torch.Tensor) -> torch.Tensor:
        """``log sum over t >= start of exp(phi[n, t - start]) p_t(tokens[n, c])`` ``[N, C]``.

        One batched product per step: each row's ``exp(phi)``, scaled by its maximum, times its utterance's
        probabilities of every unit (rows grouped by utterance, so nothing is copied per candidate). A sum
        far below the row's best (where the product could underflow) is redone as a log-sum-exp.
        """
        peak = phi.max(dim=1).values
        finite = torch.isfinite(peak)
        scale = torch.where(finite, peak, torch.zeros_like(peak))
        groups = RowGroups.of(utterances, len(self.x))
        products = torch.bmm(groups.group(torch.exp(phi - scale[:, None])), self.p[:, start:])     # [B, K, V]
        sums = groups.ungroup(products).gather(1, tokens)
        result = scale[:, None] + torch.log(sums)
        lost = (sums < _SMALLEST_SUM) & finite[:, None]
        if bool(lost.any()):
            rows, columns = lost.nonzero(as_tuple=True)
            terms = phi[rows] + self.x[:, :, start:][utterances[rows], tokens[rows, columns]]
            result[rows, columns] = torch.logsumexp(terms, dim=1)
        return result

    def select(self, pending: PendingStep, rows: Sequence[int], columns: Sequence[int]) -> PrefixState:
        """The states of the extensions kept (row ``rows[j]`` by its candidate ``columns[j]``): the two recursions."""
        device = self.x.device
        rows_t = torch.as_tensor(list(rows), dtype=torch.long, device=device)
        columns_t = torch.as_tensor(list(columns), dtype=torch.long, device=device)
        before, tokens = pending.before, pending.candidates[rows_t, columns_t].clamp(max=self.x.shape[1] - 1)
        utterances = before.utterances[rows_t]
        previous_n, previous_b = before.r_n[rows_t], before.r_b[rows_t]
        emit = self.x[utterances, tokens]                                              # [K, T]
        phi = torch.where((tokens == pending.last[rows_t])[:, None], previous_b, torch.logaddexp(previous_n, previous_b))
        r_n, r_b = torch.full_like(emit, LOG_ZERO), torch.full_like(emit, LOG_ZERO)
        start = max(pending.length, 1)
        if pending.length == 0:
            r_n[:, 0] = emit[:, 0]
        if start < emit.shape[1]:
            r_n[:, start - 1:] = _linear_recursion(r_n[:, start - 1], phi[:, start - 1:], emit[:, start - 1:])
            r_b[:, start - 1:] = _linear_recursion(r_b[:, start - 1], r_n[:, start - 1:], self.x[utterances, self.blank, start - 1:])
        return PrefixState(r_n, r_b, pending.psi[rows_t, columns_t], utterances)
