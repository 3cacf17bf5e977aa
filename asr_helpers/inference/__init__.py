"""Inference wing: using a trained model on audio files and on whole splits.

``transcribe`` (folders of audio -> text files, the ``Transcriber``), ``comparison`` (every
decoder scored on a split, as notebook 04 shows) and ``streaming`` (audio chunks -> partial
transcripts with a ``ds2_stream`` model, the ``Streamer``).

May import: the base modules, ``data``, ``decoding``, ``models`` and ``training``.
"""
