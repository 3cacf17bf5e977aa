"""asr-workbook helpers: the tested logic behind the course notebooks.

Importing the package is cheap (no torch); each module imports what it needs. The package is
flat on purpose (one job per module, short imports in notebooks); the map below groups it.
Imports flow downwards only: nothing in a lower group imports a higher one
(``tests/test_imports.py`` checks it), and only ``tracking`` imports wandb.

Corpus and data (low)
    paths, runtime      where things live; seeds, device, precision, Kaggle/Colab set-up
    download            resumable, verified downloads and safe extraction
    librispeech         the LibriSpeech split table, mounted copies, downloads
    sentences, tts,     the offline corpus: sentences, free TTS voices, rendering in
    synthetic           LibriSpeech layout
    corpora             one entry point: a corpus name -> a LibriSpeech-layout root
    manifest            one row per usable utterance, cached
    text, audio         transcript normalisation and tokenizers; reading any audio file
    dataset, augment    dataset, collate, length-bucketed sampler; wave augmentations
    spec_augment        SpecAugment and frequency warping on log-mel batches
Model and decoding (low)
    features, model     log-mel front end; DeepSpeech2, its output-length rule and the CTC loss
    attention, las      the attention decoders (location-aware, dot-product); the joint CTC/attention model (LAS + CTC)
    recognizer          the models the loop plugs in (DeepSpeech2, joint): batch -> loss, outputs, quick decoding
    decoding, lm        greedy, prefix beam search, LM fusion and the registry of every decoder; n-gram LMs
    ctc_prefix,         CTC prefix scores; attention greedy, beam and joint CTC/attention search
    attention_decoding  (the registry's attention decoders)
    lm_fusion           a word LM inside the joint search: shallow fusion with a prefix look-ahead
    attention_maps      lock-on score and labelled attention-map figures
    metrics             WER and CER
Training (middle)
    config              TrainConfig: every training setting
    data                build_data: corpus -> manifests -> tokenizer -> sampler and loaders
    distributed         rank, device and the decisions every DDP rank must agree on
    evaluation          dev loss and error rates of any model; CTC log-probs for decoders
    checkpoint, rundir  self-describing checkpoints (load_model, load_recognizer); every run-folder file name
    schedule, tracking  the one-cycle schedule; wandb + plain-file logging
    trainer             the loop: accumulation, AMP, clipping, agreed skips and stops, resume
    training            train / launch: data + model + loop from a TrainConfig (torchrun for DDP)
Using a model (high)
    inference, cli      transcribe folders, score predictions, command line
    comparison, sanity  decoders compared on whole splits; the one-batch overfit test
    bench               throughput benchmarks
Notebook support (high)
    explore, plots, widgets, report, notebooks, install
"""

__version__ = "0.1.0"
