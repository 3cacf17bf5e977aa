"""Decoding wing: from model scores to text, and how good the text is.

CTC decoders (greedy, prefix beam, pyctcdecode + KenLM), n-gram LMs (build, download, load),
CTC prefix scores, the label-synchronous beam search over weighted scorers (``beam_search``,
``scorers``: attention decoder, CTC prefix score, the word LM of ``lm_fusion``), the attention
decoders built on it (``attention_decoding``) and WER/CER (``metrics``). Nothing here knows a model
class: a search is handed the decoder and encoder outputs it scores.

May import: the base modules and ``data``.
"""
