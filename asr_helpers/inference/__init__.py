"""Inference wing: using a trained model on audio files and on whole splits.

``transcribe`` (folders of audio -> text files, the ``Transcriber``) and ``comparison`` (every
decoder scored on a split, as notebook 04 shows).

May import: the base modules, ``data``, ``decoding``, ``models`` and ``training``.
"""
