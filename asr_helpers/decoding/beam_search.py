"""One label-synchronous beam search over named, weighted scorers.

Each step extends every open hypothesis by one symbol. The scorers (``scorers.Scorer``: the
attention decoder, the CTC prefix score, the word LM) score a whole batch of hypotheses at once,
each keeping its own state for every hypothesis; an extension's step score is the weighted sum of
theirs. ``attention_beam``, ``joint`` and ``joint+lm`` are weight sets of this one search
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
from typing import Any, Mapping

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
    """The open hypotheses, one row each, and every running scorer's state for all rows at once."""
    hypotheses: list[Hypothesis]
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
          eos: int, last: bool) -> tuple[torch.Tensor, dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """Candidates ``[N, C]``, each scorer's step scores for them, their weighted sum and the scorers' new states.

    ``pre_beam`` proposes ``size`` candidates per hypothesis, ``PRE_BEAM_RATIO`` times more when a
    partial scorer runs. A ``-inf`` from any scorer rules a candidate out at every weight; at the
    ``last`` step only the end symbol may follow.
    """
    prefixes = [h.tokens for h in beam.hypotheses]
    full, states = {}, {}
    for name in beam.states:
        if scorers[name].full:
            full[name], states[name] = scorers[name].score(prefixes, beam.states[name], None)
    if last:
        only_end = torch.full_like(full[pre_beam], float("-inf"))
        only_end[:, eos] = full[pre_beam][:, eos]
        full[pre_beam] = only_end
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


def _best(hypotheses: list[Hypothesis], total: np.ndarray, beam: int) -> list[tuple[float, int, int]]:
    """The ``beam`` best extensions overall as (score, row, column): each hypothesis's ``beam`` best first."""
    found = []
    for i, hypothesis in enumerate(hypotheses):
        for k in np.argsort(-total[i], kind="stable")[:beam]:
            found.append((hypothesis.score + float(total[i, k]), i, int(k)))
    found.sort(key=lambda item: -item[0])
    return found[:beam]


@torch.no_grad()
def beam_search(scorers: Mapping[str, Scorer], weights: Mapping[str, float], *, eos: int, max_length: int,
                beam: int = 8, pre_beam: str = "attention", nbest: int = 1, length_normalise: bool = True,
                end_window: int = 3, end_margin: float = 10.0) -> list[Hypothesis]:
    """The ``nbest`` best hypotheses of one utterance, best first, scored ``sum of weights[name] * scorers[name]``.

    A scorer weighted 0 is not run, except ``pre_beam``, which proposes the candidates. At step
    ``max_length`` only the end symbol may follow (a CTC alignment needs a frame per symbol, so the
    encoder frames are the natural limit). The search stops when every hypothesis ended or ESPnet's
    end detection fires.
    """
    _check(scorers, weights, pre_beam, eos, beam, nbest)
    running = [name for name in scorers if weights[name] > 0.0 or name == pre_beam]
    open_beam = Beam([Hypothesis([], 0.0, {name: 0.0 for name in running})],
                     {name: scorers[name].init_state() for name in running})
    ended: list[Hypothesis] = []
    for step in range(max_length + 1):
        candidates, per_scorer, total, states = _step(open_beam, scorers, weights, beam, pre_beam, eos,
                                                      step == max_length)
        kept, rows, columns = [], [], []
        for score, row, column in _best(open_beam.hypotheses, total, beam):
            if score == float("-inf"):
                continue
            before = open_beam.hypotheses[row]
            token = int(candidates[row, column])
            scores = {name: before.scores[name] + float(per_scorer[name][row, column]) for name in running}
            if token == eos:
                ended.append(Hypothesis(before.tokens, score, scores, step))
            else:
                kept.append(Hypothesis(before.tokens + [token], score, scores))
                rows.append(row)
                columns.append(column)
        if not kept or end_detected(ended, step, end_window, end_margin):
            break
        open_beam = Beam(kept, {name: scorers[name].select(states[name], rows, columns) for name in running})
    ranked = sorted(ended, key=(Hypothesis.normalised if length_normalise else lambda h: h.score), reverse=True)
    return ranked[:nbest]
