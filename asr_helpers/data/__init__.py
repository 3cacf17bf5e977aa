"""Data wing: from a corpus on disk to batches of waves and log-mel features.

Audio I/O, transcript normalisation and tokenizers, corpora (LibriSpeech archives and mounts, the
offline TTS corpus), manifests, the dataset, sampler and collate, wave augmentations, SpecAugment
and the log-mel front end; ``explore`` summarises a corpus for notebook 00.

May import: the base modules (``paths``, ``runtime``, ``plots``). No other wing.
"""
