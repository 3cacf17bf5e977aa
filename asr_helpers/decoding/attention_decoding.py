"""Decoders of the attention model: greedy, beam search, joint CTC/attention, with a word LM fused in.

Every search drives a decoder through three calls (``AttentionDecoder`` has them, and a test can
hand in a table): ``initial_state(memory)``, ``step(memory, tokens, state) -> (logits, state)``
and ``state.select(index)``, plus the end symbol ``decoder.eos``. Hypotheses hold token ids; the
tokenizer turns them into text.

- ``attention_greedy``: the most likely next symbol until the end symbol, a batch at once.
- ``beam_search``: a beam over hypotheses of one utterance, scored by the decoder's log-probs;
  with a ``CTCPrefixScorer`` and ``ctc_weight > 0`` it is the joint one-pass search of Watanabe
  et al. (2017), each extension scored ``(1 - w) * attention + w * CTC prefix``.
  With a ``lm_fusion.FusionLM`` a word LM joins the score of every extension (shallow fusion).
- ``search_batch``: either search for every utterance of an encoded batch.
- ``AttentionSearch``: all of these for a trained model, by the decoder registry's names
  (``attention``, ``attention_beam``, ``joint``, ``joint+lm``), on ``decoding.Encoding`` items;
  it also tunes the joint search's CTC weight on dev (``CTCWeightResult``, ``joint_params.json``)
  and the LM fusion's weights (``FusionResult``, ``fusion_params.json``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from asr_helpers.decoding.ctc_prefix import LOG_ZERO, CTCPrefixScorer
from asr_helpers.decoding.ctc import Encoding
from asr_helpers.decoding.lm_fusion import FusionLM, LMState

CTC_CANDIDATE_RATIO = 1.5  # candidates per hypothesis scored by CTC: this times the beam (ESPnet's choice)
DECODE_CTC_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the joint search's CTC weights tried on dev
LM_BEAM = 16  # the LM fusion's beam: on the 20-minute las run, 16 gave 13.4 % dev-clean CER where 8 gave 14.7 %
FUSION_GRID = {"ctc_weights": (0.7, 0.85), "alphas": (0.6, 0.9), "betas": (0.0,)}  # joint+lm's weights tried on dev
FUSION_DEFAULTS = {"ctc_weight": 0.8, "alpha": 0.7, "beta": 0.0}  # joint+lm's weights before they are tuned


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float              # the search's combined log score (end symbol included once ended)
    attention: float = 0.0    # sum of the decoder's log-probs
    ctc: float = 0.0          # CTC prefix score of ``tokens`` (of the whole transcript once ended)
    ended_at: int = -1        # step at which the end symbol was chosen (-1: still open)
    lm: LMState | None = None  # where the fused word LM stands (None without one)

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


class Extension(NamedTuple):
    """One hypothesis extended by one symbol, with its scores and scorer states."""
    score: float
    row: int
    token: int
    attention: float
    ctc: float
    ctc_state: object
    lm: LMState | None


def _extensions(hypotheses: list[Hypothesis], log_probs: torch.Tensor, beam: int, ctc: CTCPrefixScorer | None,
                ctc_states: list, ctc_weight: float, lm: FusionLM | None, eos: int) -> list[Extension]:
    """The best ``beam`` extensions overall.

    With CTC or an LM, each hypothesis's ``1.5 x beam`` best symbols by attention are candidates:
    CTC scores them (all hypotheses in one call: at one step they have one length) and the LM adds
    its gain (for the end symbol: the last word and the sentence end).
    """
    width = beam if ctc is None and lm is None else min(log_probs.shape[1] - 1, int(CTC_CANDIDATE_RATIO * beam))
    top_scores, top_tokens = log_probs.topk(width, dim=-1)
    attention, tokens = top_scores.double().numpy(), top_tokens.numpy()
    if ctc is None:
        local, prefix, states = attention.copy(), np.zeros_like(attention), [[None] * width] * len(hypotheses)
    else:
        prefix, states = ctc.score_beam([h.tokens for h in hypotheses], ctc_states, tokens)
        previous = np.array([h.ctc for h in hypotheses])[:, None]
        local = (1.0 - ctc_weight) * np.maximum(attention, LOG_ZERO) + ctc_weight * (prefix - previous)
        local[np.isneginf(attention)] = -np.inf  # symbols the decoder rules out stay out at any weight
    lm_states = [[None] * width for _ in hypotheses]
    if lm is not None:
        for i, hypothesis in enumerate(hypotheses):
            for k, token in enumerate(tokens[i].tolist()):
                after = lm.finish(hypothesis.lm) if token == eos else lm.advance(hypothesis.lm, token)
                lm_states[i][k] = after
                local[i, k] += lm.gain(hypothesis.lm, after)
    found = []
    for i, hypothesis in enumerate(hypotheses):
        for k in np.argsort(-local[i], kind="stable")[:beam]:
            found.append(Extension(hypothesis.score + float(local[i, k]), i, int(tokens[i, k]),
                                   hypothesis.attention + float(attention[i, k]), float(prefix[i, k]), states[i][k],
                                   lm_states[i][k]))
    found.sort(key=lambda item: -item.score)
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
                end_window: int = 3, end_margin: float = 10.0, lm: FusionLM | None = None) -> list[Hypothesis]:
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
    open_hyps = [Hypothesis([], 0.0, lm=None if lm is None else lm.initial_state())]
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
        chosen = _extensions(open_hyps, log_probs, beam, ctc, ctc_states, ctc_weight, lm, decoder.eos)
        next_hyps, next_ctc, rows = [], [], []
        for found in chosen:
            if found.score == float("-inf"):
                continue
            before = open_hyps[found.row].tokens
            if found.token == decoder.eos:
                ended.append(Hypothesis(before, found.score, found.attention, found.ctc, step, found.lm))
            else:
                next_hyps.append(Hypothesis(before + [found.token], found.score, found.attention, found.ctc, lm=found.lm))
                next_ctc.append(found.ctc_state)
                rows.append(found.row)
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
class FusionResult:
    """The LM fusion's weights chosen on dev (the search's CTC weight, alpha, beta), with every tried point's CER."""
    ctc_weight: float
    alpha: float
    beta: float
    cer: float
    points: list[dict]  # {"ctc_weight", "alpha", "beta", "cer"} for every point of the grid

    def save(self, path: Path) -> Path:
        """Write the result as JSON (``RunDir.fusion_params``: next to the checkpoint it was tuned for)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")
        return Path(path)


@dataclass
class AttentionSearch:
    """The attention decoders of a trained ``las.JointCTCAttention``, by the registry's names.

    ``attention``: greedy; ``attention_beam``: beam search on attention alone; ``joint``: the
    one-pass joint search with the CTC prefix score weighted ``ctc_weight``; ``joint+lm``: the
    same search with the word LM ``lm`` fused in (``lm_fusion``), at its own CTC weight
    ``lm_ctc_weight`` and a wider beam ``lm_beam``: with an LM the CTC score deserves more weight
    (the LM takes over what the attention decoder knows of language). ``beam`` is the attention
    beam (kept small: every step runs the decoder once per hypothesis). The joint search runs once
    per utterance and CTC weight, so ``joint`` reuses what tuning its weight found.
    """
    model: object            # las.JointCTCAttention with a decoder
    tokenizer: object
    beam: int = 8
    ctc_weight: float = 0.3
    lm: FusionLM | None = None
    lm_ctc_weight: float = FUSION_DEFAULTS["ctc_weight"]
    lm_beam: int = LM_BEAM

    def __post_init__(self):
        if self.model.decoder is None:
            raise ValueError("this model has no attention decoder (trained with ctc_weight=1.0): use the CTC decoders")
        self.device = next(self.model.parameters()).device
        self._joint_found: dict[tuple[int, float], tuple[np.ndarray, list[Hypothesis]]] = {}  # per utterance, weight

    def _joint(self, item: Encoding) -> list[Hypothesis]:
        """The joint search's best for ``item`` at ``ctc_weight``, searched once per weight."""
        key = (id(item.log_probs), self.ctc_weight)
        if key not in self._joint_found or self._joint_found[key][0] is not item.log_probs:
            self._joint_found[key] = (item.log_probs, self.hypotheses(item, self.ctc_weight))
        return self._joint_found[key][1]

    def _memory(self, item: Encoding):
        if not isinstance(item, Encoding) or item.states is None:
            raise ValueError("attention decoding needs the encoder states of a model: las checkpoint")
        states = torch.as_tensor(item.states, dtype=torch.float32, device=self.device)[None]
        return self.model.memory_of(states, torch.tensor([len(item.states)], device=self.device))

    def hypotheses(self, item: Encoding, ctc_weight: float, nbest: int = 1, lm: FusionLM | None = None,
                   beam: int | None = None) -> list[Hypothesis]:
        """The search's ``nbest`` best for one utterance (attention alone when ``ctc_weight`` is 0)."""
        ctc = CTCPrefixScorer(item.log_probs, self.model.blank, self.model.eos) if ctc_weight > 0 else None
        return beam_search(self.model.decoder, self._memory(item), beam or self.beam, ctc=ctc, ctc_weight=ctc_weight,
                           nbest=nbest, lm=lm)

    def tune_ctc_weight(self, items: Sequence[Encoding], references: Sequence[str],
                        weights: Sequence[float] = DECODE_CTC_WEIGHTS) -> CTCWeightResult:
        """Choose the joint search's CTC weight by CER on dev (ties: the smaller weight) and keep it.

        The weight to decode with need not be the one the model trained with: after a short run the
        attention decoder is still weak and the CTC prefix score deserves more (the 20-minute ``las``
        run, trained at 0.3, decodes dev-clean best at 0.5).
        """
        from asr_helpers.decoding.metrics import cer  # here: metrics needs jiwer, which a bare GPU machine lacks
        _check_weights(weights)
        rates = []
        for weight in weights:
            self.ctc_weight = float(weight)
            rates.append(float(cer(references, self.decode("joint", items))))
        best = int(np.argmin(rates))
        self.ctc_weight = float(weights[best])
        return CTCWeightResult(self.ctc_weight, rates[best], [float(w) for w in weights], rates)

    def tune_fusion(self, items: Sequence[Encoding], references: Sequence[str], lm_path: Path | str,
                    ctc_weights: Sequence[float] = FUSION_GRID["ctc_weights"],
                    alphas: Sequence[float] = FUSION_GRID["alphas"],
                    betas: Sequence[float] = FUSION_GRID["betas"]) -> FusionResult:
        """Choose the LM fusion's CTC weight, alpha and beta by CER on dev (a grid; ties: the earlier
        point) and keep them. Each point is one search of every dev utterance, so the grid stays small."""
        from asr_helpers.decoding.metrics import cer
        _check_weights(ctc_weights)
        if not alphas or not betas:
            raise ValueError("alphas and betas need at least one value each")
        self.lm = FusionLM.for_tokenizer(lm_path, self.tokenizer)
        points = []
        for weight in ctc_weights:
            for alpha in alphas:
                for beta in betas:
                    self.lm_ctc_weight, self.lm.alpha, self.lm.beta = float(weight), float(alpha), float(beta)
                    rate = float(cer(references, self.decode("joint+lm", items)))
                    points.append({"ctc_weight": float(weight), "alpha": float(alpha), "beta": float(beta), "cer": rate})
        best = min(points, key=lambda point: point["cer"])
        self.lm_ctc_weight, self.lm.alpha, self.lm.beta = best["ctc_weight"], best["alpha"], best["beta"]
        return FusionResult(best["ctc_weight"], best["alpha"], best["beta"], best["cer"], points)

    @torch.no_grad()
    def decode(self, name: str, items: Sequence[Encoding]) -> list[str]:
        texts = []
        for item in items:
            if name == "attention":
                memory = self._memory(item)
                tokens = attention_greedy(self.model.decoder, memory, torch.tensor([len(item.states)]))[0]
            else:
                if name == "joint":
                    found = self._joint(item)
                elif name == "joint+lm":
                    found = self.hypotheses(item, self.lm_ctc_weight, lm=self.lm, beam=self.lm_beam)
                else:
                    found = self.hypotheses(item, 0.0)
                tokens = found[0].tokens if found else []
            texts.append(self.tokenizer.decode(tokens))
        return texts


def _check_weights(weights: Sequence[float]) -> None:
    if not weights or any(not 0.0 < w <= 1.0 for w in weights):
        raise ValueError(f"CTC weights must lie in (0, 1], got {list(weights)}")
