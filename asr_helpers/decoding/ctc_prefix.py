"""The CTC prefix score: how likely a CTC head finds that a transcript *starts* with a prefix.

Joint CTC/attention decoding (Watanabe et al. 2017, "Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition"; ESPnet's ``CTCPrefixScore``) extends each beam hypothesis ``g``
by a token ``c`` and asks the CTC head for ``log p(g + c + anything | x)``. The attention
decoder alone happily emits a fluent transcript the audio does not support (skipped or repeated
words); the prefix score vetoes such hypotheses because CTC must align every token with frames.

State of a prefix ``g``: two log-probabilities per frame ``t``, the probability that frames
``0..t`` collapse to ``g`` ending in a non-blank (``r_n``) or in a blank (``r_b``). Extending by
``c`` is a linear recursion over frames; it is solved here with cumulative sums and
``logaddexp.accumulate`` instead of a Python loop over frames, for all candidates at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOG_ZERO = -1e10  # finite "log 0" (as in ESPnet), so score differences never turn into NaN
_LOG_FLOOR = -1e4  # log-probs below this are 0 in float32 anyway; keeps the cumulative sums exact


@dataclass(frozen=True)
class PrefixState:
    """``r_n``/``r_b`` (``[frames]`` each) of one prefix, and its prefix score ``psi``."""
    r_n: np.ndarray
    r_b: np.ndarray
    psi: float


def _linear_recursion(start_value: np.ndarray, feed: np.ndarray, emit: np.ndarray) -> np.ndarray:
    """Solve ``a[t] = logaddexp(a[t-1], feed[t-1]) + emit[t]`` for ``t = 1..n`` given ``a[0]``.

    Arrays are ``[n + 1, C]`` (``emit`` may be ``[n + 1, 1]``); row 0 of ``feed`` is used, row 0 of ``emit`` is not. With
    ``E[t] = emit[1] + ... + emit[t]``: ``a[t] = E[t] + logsumexp(a[0], feed[s] - E[s] for s < t)``.
    """
    cumulative = np.concatenate([np.zeros_like(emit[:1]), np.cumsum(emit[1:], axis=0)])
    terms = np.concatenate([start_value[None], feed[:-1] - cumulative[:-1]])
    return cumulative + np.logaddexp.accumulate(terms, axis=0)


class CTCPrefixScorer:
    """Prefix scores of one utterance's CTC log-probs ``[frames, vocab]`` (numpy or tensor).

    ``eos`` is the attention decoder's end symbol (any id, usually one past the CTC vocabulary):
    its score is the probability that the transcript is exactly the prefix. The blank is never a
    candidate (score ``LOG_ZERO``). As a partial scorer of the beam search (``scorers.Scorer``) its
    state is one ``PrefixState`` per hypothesis, and it scores a step by the change of the prefix score.
    """

    full = False

    def __init__(self, log_probs, blank: int, eos: int):
        if hasattr(log_probs, "detach"):
            log_probs = log_probs.detach().float().cpu().numpy()
        log_probs = np.asarray(log_probs, dtype=np.float64)
        if log_probs.ndim != 2 or log_probs.shape[0] == 0:
            raise ValueError(f"expected CTC log-probs [frames, vocab] with frames > 0, got shape {log_probs.shape}")
        self.x = np.maximum(log_probs, _LOG_FLOOR)
        self.blank = blank
        self.eos = eos

    @property
    def frames(self) -> int:
        return self.x.shape[0]

    def init_state(self) -> list[PrefixState]:
        """The empty prefix: every frame so far was blank; it starts every transcript (psi = 0)."""
        return [PrefixState(np.full(self.frames, LOG_ZERO), np.cumsum(self.x[:, self.blank]), 0.0)]

    def score(self, prefixes: list[list[int]], states: list[PrefixState],
              candidates) -> tuple[torch.Tensor, list[list[PrefixState]]]:
        """What each candidate adds, ``log p(prefix + c ...) - log p(prefix ...)`` ``[N, C]``, and the new states."""
        scores, new_states = self.prefix_scores(prefixes, states, candidates)
        return torch.from_numpy(scores - np.array([s.psi for s in states])[:, None]), new_states

    def select(self, states: list[list[PrefixState]], rows, columns) -> list[PrefixState]:
        return [states[row][column] for row, column in zip(rows, columns)]

    def prefix_scores(self, prefixes: list[list[int]], states: list[PrefixState],
                      candidates) -> tuple[np.ndarray, list[list[PrefixState]]]:
        """Prefix scores ``log p(prefix + c ...)`` ``[N, C]`` for candidates ``[N, C]`` of hypotheses of one
        length (a beam at one step; token ids, no start symbol), and the ``[N][C]`` states they lead to."""
        candidates = np.asarray(candidates, dtype=np.int64).reshape(len(prefixes), -1)
        if len({len(p) for p in prefixes}) > 1:
            raise ValueError("prefix scores need prefixes of one length (a beam at one step)")
        hyps, count = candidates.shape
        flat, owner = candidates.reshape(-1), np.repeat(np.arange(hyps), count)
        columns = np.flatnonzero((flat != self.eos) & (flat != self.blank))
        previous_n = np.stack([s.r_n for s in states], 1)
        previous_b = np.stack([s.r_b for s in states], 1)
        last = np.array([p[-1] if p else -1 for p in prefixes])
        psi, r_n, r_b = self._extend(len(prefixes[0]), previous_n[:, owner[columns]], previous_b[:, owner[columns]],
                                     last[owner[columns]], flat[columns])
        scores = np.full(len(flat), LOG_ZERO)
        scores[columns] = psi
        ends = flat == self.eos
        scores[ends] = np.logaddexp(previous_n[-1], previous_b[-1])[owner[ends]]
        impossible = PrefixState(np.full(self.frames, LOG_ZERO), np.full(self.frames, LOG_ZERO), LOG_ZERO)
        new_states = [states[h] if ends[k] else impossible for k, h in enumerate(owner)]
        for i, k in enumerate(columns):
            new_states[k] = PrefixState(r_n[:, i], r_b[:, i], float(psi[i]))
        return scores.reshape(hyps, count), [new_states[h * count:(h + 1) * count] for h in range(hyps)]

    def _extend(self, length: int, previous_n: np.ndarray, previous_b: np.ndarray, last: np.ndarray,
                tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """psi ``[N]``, r_n and r_b ``[frames, N]`` of column ``i``'s prefix (``length`` tokens ending
        in ``last[i]``, state ``previous_*[:, i]``) extended by ``tokens[i]``."""
        frames, count = self.frames, len(tokens)
        r_n = np.full((frames, count), LOG_ZERO)
        r_b = np.full((frames, count), LOG_ZERO)
        emit = self.x[:, tokens]
        # phi[t]: probability that frames 0..t give the prefix and a new token may follow at t+1;
        # a token equal to the prefix's last one needs a blank in between.
        phi = np.where(tokens == last, previous_b, np.logaddexp(previous_n, previous_b))
        start = max(length, 1)  # the new token needs ``length`` earlier frames
        if length == 0:
            r_n[0] = emit[0]
        if start >= frames:
            return (r_n[0].copy() if length == 0 else np.full(count, LOG_ZERO)), r_n, r_b
        r_n[start - 1:] = _linear_recursion(r_n[start - 1], phi[start - 1:], emit[start - 1:])
        r_b[start - 1:] = _linear_recursion(r_b[start - 1], r_n[start - 1:], self.x[start - 1:, self.blank, None])
        new_token = phi[start - 1:-1] + emit[start:]
        psi = np.logaddexp(r_n[start - 1], np.logaddexp.reduce(new_token, axis=0))
        return psi, r_n, r_b
