"""One label-synchronous beam search over named, weighted scorers, for a batch of utterances at once.

Each step extends every open hypothesis of every utterance in the batch by one symbol (one utterance
is the batch of one). The scorers (``scorers.Scorer``: the attention decoder, the CTC prefix score,
the word LM) score all those hypotheses in one call each, keeping their own state for every row; an
extension's step score is the weighted sum of theirs. Each utterance keeps its own beam, end
detection and maximum length, and leaves the batch when its search is over. ``attention_beam``, ``joint`` and ``joint+lm`` are weight sets of this one search
(``scorer_weights``, from the decoder table's ``scorers``):

- ``{attention: 1}``: beam search on the attention decoder alone;
- ``{attention: 1 - w, ctc: w}``: the joint one-pass search of Watanabe et al. (2017);
- ``{attention: 1 - w, ctc: w, lm: 1}``: the same with the word LM fused in (``FusionLM`` applies
  its own alpha and beta).

With a partial scorer (CTC, LM) running, each hypothesis's ``1.5 x beam`` best symbols by the
``pre_beam`` scorer (the attention decoder) are the candidates the others score (ESPnet's pre-beam).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from asr_helpers.decoding.decoders import spec
from asr_helpers.decoding.scorers import Scorer

PRE_BEAM_RATIO = 1.5  # candidates per hypothesis that partial scorers score: this times the beam (ESPnet's choice)


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float                  # the weighted sum of the scorers' step scores (end symbol included once ended)
    scores: dict[str, float] = field(default_factory=dict)  # each scorer's own sum, unweighted
    ended_at: int = -1            # step at which the end symbol was chosen (-1: still open)

    def normalised(self) -> float:
        """Score per output symbol (end included), so short transcripts are not favoured."""
        return self.score / (len(self.tokens) + 1)


@dataclass
class Beam:
    """The open hypotheses of the utterances still searched, one row each, grouped by utterance, and every
    running scorer's state for all rows at once."""
    hypotheses: list[Hypothesis]
    utterances: np.ndarray  # [N] the utterance each row searches (ascending)
    states: dict[str, Any]


def scorer_weights(decoder: str, weights: Mapping[str, float]) -> dict[str, float]:
    """The weight of each scorer of ``decoder`` (a beam-search decoder of the table) given its tuned ``weights``."""
    scorers = spec(decoder).scorers
    if not scorers:
        raise ValueError(f"{decoder} is not a beam search over scorers")
    ctc = float(weights["ctc_weight"]) if "ctc" in scorers else 0.0
    return {name: {"attention": 1.0 - ctc, "ctc": ctc, "lm": 1.0}[name] for name in scorers}


def end_detected(ended: list[Hypothesis], step: int, window: int, margin: float) -> bool:
    """ESPnet's end detection: for each of the last ``window`` steps, what ended then was ``margin`` below the best."""
    if not ended:
        return False
    best = max(h.score for h in ended)
    for back in range(window):
        at_step = [h.score for h in ended if h.ended_at == step - back]
        if not at_step or max(at_step) - best >= -margin:
            return False
    return True


def _check(scorers: Mapping[str, Scorer], weights: Mapping[str, float], pre_beam: str, eos: int,
           beam: int, nbest: int) -> None:
    if beam < 1 or nbest < 1:
        raise ValueError(f"beam and nbest must be at least 1, got {beam} and {nbest}")
    if set(weights) != set(scorers) or any(not 0.0 <= w for w in weights.values()):
        raise ValueError(f"every scorer needs a weight of at least 0: scorers {sorted(scorers)}, weights {dict(weights)}")
    if pre_beam not in scorers or not scorers[pre_beam].full:
        raise ValueError(f"the pre-beam scorer {pre_beam!r} must be one of the scorers and score every symbol")
    for name, scorer in scorers.items():
        if getattr(scorer, "eos", eos) != eos:
            raise ValueError(f"the {name} scorer's end symbol {scorer.eos} is not the search's {eos}")


def _step(beam: Beam, scorers: Mapping[str, Scorer], weights: Mapping[str, float], size: int, pre_beam: str,
          eos: int, last: np.ndarray) -> tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Candidates ``[N, C]``, each scorer's step scores for them, their weighted sum and the scorers' new states.

    ``pre_beam`` proposes ``size`` candidates per hypothesis, ``PRE_BEAM_RATIO`` times more when a
    partial scorer runs. A ``-inf`` from any scorer rules a candidate out at every weight; on the
    rows ``last`` marks (their utterance's last step) only the end symbol may follow.
    """
    prefixes = [h.tokens for h in beam.hypotheses]
    full, states = {}, {}
    for name in beam.states:
        if scorers[name].full:
            full[name], states[name] = scorers[name].score(prefixes, beam.states[name], None)
    if last.any():
        others = torch.arange(full[pre_beam].shape[1]) != eos
        full[pre_beam] = full[pre_beam].masked_fill(torch.from_numpy(last)[:, None] & others, float("-inf"))
    partial = any(not scorers[name].full for name in beam.states)
    vocab = full[pre_beam].shape[1]
    width = min(vocab - 1, int(PRE_BEAM_RATIO * size)) if partial else min(vocab, size)
    top, candidates = full[pre_beam].topk(width, dim=-1)
    per_scorer = {}
    for name in beam.states:
        if name == pre_beam:
            per_scorer[name] = top.double().numpy()
        elif scorers[name].full:
            per_scorer[name] = full[name].gather(1, candidates).double().numpy()
        else:
            scores, states[name] = scorers[name].score(prefixes, beam.states[name], candidates)
            per_scorer[name] = scores.double().numpy()
    total, ruled_out = np.zeros(tuple(candidates.shape)), np.zeros(tuple(candidates.shape), dtype=bool)
    for name, scores in per_scorer.items():
        vetoed = np.isneginf(scores)
        ruled_out |= vetoed
        total = total + weights[name] * np.where(vetoed, 0.0, scores)
    total[ruled_out] = -np.inf
    return candidates, per_scorer, total, states


def _best(beam: Beam, total: np.ndarray, size: int) -> Iterator[tuple[int, list[tuple[float, int, int]]]]:
    """Each utterance's ``size`` best extensions as (score, row, column), best first: of each of its
    hypotheses' ``size`` best candidates (ties: the earlier row, then the earlier column)."""
    order = np.argsort(-total, axis=1, kind="stable")[:, :size]
    scores = np.array([h.score for h in beam.hypotheses])[:, None] + np.take_along_axis(total, order, axis=1)
    width = order.shape[1]
    starts = np.flatnonzero(np.r_[True, beam.utterances[1:] != beam.utterances[:-1]])
    for first, stop in zip(starts, np.r_[starts[1:], len(beam.utterances)]):
        flat = scores[first:stop].ravel()
        picked = np.argsort(-flat, kind="stable")[:size]
        rows = first + picked // width
        yield int(beam.utterances[first]), [(float(flat[k]), int(r), int(order[r, k % width]))
                                            for k, r in zip(picked, rows)]


def _extend(beam: Beam, best: list[tuple[float, int, int]], candidates: torch.Tensor,
            per_scorer: dict[str, np.ndarray], eos: int, step: int, ended: list[Hypothesis]) -> list[tuple]:
    """One utterance's extensions ``best``: those ending go to ``ended``; the others come back as
    (hypothesis, row, column)."""
    kept = []
    for score, row, column in best:
        if score == float("-inf"):
            continue
        before = beam.hypotheses[row]
        token = int(candidates[row, column])
        scores = {name: value + float(per_scorer[name][row, column]) for name, value in before.scores.items()}
        if token == eos:
            ended.append(Hypothesis(before.tokens, score, scores, step))
        else:
            kept.append((Hypothesis(before.tokens + [token], score, scores), row, column))
    return kept


@torch.no_grad()
def beam_search(scorers: Mapping[str, Scorer], weights: Mapping[str, float], *, eos: int,
                max_lengths: Sequence[int], beam: int = 8, pre_beam: str = "attention", nbest: int = 1,
                length_normalise: bool = True, end_window: int = 3, end_margin: float = 10.0) -> list[list[Hypothesis]]:
    """Each utterance's ``nbest`` best hypotheses, best first, scored ``sum of weights[name] * scorers[name]``.

    The scorers hold ``len(max_lengths)`` utterances, searched together: every step extends the open
    hypotheses of all of them at once (one call per scorer), each utterance keeping its own ``beam``.
    A scorer weighted 0 is not run, except ``pre_beam``, which proposes the candidates. At step
    ``max_lengths[u]`` only the end symbol may follow in utterance ``u`` (a CTC alignment needs a
    frame per symbol, so the encoder frames are the natural limit). An utterance leaves the batch
    when all its hypotheses ended or ESPnet's end detection fires for it.
    """
    _check(scorers, weights, pre_beam, eos, beam, nbest)
    count, limits = len(max_lengths), np.asarray(max_lengths, dtype=np.int64)
    running = [name for name in scorers if weights[name] > 0.0 or name == pre_beam]
    open_beam = Beam([Hypothesis([], 0.0, {name: 0.0 for name in running}) for _ in range(count)],
                     np.arange(count), {name: scorers[name].init_state(count) for name in running})
    ended: list[list[Hypothesis]] = [[] for _ in range(count)]
    for step in range(int(limits.max(initial=0)) + 1):
        candidates, per_scorer, total, states = _step(open_beam, scorers, weights, beam, pre_beam, eos,
                                                      limits[open_beam.utterances] == step)
        kept, utterances = [], []
        for utterance, best in _best(open_beam, total, beam):
            extended = _extend(open_beam, best, candidates, per_scorer, eos, step, ended[utterance])
            if extended and not end_detected(ended[utterance], step, end_window, end_margin):
                kept += extended
                utterances += [utterance] * len(extended)
        if not kept:
            break
        rows, columns = [row for _, row, _ in kept], [column for _, _, column in kept]
        open_beam = Beam([h for h, _, _ in kept], np.array(utterances),
                         {name: scorers[name].select(states[name], rows, columns) for name in running})
    rank = Hypothesis.normalised if length_normalise else (lambda h: h.score)
    return [sorted(found, key=rank, reverse=True)[:nbest] for found in ended]
