"""The attention decoders of a joint CTC/attention model, by the decoder table's names.

- ``attention``: greedy, the most likely next symbol until the end symbol, a batch at once.
- ``attention_beam``, ``joint``, ``joint+lm``: weight sets of the one beam search over scorers
  (``beam_search``): the attention decoder, the CTC head's prefix score, the word LM.

``AttentionSearch`` runs them on ``ctc.Encoding`` items, each decoder with the settings (beam,
weights) it was built with; a search with other settings is a new object (``with_tuned``,
``with_lm``) sharing the searches already run. It tunes the weights 04 tunes on dev and returns them
as ``tuned.Tuned`` records. The defaults below are the only place the untuned weights are written.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from asr_helpers.decoding.beam_search import Hypothesis, beam_search, scorer_weights
from asr_helpers.decoding.ctc import Encoding
from asr_helpers.decoding.ctc_prefix import CTCPrefixScorer
from asr_helpers.decoding.decoders import TABLE, spec
from asr_helpers.decoding.lm_fusion import FusionLM
from asr_helpers.decoding.scorers import AttentionScorer
from asr_helpers.decoding.tuned import Tuned

ATTENTION_BEAM = 8  # beam of attention_beam and joint (kept small: every step runs the decoder once per hypothesis)
SEARCH_BATCH_FRAMES = 8000  # utterances searched together: up to this many padded encoder frames (count x longest)
LM_BEAM = 16  # joint+lm's beam: on the 20-minute las run, 16 gave 13.4 % dev-clean CER where 8 gave 14.7 %
DEFAULT_WEIGHTS = {  # each decoder's weights before 04 tunes them
    "joint": {"ctc_weight": 0.3},  # ESPnet's LibriSpeech choice
    "joint+lm": {"ctc_weight": 0.8, "alpha": 0.7, "beta": 0.0},  # with an LM the CTC score deserves more weight
}
DECODE_CTC_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)  # the joint search's CTC weights tried on dev
FUSION_GRID = {"ctc_weights": (0.7, 0.85), "alphas": (0.6, 0.9), "betas": (0.0,)}  # joint+lm's weights tried on dev
SEARCH_DECODERS = tuple(name for name, entry in TABLE.items() if entry.scorers)  # the beam-search decoders


@dataclass(frozen=True)
class SearchSettings:
    """One beam-search decoder's settings: its beam and the weights the decoder table says 04 tunes for it."""
    beam: int
    weights: Mapping[str, float] = field(default_factory=dict)

    def key(self) -> tuple:
        return self.beam, tuple(sorted(self.weights.items()))


def search_settings(beam: int = ATTENTION_BEAM, tuned: Mapping[str, Tuned] | None = None,
                    ctc_weight: float | None = None, lm_beam: int = LM_BEAM) -> dict[str, SearchSettings]:
    """Every beam-search decoder's settings: ``beam`` (``lm_beam`` for those with a word LM), the weights
    ``tuned`` holds for it, else ``DEFAULT_WEIGHTS``; ``ctc_weight``, when given, replaces every CTC weight."""
    if ctc_weight is not None and not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"the search's CTC weight must lie in [0, 1], not {ctc_weight}")
    settings = {}
    for name in SEARCH_DECODERS:
        weights = dict(tuned[name].weights) if tuned and name in tuned else dict(DEFAULT_WEIGHTS.get(name, {}))
        if ctc_weight is not None and "ctc_weight" in weights:
            weights["ctc_weight"] = float(ctc_weight)
        settings[name] = SearchSettings(lm_beam if spec(name).needs_lm else beam, weights)
    return settings


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


def search_batch(model, encoded, beam: int = ATTENTION_BEAM, ctc_weight: float = 0.0,
                 nbest: int = 1) -> list[list[Hypothesis]]:
    """The ``joint`` search at ``ctc_weight`` (0: attention alone) of every utterance a ``JointCTCAttention``
    encoded, all searched together."""
    frames = encoded.lengths.tolist()
    memory = model.memory(encoded)
    scorers = {"attention": AttentionScorer(model.decoder, memory),
               "ctc": CTCPrefixScorer([lp[:n] for lp, n in zip(encoded.log_probs, frames)], model.blank, model.eos,
                                      memory.values.device)}
    return beam_search(scorers, scorer_weights("joint", {"ctc_weight": ctc_weight}), eos=model.eos,
                       max_lengths=frames, beam=beam, nbest=nbest)


def frame_batches(frames: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of utterances with these encoder ``frames``, by length, grouped so that each group's padded
    frames (count x longest) stay within ``budget`` (a longer utterance alone)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(frames)), key=lambda i: frames[i]):
        if batches and (len(batches[-1]) + 1) * frames[index] <= budget:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


@dataclass(frozen=True)
class AttentionSearch:
    """The attention decoders of a trained ``las.JointCTCAttention`` (its ``decoder``, ``memory_of``,
    ``blank`` and ``eos``), by the table's names, each beam-search decoder with its ``settings``;
    ``joint+lm`` needs the word LM ``lm``. Searches run once per utterance and settings (``memo``, shared
    by the searches ``with_*`` derive). Utterances are searched together, as many as keep the padded
    encoder frames of a batch within ``batch_frames``."""
    model: object
    tokenizer: object
    settings: Mapping[str, SearchSettings] = field(default_factory=search_settings)
    lm: FusionLM | None = None
    batch_frames: int = SEARCH_BATCH_FRAMES
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.model.decoder is None:
            raise ValueError("this model has no attention decoder (trained with ctc_weight=1.0): use the CTC decoders")

    def with_tuned(self, tuned: Tuned) -> AttentionSearch:
        """This search with ``tuned``'s weights for its decoder (same beam)."""
        return self.with_weights(tuned.decoder, tuned.weights)

    def with_weights(self, name: str, weights: Mapping[str, float]) -> AttentionSearch:
        """This search with other ``weights`` for decoder ``name`` (same beam)."""
        settings = SearchSettings(self._settings(name).beam, {k: float(v) for k, v in weights.items()})
        return replace(self, settings={**self.settings, name: settings})

    def with_lm(self, lm_path: Path | str) -> AttentionSearch:
        """This search with the KenLM word model at ``lm_path`` for ``joint+lm``."""
        return replace(self, lm=FusionLM.for_tokenizer(lm_path, self.tokenizer))

    def check(self, name: str) -> None:
        """One-line error unless this search can run decoder ``name``."""
        entry = spec(name)
        if entry.head != "attention":
            raise ValueError(f"{name} is not an attention decoder")
        if entry.needs_lm and self.lm is None:
            raise ValueError(f"the {name} decoder needs a language model: AttentionSearch.with_lm(PATH)")

    def _settings(self, name: str) -> SearchSettings:
        self.check(name)
        if name not in self.settings:
            raise ValueError(f"no settings for the {name} decoder; this search has {sorted(self.settings)}")
        return self.settings[name]

    def _memory(self, items: Sequence[Encoding]):
        """What attention reads for ``items``, padded to the longest."""
        if any(not isinstance(item, Encoding) or item.states is None for item in items):
            raise ValueError("attention decoding needs the encoder states of a model: las checkpoint")
        device = next(self.model.parameters()).device
        states = pad_sequence([torch.as_tensor(item.states, dtype=torch.float32) for item in items], batch_first=True)
        return self.model.memory_of(states.to(device), torch.tensor([len(item.states) for item in items], device=device))

    def hypotheses(self, name: str, items: Sequence[Encoding], nbest: int = 1) -> list[list[Hypothesis]]:
        """Beam-search decoder ``name``'s ``nbest`` best of each of ``items``, searched together."""
        settings = self._settings(name)
        weights = scorer_weights(name, settings.weights)
        memory = self._memory(items)
        scorers = {"attention": AttentionScorer(self.model.decoder, memory)}
        if "ctc" in weights:
            scorers["ctc"] = CTCPrefixScorer([item.log_probs for item in items], self.model.blank, self.model.eos,
                                             memory.values.device)
        if "lm" in weights:
            scorers["lm"] = self.lm.with_weights(settings.weights["alpha"], settings.weights["beta"])
        return beam_search(scorers, weights, eos=self.model.eos, max_lengths=scorers["attention"].frames,
                           beam=settings.beam, nbest=nbest)

    def _best(self, name: str, items: Sequence[Encoding]) -> list[list[int]]:
        """The best transcript's tokens of each item, searched once per utterance, decoder, settings and word LM
        (those not searched yet in batches of ``batch_frames``)."""
        settings = self._settings(name)
        keys = [(name, settings.key(), self.lm if spec(name).needs_lm else None, id(item.log_probs)) for item in items]
        missing = [i for i, (key, item) in enumerate(zip(keys, items))
                   if key not in self.memo or self.memo[key][0] is not item.log_probs]
        for batch in frame_batches([len(items[i].log_probs) for i in missing], self.batch_frames):
            found = self.hypotheses(name, [items[missing[k]] for k in batch])
            for k, nbest in zip(batch, found):
                self.memo[keys[missing[k]]] = (items[missing[k]].log_probs, nbest[0].tokens if nbest else [])
        return [self.memo[key][1] for key in keys]

    @torch.no_grad()
    def decode(self, name: str, items: Sequence[Encoding]) -> list[str]:
        """Texts of decoder ``name`` (greedy ``attention`` or a beam-search decoder) for every item."""
        if name == "attention":
            return [self.tokenizer.decode(attention_greedy(self.model.decoder, self._memory([item]),
                                                           torch.tensor([len(item.states)]))[0]) for item in items]
        return [self.tokenizer.decode(tokens) for tokens in self._best(name, items)]

    def tune(self, name: str, items: Sequence[Encoding], references: Sequence[str],
             grid: Sequence[Mapping[str, float]]) -> Tuned:
        """Decoder ``name``'s weights from ``grid`` with the lowest error on dev (the table's metric; ties:
        the earlier point). Each point is one search of every dev utterance, so grids stay small."""
        from asr_helpers.decoding import metrics  # here: metrics needs jiwer, which a bare GPU machine lacks
        metric = spec(name).metric
        if not grid:
            raise ValueError(f"tuning {name} needs at least one grid point")
        points = []
        for weights in grid:
            search = self.with_weights(name, weights)
            rate = float(getattr(metrics, metric)(references, search.decode(name, items)))
            points.append({"weights": dict(search.settings[name].weights), "score": rate})
        best = min(points, key=lambda point: point["score"])
        return Tuned(name, best["weights"], metric, best["score"], points)

    def tune_ctc_weight(self, items: Sequence[Encoding], references: Sequence[str],
                        weights: Sequence[float] = DECODE_CTC_WEIGHTS) -> Tuned:
        """``joint``'s CTC weight by CER on dev (ties: the smaller weight, when ``weights`` ascend).

        The weight to decode with need not be the one the model trained with: after a short run the
        attention decoder is still weak and the CTC prefix score deserves more (the 20-minute ``las``
        run, trained at 0.3, decodes dev-clean best at 0.5).
        """
        _check_weights(weights)
        return self.tune("joint", items, references, [{"ctc_weight": w} for w in weights])

    def tune_fusion(self, items: Sequence[Encoding], references: Sequence[str],
                    ctc_weights: Sequence[float] = FUSION_GRID["ctc_weights"],
                    alphas: Sequence[float] = FUSION_GRID["alphas"],
                    betas: Sequence[float] = FUSION_GRID["betas"]) -> Tuned:
        """``joint+lm``'s CTC weight, alpha and beta by CER on dev, over their grid (needs ``with_lm``)."""
        _check_weights(ctc_weights)
        if not alphas or not betas:
            raise ValueError("alphas and betas need at least one value each")
        self.check("joint+lm")
        grid = [{"ctc_weight": w, "alpha": a, "beta": b} for w in ctc_weights for a in alphas for b in betas]
        return self.tune("joint+lm", items, references, grid)


def _check_weights(weights: Sequence[float]) -> None:
    if not weights or any(not 0.0 < w <= 1.0 for w in weights):
        raise ValueError(f"CTC weights must lie in (0, 1], got {list(weights)}")
