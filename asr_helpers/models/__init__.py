"""Models wing: the networks and the recognizers the training loop plugs in.

DeepSpeech2 (``deepspeech2``), the attention decoders and the joint CTC/attention model (``attention``,
``las``), the streaming DeepSpeech2 and its recognizer (``ds2_stream``), the recognizers that turn a batch into a loss and quick transcripts (``recognizer``), the
attention-map figures and lock-on score (``attention_maps``), and the table of models by name that
everything else asks instead of testing a model's class (``registry``: ``build_model``, ``model_spec``).

May import: the base modules, ``data`` and ``decoding``.
"""
