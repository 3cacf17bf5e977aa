"""CTC decoding: greedy, a hand-written prefix beam search, LM shallow fusion, and building any decoder by name.

``build_decoder(name, ...)`` is the one place decoder names resolve (the decoder comparison,
the widgets and transcription choose decoders through it); the facts about each decoder (label,
the model output it reads, whether it needs an LM) are the table in ``decoders``. The ``ctc``
decoders (greedy, beam, lm) work on a CTC head's log-probs; the ``attention`` ones need a joint
CTC/attention model's encoder states and are carried out by an ``attention_decoding.AttentionSearch``.

All decoders take log-probabilities (``log_softmax`` output) laid out [batch, frames, vocab]
or, per utterance, [frames, vocab]. The greedy decoder and the beam search work on token ids
and let ``tokenizer.decode`` make text, so a BPE tokenizer with the same interface works too.
Tensors are used through their own methods (``argmax``, ``cpu``), so this module never
imports torch; pyctcdecode and kenlm are imported only when an ``LMDecoder`` is built.

Casing: model labels are lower case. Language models and unigram lists must be lower case
too; ``lm`` lower-cases OpenSLR's upper-case files when it converts them, and ``LMDecoder``
refuses an LM or unigram list whose casing does not match the labels instead of quietly
decoding without LM help.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from asr_helpers.decoding.decoders import TABLE, decoders_for, spec
from asr_helpers.decoding.forked_pool import ForkedPool

NEG_INF = float("-inf")
UNIGRAMS_FILE = "unigrams.txt"  # written by ``lm`` next to each language model


def _numpy(x) -> np.ndarray:
    """A numpy view of a tensor or array (moved to the CPU first)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def greedy_ids(log_probs, lengths, blank: int = 0) -> list[list[int]]:
    """Best-path token ids per utterance: argmax over the whole batch, collapse repeats, drop blanks."""
    if len(log_probs.shape) != 3:
        raise ValueError(f"log_probs must be [batch, frames, vocab], got shape {tuple(log_probs.shape)}")
    ids = _numpy(log_probs.argmax(-1))  # argmax where the tensor lives: only [B, T] ids move
    lengths = _numpy(lengths).astype(np.int64).reshape(-1)
    batch, frames = ids.shape
    if lengths.shape != (batch,):
        raise ValueError(f"{lengths.shape[0]} lengths for a batch of {batch}")
    if (lengths < 0).any() or (lengths > frames).any():
        raise ValueError(f"lengths must lie in [0, {frames}], got {lengths.tolist()}")
    keep = np.ones_like(ids, dtype=bool)
    keep[:, 1:] = ids[:, 1:] != ids[:, :-1]
    keep &= ids != blank
    keep &= np.arange(frames)[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(ids, keep)]


def greedy_decode(log_probs, lengths, tokenizer) -> list[str]:
    """Texts of the best path per utterance, for log-probs [B, T, V] and valid lengths [B]."""
    _check_vocab(log_probs.shape[-1], tokenizer)
    return [tokenizer.decode(ids) for ids in greedy_ids(log_probs, lengths, tokenizer.blank_id)]


def _check_vocab(size: int, tokenizer) -> None:
    if size != tokenizer.vocab_size:
        raise ValueError(f"log-probs have {size} classes but the tokenizer has {tokenizer.vocab_size} labels")


def _log_prob_matrix(log_probs) -> np.ndarray:
    """A float64 [T, V] matrix, refusing logits or probabilities with a clear message."""
    matrix = _numpy(log_probs).astype(np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"expected one utterance as [frames, vocab], got shape {matrix.shape}")
    if matrix.size and not np.all(np.isfinite(matrix.max(axis=1))):
        raise ValueError("log-probs contain NaN or rows without any finite value")
    if matrix.size:
        peak = matrix.max(axis=1, keepdims=True)
        norm = peak[:, 0] + np.log(np.exp(matrix - peak).sum(axis=1))
        if np.abs(norm).max() > 1e-2:
            raise ValueError("rows do not sum to probability 1: pass log_softmax output, not logits or probabilities")
    return matrix


def _candidates(row: np.ndarray, blank: int, token_prune: float | None, top_k: int | None) -> np.ndarray:
    """Non-blank token ids worth extending with at one frame."""
    scores = row.copy()
    scores[blank] = NEG_INF
    if token_prune is not None:
        scores[scores < token_prune] = NEG_INF
    ids = np.flatnonzero(scores > NEG_INF)
    if top_k is not None and len(ids) > top_k:
        ids = ids[np.argpartition(scores[ids], -top_k)[-top_k:]]
    return ids


def prefix_beam_search(log_probs, beam_width: int = 16, blank: int = 0, token_prune: float | None = -12.0,
                       top_k: int | None = None) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search: the most probable label sequences, best first, with their log-probs.

    Each prefix keeps two log-probabilities: of all kept alignments ending in blank and of
    those ending in its last token. Both are needed because a repeated token only extends the
    prefix after a blank ("a a" collapses to "a", "a _ a" to "aa"). A prefix's score is the
    sum over its alignments, so it is exact when nothing is pruned and a lower bound otherwise.
    ``token_prune`` skips tokens below that log-prob at a frame and ``top_k`` keeps only the k
    most likely; the blank and a prefix's own last token (staying in place) are always scored.

    Per frame the scores of every beam x candidate pair are one numpy array; Python touches
    only the beams (to merge an extension with an existing beam of the same prefix) and the
    winners, so the cost hardly grows with the vocabulary.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 or None, got {top_k}")
    matrix = _log_prob_matrix(log_probs)
    if not 0 <= blank < matrix.shape[1]:
        raise ValueError(f"blank id {blank} outside the {matrix.shape[1]} classes")
    prefixes: list[tuple[int, ...]] = [()]
    ends_blank, ends_token = np.zeros(1), np.full(1, NEG_INF)  # log-probs of alignments ending so
    last = np.full(1, -1)  # last token per prefix, -1 for the empty one
    with np.errstate(divide="ignore", invalid="ignore"):
        for row in matrix:
            tokens = _candidates(row, blank, token_prune, top_k)
            total = np.logaddexp(ends_blank, ends_token)
            stay_blank = total + row[blank]
            stay_token = np.where(last >= 0, ends_token + row[np.maximum(last, 0)], NEG_INF)
            repeat = last[:, None] == tokens[None, :]
            extend = np.where(repeat, ends_blank[:, None], total[:, None]) + row[tokens][None, :]
            position = {prefix: i for i, prefix in enumerate(prefixes)}
            column = {token: k for k, token in enumerate(tokens.tolist())}
            for j, prefix in enumerate(prefixes):  # an extension that is already a beam joins it
                if prefix and prefix[-1] in column and (i := position.get(prefix[:-1])) is not None:
                    k = column[prefix[-1]]
                    stay_token[j] = np.logaddexp(stay_token[j], extend[i, k])
                    extend[i, k] = NEG_INF
            scores = np.concatenate([np.logaddexp(stay_blank, stay_token), extend.ravel()])
            keep = np.flatnonzero(scores > NEG_INF)
            if len(keep) > beam_width:
                keep = keep[np.argpartition(scores[keep], -beam_width)[-beam_width:]]
            n = len(prefixes)
            stays, grows = keep[keep < n], keep[keep >= n] - n
            parent, column_of = np.divmod(grows, len(tokens)) if len(tokens) else (grows, grows)
            prefixes = [prefixes[j] for j in stays.tolist()] + [
                prefixes[i] + (int(tokens[k]),) for i, k in zip(parent.tolist(), column_of.tolist())]
            ends_blank = np.concatenate([stay_blank[stays], np.full(len(grows), NEG_INF)])
            ends_token = np.concatenate([stay_token[stays], extend[parent, column_of]])
            last = np.concatenate([last[stays], tokens[column_of]])
    totals = np.logaddexp(ends_blank, ends_token)
    order = np.argsort(-totals, kind="stable")
    return [(prefixes[i], float(totals[i])) for i in order]


def beam_decode(log_probs, lengths, tokenizer, beam_width: int = 16, token_prune: float | None = -12.0,
                top_k: int | None = None) -> list[str]:
    """Texts of the best prefix per utterance from ``prefix_beam_search`` over a [B, T, V] batch."""
    _check_vocab(log_probs.shape[-1], tokenizer)
    matrices, lengths = _numpy(log_probs), _numpy(lengths).astype(np.int64).reshape(-1)
    if matrices.ndim != 3 or lengths.shape != (matrices.shape[0],):
        raise ValueError(f"need log_probs [B, T, V] and lengths [B], got {matrices.shape} and {lengths.shape}")
    texts = []
    for matrix, length in zip(matrices, lengths):
        best, _ = prefix_beam_search(matrix[:length], beam_width, tokenizer.blank_id, token_prune, top_k)[0]
        texts.append(tokenizer.decode(list(best)))
    return texts


@dataclass
class Encoding:
    """One utterance as a model saw it: the CTC head's log-probs, and the encoder states attention reads."""
    log_probs: np.ndarray              # [T', V]
    states: np.ndarray | None = None   # [T', D]; None for a CTC-only model


def log_prob_matrix(item) -> np.ndarray:
    """The CTC log-probs of an ``Encoding`` or of a bare [T', V] matrix."""
    return item.log_probs if isinstance(item, Encoding) else item


@dataclass(frozen=True)
class Decoder:
    """A named decoder: ``decode`` turns a list of utterances (``Encoding`` or log-probs [T, V]) into texts."""
    name: str
    decode: Callable[[Sequence], list[str]]


def build_decoder(name: str, tokenizer, *, beam_width: int = 16, lm_decoder: LMDecoder | None = None,
                  pool_size: int = 1, attention=None) -> Decoder:
    """The decoder called ``name`` (one of ``decoders.DECODERS``; another name is a one-line error).

    ``lm`` needs an ``LMDecoder`` (it holds the loaded LM); the attention decoders need
    ``attention``, an ``attention_decoding.AttentionSearch`` over the joint model (``joint+lm``
    also its word LM), and ``Encoding`` items with encoder states.
    """
    def each(decode_batch) -> Callable[[Sequence], list[str]]:
        return lambda items: [decode_batch(np.asarray(m)[None], np.array([len(m)]))[0]
                              for m in map(log_prob_matrix, items)]

    head = spec(name).head
    if name == "greedy":
        return Decoder(name, each(lambda lp, n: greedy_decode(lp, n, tokenizer)))
    if name == "beam":
        return Decoder(name, each(lambda lp, n: beam_decode(lp, n, tokenizer, beam_width)))
    if name == "lm":
        if lm_decoder is None:
            raise ValueError("the lm decoder needs a language model: pass lm_decoder=LMDecoder(...)")
        return Decoder(name, lambda items: lm_decoder.decode_batch([log_prob_matrix(i) for i in items], pool_size))
    if head == "attention":
        if attention is None:
            raise ValueError(f"the {name} decoder needs a model with an attention decoder (model: las)")
        attention.check(name)  # joint+lm without a word LM: a one-line error now, not at the first utterance
        return Decoder(name, lambda items: attention.decode(name, items))
    raise ValueError(f"the decoder table lists {name!r}, but build_decoder has no way to build it")


def available_decoders(lm_decoder: LMDecoder | None = None, attention=None) -> list[str]:
    """Decoder names usable now, in the table's order: the attention ones only with an ``AttentionSearch``, and
    those needing a word LM only when it is there (``lm_decoder`` for ``lm``, the search's ``lm`` for ``joint+lm``)."""
    def has_lm(name: str) -> bool:
        return (lm_decoder if TABLE[name].head == "ctc" else attention.lm) is not None

    heads = {"ctc"} if attention is None else {"ctc", "attention"}
    return [name for name in decoders_for(heads) if not TABLE[name].needs_lm or has_lm(name)]


def read_unigrams(path: Path) -> list[str]:
    """Words of a unigram list, one per line (the format ``lm`` writes)."""
    return [w for w in Path(path).read_text(encoding="utf-8").split() if w]


def _label_check(labels: Sequence[str], words: Sequence[str], lm_path: Path) -> None:
    """Refuse unigrams spelled with characters the labels lack (in practice: the wrong case)."""
    label_chars = set("".join(labels)) - {"\u2581"}
    word_chars = set("".join(words))
    foreign = word_chars - label_chars
    if words and len(foreign) > 0.2 * len(word_chars):
        raise ValueError(
            f"the unigrams of {lm_path.name} use characters the labels lack ({''.join(sorted(foreign))[:20]}...): "
            "most likely UPPER-case words against lower-case labels. Convert the LM with "
            "asr_helpers.decoding.lm.download_lm / build_ngram, which lower-case it.")


def load_kenlm(lm_path: Path, labels: Sequence[str], unigrams: Sequence[str] | Path | str | None = None):
    """A KenLM model and its vocabulary: ``unigrams`` (a list or a file), else ``unigrams.txt`` next to the
    model, else the ARPA model's own 1-grams; words the model lacks are dropped, most lacking is refused."""
    import kenlm
    from pyctcdecode.language_model import load_unigram_set_from_arpa

    if not lm_path.is_file():
        raise FileNotFoundError(f"language model {lm_path} not found (see asr_helpers.decoding.lm.download_lm)")
    if unigrams is None and (lm_path.parent / UNIGRAMS_FILE).is_file():
        unigrams = lm_path.parent / UNIGRAMS_FILE
    if isinstance(unigrams, (str, Path)):
        words = read_unigrams(Path(unigrams))
    elif unigrams is not None:
        words = list(unigrams)
    elif lm_path.suffix == ".arpa":
        words = sorted(w for w in load_unigram_set_from_arpa(str(lm_path)) if w not in ("<s>", "</s>", "<unk>"))
    else:
        raise ValueError(f"{lm_path.name} is a binary LM: pass unigrams= or put {UNIGRAMS_FILE} next to it")
    _label_check(labels, words, lm_path)
    model = kenlm.Model(str(lm_path))
    known = [w for w in words if w in model]
    if len(known) < 0.5 * len(words):
        raise ValueError(
            f"only {len(known)} of {len(words)} unigrams are in {lm_path.name}: the LM and the word list "
            "disagree (casing?). Use the unigrams written with the LM.")
    return model, known


class LMDecoder:
    """Beam search with n-gram shallow fusion (pyctcdecode + KenLM).

    A beam's score is ``log p_ctc + alpha * log p_lm(words) + beta * len(words)``: alpha
    weighs the LM against the acoustic model and beta pays a bonus per word so the LM does
    not simply prefer short outputs. Tune both on a dev split with ``lm.tune_alpha_beta``.
    Without ``lm_path`` it is pyctcdecode's plain beam search (a baseline for the LM's gain).

    Unigrams (the word list pyctcdecode uses to score partial words) come from ``unigrams``
    (a list or a file), else from ``unigrams.txt`` next to the model, else from an ARPA
    model itself. A binary model with none of these is refused.
    """

    def __init__(self, labels: Sequence[str], lm_path: Path | str | None = None,
                 unigrams: Sequence[str] | Path | str | None = None, *, alpha: float = 0.5, beta: float = 1.0,
                 beam_width: int = 64, token_min_logp: float = -5.0, beam_prune_logp: float = -10.0) -> None:
        from pyctcdecode import Alphabet, BeamSearchDecoderCTC, LanguageModel

        self.labels = list(labels)
        self.beam_width = beam_width
        self.token_min_logp = token_min_logp
        self.beam_prune_logp = beam_prune_logp
        self.lm_path = None if lm_path is None else Path(lm_path)
        language_model = None
        if self.lm_path is None and unigrams is not None:
            raise ValueError("unigrams only make sense with a language model: pass lm_path too")
        if self.lm_path is not None:
            model, words = load_kenlm(self.lm_path, self.labels, unigrams)
            language_model = LanguageModel(model, words, alpha=alpha, beta=beta)
        self._decoder = BeamSearchDecoderCTC(Alphabet.build_alphabet(self.labels), language_model)
        self.params = (alpha, beta)
        self._pool = ForkedPool()

    def set_params(self, alpha: float, beta: float) -> None:
        """Change the LM weight and word bonus without reloading the LM (pool workers follow on their next task)."""
        self._decoder.reset_params(alpha=alpha, beta=beta)
        self.params = (alpha, beta)

    def decode(self, log_probs: np.ndarray) -> str:
        """Best text for one utterance's log-probs [T, V]."""
        return self.decode_prepared(self._matrix(log_probs))

    def decode_prepared(self, matrix: np.ndarray) -> str:
        """Best text for a matrix ``_matrix`` has checked (what a pool worker is sent)."""
        return self._decoder.decode(matrix, beam_width=self.beam_width, beam_prune_logp=self.beam_prune_logp,
                                    token_min_logp=self.token_min_logp)

    def decode_batch(self, log_probs_list: Sequence[np.ndarray], pool_size: int = 1) -> list[str]:
        """Best texts for many utterances, on ``pool_size`` worker processes forked once and kept until
        ``close`` (``forked_pool``: they share the loaded LM, and each task carries the current alpha and beta)."""
        return self._pool.decode(self, [self._matrix(m) for m in log_probs_list], pool_size)

    def _matrix(self, log_probs) -> np.ndarray:
        matrix = np.ascontiguousarray(_numpy(log_probs), dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.labels):
            raise ValueError(f"expected log-probs [frames, {len(self.labels)}], got shape {matrix.shape}")
        return matrix

    def close(self) -> None:
        """Stop the worker pool and free the LM (pyctcdecode holds it in a class-level registry until told)."""
        self._pool.close()
        self._decoder.cleanup()

    def __enter__(self) -> LMDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
