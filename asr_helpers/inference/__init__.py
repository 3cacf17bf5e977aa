"""Inference wing: using a trained model on audio files and on whole splits.

``transcribe`` (folders of audio -> text files, the ``Transcriber``), ``comparison`` (every
decoder scored on a split, as notebook 04 shows), ``streaming`` (audio chunks -> partial
transcripts with a ``ds2_stream`` model, the ``Streamer``) and ``stream_record`` (one utterance's
partials over time and the latency per chunk size, recorded by 04 for the report).

May import: the base modules, ``data``, ``decoding``, ``models`` and ``training``.
"""
