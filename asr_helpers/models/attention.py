"""The attention decoder of the joint CTC/attention model (Listen, Attend and Spell).

An LSTM reads the previous output symbol and the previous context vector; location-aware
attention (Chorowski et al. 2015; ESPnet's ``AttLoc``) looks at the encoder states with a query
from the decoder and a convolution over the previous step's attention weights, which nudges it
to move forward monotonically instead of jumping between similar-sounding frames.

``DotAttentionDecoder`` is the cheaper alternative (``DecoderConfig.attention = "dot"``): an LSTM
over the previous symbols alone and scaled dot-product attention (Luong et al. 2015), which
training runs for all symbols at once.

Output symbols share the tokenizer's ids, so the CTC prefix scorer and the decoder score the
same token: the tokenizer's units (ids ``1..V-1``) plus one extra id ``V`` that is the start
symbol on input and the end symbol on output (as in ESPnet). The CTC blank (id 0) is never an
output of the decoder: its logit is fixed to -inf.

Padded encoder frames are masked out of the attention (weight exactly 0) and never read.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from asr_helpers.decoding.scorers import RowMemory
from asr_helpers.models.deepspeech2 import time_mask

ATTENTION_KINDS = ("location", "dot")  # DecoderConfig.attention: AttentionDecoder, DotAttentionDecoder


def check_attention_kind(kind: str) -> None:
    """One-line error for an attention kind there is no decoder for."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}, not {kind!r}")


@dataclass(frozen=True)
class DecoderConfig:
    attention: str = "location"      # location: Chorowski et al., one symbol at a time; dot: Luong et al., all at once
    embed_dim: int = 128
    hidden: int = 256
    layers: int = 1                  # LSTM layers (1 or 2)
    attention_dim: int = 128
    location_channels: int = 10      # filters of the convolution over the previous attention weights
    location_width: int = 31         # odd kernel width of that convolution, in encoder frames
    sharpening: float = 2.0          # scales energies before the softmax (ESPnet's AttLoc default)
    dropout: float = 0.0             # on the LSTM output, before the output layer

    def __post_init__(self):
        check_attention_kind(self.attention)
        if self.layers not in (1, 2):
            raise ValueError(f"decoder layers must be 1 or 2, got {self.layers}")
        if self.location_width % 2 == 0:
            raise ValueError(f"location_width must be odd, got {self.location_width}")

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderMemory(NamedTuple):
    """What attention reads: encoder states, their projection (computed once) and the valid-frame mask."""
    values: torch.Tensor  # [B, T, D]
    keys: torch.Tensor    # [B, T, A]
    mask: torch.Tensor    # [B, T] bool, True on real frames

    def rows(self, index: torch.Tensor) -> "EncoderMemory":
        """The memories of utterances ``index``."""
        return EncoderMemory(*(t[index] for t in self))


class DecoderState(NamedTuple):
    """The decoder after some steps: LSTM states per layer and the last attention weights."""
    hidden: tuple[torch.Tensor, ...]  # per layer [N, H]
    cell: tuple[torch.Tensor, ...]    # per layer [N, H]
    weights: torch.Tensor             # [N, T]

    def select(self, index: torch.Tensor) -> "DecoderState":
        """The states of the hypotheses at ``index`` (reorders a beam)."""
        return DecoderState(tuple(h[index] for h in self.hidden), tuple(c[index] for c in self.cell),
                            self.weights[index])


class LocationAwareAttention(nn.Module):
    """Energy ``w . tanh(W keys + V query + U conv(previous weights))``, softmax over real frames."""

    def __init__(self, encoder_dim: int, query_dim: int, config: DecoderConfig):
        super().__init__()
        self.key_projection = nn.Linear(encoder_dim, config.attention_dim)
        self.query_projection = nn.Linear(query_dim, config.attention_dim, bias=False)
        self.location_conv = nn.Conv1d(1, config.location_channels, config.location_width,
                                       padding=config.location_width // 2, bias=False)
        self.location_projection = nn.Linear(config.location_channels, config.attention_dim, bias=False)
        self.energy = nn.Linear(config.attention_dim, 1)
        self.sharpening = config.sharpening

    def memory(self, states: torch.Tensor, lengths: torch.Tensor) -> EncoderMemory:
        return EncoderMemory(states, self.key_projection(states), time_mask(lengths, states.shape[1]))

    def forward(self, memory: EncoderMemory | RowMemory, query: torch.Tensor,
                previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context ``[N, D]`` and weights ``[N, T]`` (zero on padding) for one decoder step."""
        location = self.location_projection(self.location_conv(previous[:, None, :]).transpose(1, 2))
        if isinstance(memory, RowMemory):
            rows, memory = memory.rows, memory.memory
            inner = rows.group(self.query_projection(query)[:, None, :] + location)     # [B, K, T, A]
            energy = self.energy(torch.tanh(memory.keys[:, None] + inner)).squeeze(-1)
            weights = torch.softmax(self.sharpening * energy.masked_fill(~memory.mask[:, None], float("-inf")), dim=-1)
            return rows.ungroup(torch.bmm(weights, memory.values)), rows.ungroup(weights)
        energy = self.energy(torch.tanh(memory.keys + self.query_projection(query)[:, None, :] + location))
        energy = energy.squeeze(-1).masked_fill(~memory.mask, float("-inf"))
        weights = torch.softmax(self.sharpening * energy, dim=-1)
        return torch.bmm(weights[:, None, :], memory.values).squeeze(1), weights


class DecoderBase(nn.Module):
    """What both decoders share: symbol ids and embedding, what attention reads, the start state and
    the output layer over units and end (registered last, after each decoder's own layers)."""

    attention: LocationAwareAttention | DotProductAttention

    def __init__(self, vocab_size: int, config: DecoderConfig, blank: int):
        super().__init__()
        self.config = config
        self.blank = blank
        self.eos = vocab_size          # also the start symbol
        self.num_classes = vocab_size + 1
        self.embedding = nn.Embedding(self.num_classes, config.embed_dim)

    def _add_output(self, encoder_dim: int) -> None:
        self.dropout = nn.Dropout(self.config.dropout)
        self.output = nn.Linear(self.config.hidden + encoder_dim, self.num_classes)

    def _logits(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Scores over units and end; the CTC blank's is -inf, so the decoder never emits it."""
        logits = self.output(torch.cat([self.dropout(hidden), context], dim=-1))
        return logits.masked_fill(torch.arange(logits.shape[-1], device=logits.device) == self.blank, float("-inf"))

    def memory(self, states: torch.Tensor, lengths: torch.Tensor) -> EncoderMemory:
        return self.attention.memory(states, lengths)

    def initial_state(self, memory: EncoderMemory) -> DecoderState:
        """Zero LSTM states and uniform attention over each utterance's real frames."""
        zeros = memory.values.new_zeros(memory.values.shape[0], self.config.hidden)
        mask = memory.mask.to(memory.values.dtype)
        weights = mask / mask.sum(1, keepdim=True).clamp(min=1)
        return DecoderState((zeros,) * self.config.layers, (zeros,) * self.config.layers, weights)


class AttentionDecoder(DecoderBase):
    """Previous symbol + previous context -> LSTM -> attention -> scores over units and end."""

    def __init__(self, vocab_size: int, encoder_dim: int, config: DecoderConfig, blank: int = 0):
        super().__init__(vocab_size, config, blank)
        sizes = [config.embed_dim + encoder_dim] + [config.hidden] * (config.layers - 1)
        self.cells = nn.ModuleList(nn.LSTMCell(size, config.hidden) for size in sizes)
        self.attention = LocationAwareAttention(encoder_dim, config.hidden, config)
        self._add_output(encoder_dim)

    def step(self, memory: EncoderMemory, tokens: torch.Tensor,
             state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Logits ``[N, V + 1]`` of the next symbol after ``tokens`` ``[N]``, and the new state."""
        context, weights = self.attention(memory, state.hidden[-1], state.weights)
        x = torch.cat([self.embedding(tokens), context], dim=-1)
        hidden, cell = [], []
        for layer, lstm in enumerate(self.cells):
            h, c = lstm(x, (state.hidden[layer], state.cell[layer]))
            hidden.append(h)
            cell.append(c)
            x = h
        return self._logits(x, context), DecoderState(tuple(hidden), tuple(cell), weights)

    def forward(self, memory: EncoderMemory, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits ``[B, U, V + 1]`` and attention weights ``[B, U, T]`` for ``inputs [B, U]``."""
        state = self.initial_state(memory)
        logits, weights = [], []
        for position in range(inputs.shape[1]):
            step_logits, state = self.step(memory, inputs[:, position], state)
            logits.append(step_logits)
            weights.append(state.weights)
        return torch.stack(logits, 1), torch.stack(weights, 1)


class DotProductAttention(nn.Module):
    """Energy ``(W keys) . (V query) / sqrt(A)``, softmax over real frames (Luong et al. 2015).

    Nothing here depends on the previous step's weights, so teacher forcing attends for every
    output symbol in one batched product; the diagonal prior and CTC supply the monotonic push
    that location-awareness gives the other decoder.
    """

    def __init__(self, encoder_dim: int, query_dim: int, config: DecoderConfig):
        super().__init__()
        self.key_projection = nn.Linear(encoder_dim, config.attention_dim)
        self.query_projection = nn.Linear(query_dim, config.attention_dim, bias=False)
        self.scale = config.attention_dim ** -0.5

    def memory(self, states: torch.Tensor, lengths: torch.Tensor) -> EncoderMemory:
        return EncoderMemory(states, self.key_projection(states), time_mask(lengths, states.shape[1]))

    def forward(self, memory: EncoderMemory | RowMemory, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Contexts ``[N, U, D]`` and weights ``[N, U, T]`` (zero on padding) for queries ``[N, U, H]``
        (a ``RowMemory``: one query per row, ``U`` = 1, each utterance's rows attending together)."""
        if isinstance(memory, RowMemory):
            contexts, weights = self(memory.memory, memory.rows.group(queries[:, 0]))
            return memory.rows.ungroup(contexts)[:, None], memory.rows.ungroup(weights)[:, None]
        energy = torch.bmm(self.query_projection(queries), memory.keys.transpose(1, 2)) * self.scale
        weights = torch.softmax(energy.masked_fill(~memory.mask[:, None, :], float("-inf")), dim=-1)
        return torch.bmm(weights, memory.values), weights


class DotAttentionDecoder(DecoderBase):
    """Previous symbol -> LSTM -> dot-product attention -> scores over units and end.

    The LSTM reads symbols only (no context fed back), so training runs it and the attention
    over the whole target at once instead of one Python step per symbol: on 2 CPU cores the
    location-aware decoder doubled the training step, this one adds a few percent.
    """

    def __init__(self, vocab_size: int, encoder_dim: int, config: DecoderConfig, blank: int = 0):
        super().__init__(vocab_size, config, blank)
        self.rnn = nn.LSTM(config.embed_dim, config.hidden, config.layers, batch_first=True)
        self.attention = DotProductAttention(encoder_dim, config.hidden, config)
        self._add_output(encoder_dim)

    def _scores(self, memory: EncoderMemory, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context, weights = self.attention(memory, outputs)
        return self._logits(outputs, context), weights

    def step(self, memory: EncoderMemory, tokens: torch.Tensor,
             state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Logits ``[N, V + 1]`` of the next symbol after ``tokens`` ``[N]``, and the new state."""
        outputs, (hidden, cell) = self.rnn(self.embedding(tokens)[:, None, :],
                                           (torch.stack(state.hidden), torch.stack(state.cell)))
        logits, weights = self._scores(memory, outputs)
        return logits[:, 0], DecoderState(tuple(hidden.unbind(0)), tuple(cell.unbind(0)), weights[:, 0])

    def forward(self, memory: EncoderMemory, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits ``[B, U, V + 1]`` and attention weights ``[B, U, T]`` for ``inputs [B, U]``."""
        outputs, _ = self.rnn(self.embedding(inputs))
        return self._scores(memory, outputs)


def attention_decoder(vocab_size: int, encoder_dim: int, config: DecoderConfig,
                      blank: int = 0) -> AttentionDecoder | DotAttentionDecoder:
    """The decoder ``config.attention`` names."""
    kind = AttentionDecoder if config.attention == "location" else DotAttentionDecoder
    return kind(vocab_size, encoder_dim, config, blank)


def teacher_forcing_pairs(targets: torch.Tensor, target_lengths: torch.Tensor,
                          eos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder inputs ``<sos> y`` and outputs ``y <eos>`` ``[B, U + 1]`` from CTC-style concatenated targets.

    Returns inputs, outputs and their lengths (``target_lengths + 1``); padding holds ``eos``
    and is masked by the loss.
    """
    batch, longest = len(target_lengths), int(target_lengths.max()) + 1 if len(target_lengths) else 1
    inputs = targets.new_full((batch, longest), eos)
    outputs = targets.new_full((batch, longest), eos)
    offset = 0
    for row, length in enumerate(target_lengths.tolist()):
        tokens = targets[offset:offset + length]
        inputs[row, 1:length + 1] = tokens
        outputs[row, :length] = tokens
        offset += length
    return inputs, outputs, target_lengths + 1


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                                 smoothing: float, excluded_class: int | None = None) -> torch.Tensor:
    """Mean over real target tokens of cross-entropy against ``(1 - smoothing)`` one-hot + ``smoothing`` uniform.

    The uniform part spreads over every class except ``excluded_class`` (the blank, which the
    decoder cannot emit). Computed in float32 so it is safe under autocast.
    """
    log_probs = logits.float().log_softmax(-1)
    classes = torch.ones(log_probs.shape[-1], dtype=torch.bool, device=log_probs.device)
    if excluded_class is not None:
        classes[excluded_class] = False
    nll = -log_probs.gather(-1, targets[..., None]).squeeze(-1)
    uniform = -log_probs.masked_fill(~classes, 0.0).sum(-1) / classes.sum()
    per_token = (1.0 - smoothing) * nll + smoothing * uniform
    mask = time_mask(lengths, targets.shape[1])
    return per_token.masked_select(mask).mean()
