"""Decoders of the attention model: greedy, beam search, joint CTC/attention, N-best LM rescoring.

Every search drives a decoder through three calls (``AttentionDecoder`` has them, and a test can
hand in a table): ``initial_state(memory)``, ``step(memory, tokens, state) -> (logits, state)``
and ``state.select(index)``, plus the end symbol ``decoder.eos``. Hypotheses hold token ids; the
tokenizer turns them into text.

- ``attention_greedy``: the most likely next symbol until the end symbol, a batch at once.
- ``beam_search``: a beam over hypotheses of one utterance, scored by the decoder's log-probs;
  with a ``CTCPrefixScorer`` and ``ctc_weight > 0`` it is the joint one-pass search of Watanabe
  et al. (2017), each extension scored ``(1 - w) * attention + w * CTC prefix``.
- ``search_batch``: either search for every utterance of an encoded batch.
- ``rescore_nbest``/``tune_rescoring``: a word LM re-ranks the beam's N best
  (``score + alpha * lm + beta * words``), alpha and beta tuned on dev like the CTC LM decoder's.
- ``AttentionSearch``: all of these for a trained model, by the decoder registry's names
  (``attention``, ``attention_beam``, ``joint``, ``joint+lm``), on ``decoding.Encoding`` items;
  it also tunes the joint search's CTC weight on dev (``CTCWeightResult``, ``joint_params.json``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from asr_helpers.attention import teacher_forcing_pairs
from asr_helpers.ctc_prefix import LOG_ZERO, CTCPrefixScorer
from asr_helpers.decoding import Encoding
from asr_helpers.model import time_mask

if TYPE_CHECKING:
    from asr_helpers.lm import TuneResult

CTC_CANDIDATE_RATIO = 1.5  # candidates per hypothesis scored by CTC: this times the beam (ESPnet's choice)
DECODE_CTC_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the joint search's CTC weights tried on dev


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float              # the search's combined log score (end symbol included once ended)
    attention: float = 0.0    # sum of the decoder's log-probs
    ctc: float = 0.0          # CTC prefix score of ``tokens`` (of the whole transcript once ended)
    ended_at: int = -1        # step at which the end symbol was chosen (-1: still open)

    def normalised(self) -> float:
        """Score per output symbol (end included), so short transcripts are not favoured."""
        return self.score / (len(self.tokens) + 1)


def _check_memory(memory) -> None:
    if memory.values.shape[0] != 1:
        raise ValueError(f"beam search decodes one utterance at a time, got a batch of {memory.values.shape[0]}")


@torch.no_grad()
def attention_greedy(decoder, memory, max_lengths: torch.Tensor) -> list[list[int]]:
    """Most likely symbol at each step for a batch, until the end symbol or ``max_lengths`` symbols."""
    batch = memory.values.shape[0]
    state = decoder.initial_state(memory)
    tokens = torch.full((batch,), decoder.eos, dtype=torch.long, device=memory.values.device)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    open_rows = [True] * batch
    limits = max_lengths.tolist()
    for step in range(int(max(limits, default=0))):
        logits, state = decoder.step(memory, tokens, state)
        tokens = logits.argmax(-1)
        for row, token in enumerate(tokens.tolist()):
            if open_rows[row]:
                open_rows[row] = token != decoder.eos and step < limits[row]
                if open_rows[row]:
                    outputs[row].append(token)
        if not any(open_rows):
            break
    return outputs


def _extensions(hypotheses: list[Hypothesis], log_probs: torch.Tensor, beam: int, ctc: CTCPrefixScorer | None,
                ctc_states: list, ctc_weight: float) -> list[tuple[float, int, int, float, float, object]]:
    """Candidate extensions ``(score, hypothesis, token, attention, ctc, ctc_state)``, the best ``beam`` overall.

    With CTC, each hypothesis's ``1.5 x beam`` best symbols by attention are also CTC-scored
    (all hypotheses in one call: at one step they have one length).
    """
    width = beam if ctc is None else min(log_probs.shape[1] - 1, int(CTC_CANDIDATE_RATIO * beam))
    top_scores, top_tokens = log_probs.topk(width, dim=-1)
    attention, tokens = top_scores.double().numpy(), top_tokens.numpy()
    if ctc is None:
        local, prefix, states = attention, np.zeros_like(attention), [[None] * width] * len(hypotheses)
    else:
        prefix, states = ctc.score_beam([h.tokens for h in hypotheses], ctc_states, tokens)
        previous = np.array([h.ctc for h in hypotheses])[:, None]
        local = (1.0 - ctc_weight) * np.maximum(attention, LOG_ZERO) + ctc_weight * (prefix - previous)
        local[np.isneginf(attention)] = -np.inf  # symbols the decoder rules out stay out at any weight
    found = []
    for i, hypothesis in enumerate(hypotheses):
        for k in np.argsort(-local[i], kind="stable")[:beam]:
            found.append((hypothesis.score + float(local[i, k]), i, int(tokens[i, k]),
                          hypothesis.attention + float(attention[i, k]), float(prefix[i, k]), states[i][k]))
    found.sort(key=lambda item: -item[0])
    return found[:beam]


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


@torch.no_grad()
def beam_search(decoder, memory, beam: int = 8, *, ctc: CTCPrefixScorer | None = None, ctc_weight: float = 0.0,
                max_length: int | None = None, length_normalise: bool = True, nbest: int = 1,
                end_window: int = 3, end_margin: float = 10.0) -> list[Hypothesis]:
    """The ``nbest`` best hypotheses of one utterance (``memory`` of batch 1), best first.

    ``max_length`` defaults to the utterance's encoder frames (a CTC alignment needs one frame
    per symbol); open hypotheses still alive there are closed as they stand. The search stops
    when every hypothesis ended or ESPnet's end detection fires.
    """
    _check_memory(memory)
    if beam < 1 or nbest < 1:
        raise ValueError(f"beam and nbest must be at least 1, got {beam} and {nbest}")
    if not 0.0 <= ctc_weight <= 1.0 or (ctc is None and ctc_weight > 0.0):
        raise ValueError(f"ctc_weight must lie in [0, 1] and needs a CTC scorer when above 0, got {ctc_weight}")
    if ctc is not None and ctc.eos != decoder.eos:
        raise ValueError(f"the CTC scorer's end symbol {ctc.eos} is not the decoder's {decoder.eos}")
    frames = int(memory.mask.sum())
    max_length = frames if max_length is None else max_length
    open_hyps = [Hypothesis([], 0.0)]
    ctc_states = [None if ctc is None else ctc.initial_state()]
    state = decoder.initial_state(memory)
    ended: list[Hypothesis] = []
    for step in range(max_length + 1):
        tokens = torch.tensor([h.tokens[-1] if h.tokens else decoder.eos for h in open_hyps], device=memory.values.device)
        logits, state = decoder.step(memory.expand(len(open_hyps)), tokens, state)
        log_probs = logits.float().log_softmax(-1).cpu()
        if step == max_length:  # no room left: only the end symbol may follow
            keep = torch.full_like(log_probs, float("-inf"))
            keep[:, decoder.eos] = log_probs[:, decoder.eos]
            log_probs = keep
        chosen = _extensions(open_hyps, log_probs, beam, ctc, ctc_states, ctc_weight)
        next_hyps, next_ctc, rows = [], [], []
        for score, i, token, attention, prefix, ctc_state in chosen:
            if score == float("-inf"):
                continue
            if token == decoder.eos:
                ended.append(Hypothesis(open_hyps[i].tokens, score, attention, prefix, step))
            else:
                next_hyps.append(Hypothesis(open_hyps[i].tokens + [token], score, attention, prefix))
                next_ctc.append(ctc_state)
                rows.append(i)
        if not next_hyps or end_detected(ended, step, end_window, end_margin):
            break
        open_hyps, ctc_states = next_hyps, next_ctc
        state = state.select(torch.tensor(rows, device=memory.values.device))
    ranked = sorted(ended, key=(Hypothesis.normalised if length_normalise else lambda h: h.score), reverse=True)
    return ranked[:nbest]


def search_batch(model, encoded, beam: int = 8, ctc_weight: float = 0.0, nbest: int = 1,
                 length_normalise: bool = True) -> list[list[Hypothesis]]:
    """Beam search of every utterance a ``JointCTCAttention`` encoded: attention only when
    ``ctc_weight`` is 0, else joint with the CTC head's prefix scores."""
    memory = model.memory(encoded)
    results = []
    for row, frames in enumerate(encoded.lengths.tolist()):
        ctc = None if ctc_weight == 0.0 else CTCPrefixScorer(encoded.log_probs[row, :frames], model.blank, model.eos)
        results.append(beam_search(model.decoder, memory.utterance(row), beam, ctc=ctc, ctc_weight=ctc_weight,
                                   nbest=nbest, length_normalise=length_normalise))
    return results


def rescore_nbest(candidates: Sequence[tuple[str, float]], lm_score: Callable[[str], float],
                  alpha: float, beta: float) -> str:
    """The text maximising ``score + alpha * lm_score(text) + beta * words`` among ``(text, score)`` pairs.

    ``lm_score`` gives a word sequence's natural-log probability (a KenLM model's ``score`` is
    log10: multiply by ln 10). Ties keep the search's order.
    """
    if not candidates:
        raise ValueError("no candidates to rescore")
    totals = [score + alpha * lm_score(text) + beta * len(text.split()) for text, score in candidates]
    return candidates[int(np.argmax(totals))][0]


def tune_rescoring(nbests: Sequence[Sequence[tuple[str, float]]], references: Sequence[str],
                   lm_score: Callable[[str], float], *,
                   alphas: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0),
                   betas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)) -> TuneResult:
    """Grid-search alpha and beta by corpus WER on dev N-best lists (each text's LM score computed once).

    The default grid reaches the CTC LM decoder's usual weights (alpha 1-2, beta 3): with the CTC +
    LM beams among the candidates, the first measured run chose the corner of a grid that stopped at
    alpha 0.8 and beta 2.

    Ties go to the smaller alpha, then the smaller beta, as for the CTC LM decoder.
    """
    from asr_helpers.lm import TuneResult  # here: lm and metrics need jiwer, which a bare GPU machine lacks
    from asr_helpers.metrics import wer
    if len(nbests) != len(references) or not references:
        raise ValueError(f"need one N-best list per reference (>0), got {len(nbests)} and {len(references)}")
    if not alphas or not betas:
        raise ValueError("alphas and betas need at least one value each")
    cache: dict[str, float] = {}
    cached = lambda text: cache[text] if text in cache else cache.setdefault(text, lm_score(text))  # noqa: E731
    grid = np.zeros((len(alphas), len(betas)))
    for i, alpha in enumerate(alphas):
        for j, beta in enumerate(betas):
            grid[i, j] = wer(references, [rescore_nbest(nbest, cached, alpha, beta) for nbest in nbests])
    i, j = np.unravel_index(np.argmin(grid), grid.shape)
    return TuneResult(float(alphas[i]), float(betas[j]), float(grid[i, j]), [float(a) for a in alphas],
                      [float(b) for b in betas], grid.tolist())


class LMRescorer:
    """A KenLM word model scoring whole transcripts (natural log) for N-best rescoring, with its weights."""

    def __init__(self, lm_path: Path | str, alpha: float = 0.5, beta: float = 1.0):
        import kenlm
        if not Path(lm_path).is_file():
            raise FileNotFoundError(f"language model {lm_path} not found (see asr_helpers.lm.download_lm)")
        self.model = kenlm.Model(str(lm_path))
        self.alpha, self.beta = alpha, beta

    def score(self, text: str) -> float:
        return self.model.score(text, bos=True, eos=True) * math.log(10)

    def best(self, candidates: Sequence[tuple[str, float]]) -> str:
        return rescore_nbest(candidates, self.score, self.alpha, self.beta) if candidates else ""


@dataclass
class CTCWeightResult:
    """The joint search's CTC weight chosen on dev, with every tried weight's CER there."""
    ctc_weight: float
    cer: float
    weights: list[float]
    cers: list[float]

    def save(self, path: Path) -> Path:
        """Write the result as JSON (``RunDir.joint_params``: next to the checkpoint it was tuned for)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")
        return Path(path)


@dataclass
class AttentionSearch:
    """The attention decoders of a trained ``las.JointCTCAttention``, by the registry's names.

    ``attention``: greedy; ``attention_beam``: beam search on attention alone; ``joint``: the
    one-pass joint search with the CTC prefix score weighted ``ctc_weight``; ``joint+lm``: the
    joint search's ``beam`` best, re-ranked by ``rescorer``, together with the texts ``proposer``
    finds in the CTC log-probs (the CTC + LM beam search's N best: WeNet's attention rescoring
    the other way round), each given the joint score the search would have given it. ``beam`` is the attention beam
    (kept small: every step runs the decoder once per hypothesis). The joint search runs once
    per utterance and CTC weight: ``joint``, ``joint+lm`` and tuning the rescorer reuse it.
    """
    model: object            # las.JointCTCAttention with a decoder
    tokenizer: object
    beam: int = 8
    ctc_weight: float = 0.3
    rescorer: LMRescorer | None = None
    proposer: Callable[[np.ndarray], list[str]] | None = None  # more joint+lm candidates from CTC log-probs

    def __post_init__(self):
        if self.model.decoder is None:
            raise ValueError("this model has no attention decoder (trained with ctc_weight=1.0): use the CTC decoders")
        self.device = next(self.model.parameters()).device
        self._joint_found: dict[tuple[int, float], tuple[np.ndarray, list[Hypothesis]]] = {}  # per utterance, weight

    def _joint(self, item: Encoding) -> list[Hypothesis]:
        """The joint search's ``beam`` best for ``item``, searched once: ``joint`` and ``joint+lm`` share it."""
        key = (id(item.log_probs), self.ctc_weight)
        if key not in self._joint_found or self._joint_found[key][0] is not item.log_probs:
            self._joint_found[key] = (item.log_probs, self.hypotheses(item, self.ctc_weight, self.beam))
        return self._joint_found[key][1]

    def _memory(self, item: Encoding):
        if not isinstance(item, Encoding) or item.states is None:
            raise ValueError("attention decoding needs the encoder states of a model: las checkpoint")
        states = torch.as_tensor(item.states, dtype=torch.float32, device=self.device)[None]
        return self.model.memory_of(states, torch.tensor([len(item.states)], device=self.device))

    def hypotheses(self, item: Encoding, ctc_weight: float, nbest: int = 1) -> list[Hypothesis]:
        """The search's ``nbest`` best for one utterance (attention alone when ``ctc_weight`` is 0)."""
        ctc = CTCPrefixScorer(item.log_probs, self.model.blank, self.model.eos) if ctc_weight > 0 else None
        return beam_search(self.model.decoder, self._memory(item), self.beam, ctc=ctc, ctc_weight=ctc_weight,
                           nbest=nbest)

    def nbest(self, items: Sequence[Encoding]) -> list[list[tuple[str, float]]]:
        """(text, joint score) of the ``beam`` best hypotheses per utterance, and of the proposer's
        texts the search did not find: what the LM re-ranks."""
        lists = []
        for item in items:
            found = [(self.tokenizer.decode(h.tokens), h.score) for h in self._joint(item)]
            known = {text for text, _ in found}
            extra = [] if self.proposer is None else list(dict.fromkeys(
                text for text in self.proposer(item.log_probs) if text not in known))
            lists.append(found + list(zip(extra, self.text_scores(item, extra))))
        return lists

    @torch.no_grad()
    def text_scores(self, item: Encoding, texts: Sequence[str]) -> list[float]:
        """Joint scores of whole transcripts: ``ctc_weight * log p_ctc + (1 - ctc_weight) * log p_att``
        (end symbol included), what the joint search's ``Hypothesis.score`` adds up to."""
        if not texts:
            return []
        ids = [self.tokenizer.encode(text) for text in texts]
        targets = torch.tensor([i for row in ids for i in row], dtype=torch.long, device=self.device)
        lengths = torch.tensor([len(row) for row in ids], device=self.device)
        inputs, outputs, output_lengths = teacher_forcing_pairs(targets, lengths, self.model.eos)
        logits, _ = self.model.decoder(self._memory(item).expand(len(texts)), inputs)
        per_symbol = logits.float().log_softmax(-1).gather(-1, outputs[..., None]).squeeze(-1)
        attention = per_symbol.masked_fill(~time_mask(output_lengths, outputs.shape[1]), 0.0).sum(1)
        log_probs = torch.as_tensor(item.log_probs, dtype=torch.float32, device=self.device)
        frames = torch.full((len(texts),), len(log_probs), device=self.device)
        ctc = -F.ctc_loss(log_probs[:, None, :].expand(-1, len(texts), -1), targets, frames, lengths,
                          blank=self.model.blank, reduction="none", zero_infinity=False)
        return ((1.0 - self.ctc_weight) * attention + self.ctc_weight * ctc).tolist()

    def tune_ctc_weight(self, items: Sequence[Encoding], references: Sequence[str],
                        weights: Sequence[float] = DECODE_CTC_WEIGHTS) -> CTCWeightResult:
        """Choose the joint search's CTC weight by CER on dev (ties: the smaller weight) and keep it.

        The weight to decode with need not be the one the model trained with: after a short run the
        attention decoder is still weak and the CTC prefix score deserves more (the 20-minute ``las``
        run, trained at 0.3, decodes dev-clean best at 0.5).
        """
        from asr_helpers.metrics import cer  # here: metrics needs jiwer, which a bare GPU machine lacks
        if not weights or any(not 0.0 < w <= 1.0 for w in weights):
            raise ValueError(f"CTC weights must lie in (0, 1], got {list(weights)}")
        rates = []
        for weight in weights:
            self.ctc_weight = float(weight)
            rates.append(float(cer(references, self.decode("joint", items))))
        best = int(np.argmin(rates))
        self.ctc_weight = float(weights[best])
        return CTCWeightResult(self.ctc_weight, rates[best], [float(w) for w in weights], rates)

    def tune(self, items: Sequence[Encoding], references: Sequence[str], lm_path: Path | str, **grid) -> TuneResult:
        """Tune the rescorer's alpha and beta on dev (``tune_rescoring``) and keep them."""
        rescorer = LMRescorer(lm_path)
        result = tune_rescoring(self.nbest(items), references, rescorer.score, **grid)
        rescorer.alpha, rescorer.beta = result.alpha, result.beta
        self.rescorer = rescorer
        return result

    @torch.no_grad()
    def decode(self, name: str, items: Sequence[Encoding]) -> list[str]:
        texts = []
        for item in items:
            if name == "attention":
                memory = self._memory(item)
                tokens = attention_greedy(self.model.decoder, memory, torch.tensor([len(item.states)]))[0]
            elif name == "joint+lm":
                texts.append(self.rescorer.best(self.nbest([item])[0]))
                continue
            else:
                found = self._joint(item) if name == "joint" else self.hypotheses(item, 0.0)
                tokens = found[0].tokens if found else []
            texts.append(self.tokenizer.decode(tokens))
        return texts
