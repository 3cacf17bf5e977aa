"""asr-workbook helpers: the tested logic behind the course notebooks.

Importing the package is cheap (no torch); each module imports what it needs. The package is
split into wings by area; a wing imports only the wings above it in this list and the base
(``tests/test_imports.py`` checks it, and that no two modules import each other round a cycle).

Base (any wing may import)
    paths, runtime, plots   where things live; seeds, device, precision, Kaggle/Colab; figure helpers
data        corpus on disk -> batches and features
    audio, text             reading any audio file; transcript normalisation and tokenizers
    download, librispeech   verified, resumable downloads and safe extraction; LibriSpeech splits and mounts
    sentences, tts,         the offline corpus: sentences, free TTS voices, rendering in LibriSpeech layout
    synthetic, tone_corpus
    corpora, manifest       a corpus name -> a LibriSpeech-layout root; one cached row per usable utterance
    dataset, augment,       dataset, collate, length-bucketed sampler; wave augmentations; SpecAugment
    spec_augment, features  and the log-mel front end
    explore                 corpus summaries for notebook 00
decoding    model scores -> text, and how good it is
    decoders, tuned         the decoder table (name, label, head, needs LM, tuned weights, metric);
                            one record of tuned weights per run (tuned.json)
    ctc, ctc_prefix, lm     CTC greedy / prefix beam / pyctcdecode + KenLM; CTC prefix scores; n-gram LMs
    lm_engines,             which engine runs the lm decoder: pyctcdecode (the reference) or flashlight
    flashlight_lm           (flashlight-text's C++ search, with or without a lexicon)
    scorers, beam_search,   the label-synchronous search: one beam search over weighted scorers
    lm_fusion,              (attention decoder, CTC prefix, word LM with prefix look-ahead), over the
    attention_decoding      hypotheses of a batch of utterances at once; AttentionSearch serves
                            attention_beam / joint / joint+lm as weight sets
    metrics                 WER and CER
models      the networks and the recognizers the loop plugs in
    registry                model name -> recognizer class (its SETTINGS: the config section), output heads
    deepspeech2, attention, DeepSpeech2; attention decoders; the joint CTC/attention model;
    las, ds2_stream         the streaming DeepSpeech2 (causal, unidirectional, look-ahead; stream_step)
    recognizer              batch -> loss, outputs, quick transcripts, logged media (the loop's interface)
    attention_maps          lock-on score and labelled attention-map figures
training    a config in, a self-describing checkpoint out
    config, loaders, run    TrainConfig; corpus -> manifests -> tokenizer -> loaders; train / launch
    trainer, schedule,      the loop (one train_step), one-cycle LR, rank agreement under DDP
    distributed
    evaluation, tracking    dev loss and error rates; wandb + plain-file logging
    checkpoint, export,     safe checkpoints and small exports; every run-folder file name;
    rundir, sanity          the one-batch overfit test
inference   a trained model used on files and splits
    transcribe, comparison  folders of audio -> text (the Transcriber); every decoder scored on a split
    streaming               chunks of audio -> partial transcripts (the Streamer, a ds2_stream model)
    stream_record           one utterance's partials over time and the latency per chunk size, for 05
report      what notebooks 04 and 05 show
    summary, figures,       run folders -> tables; the report's figures; error analysis;
    error_analysis,         the course checklist; interactive panels
    checklist, widgets,     the microphone panel (an anywidget recorder in front of a Streamer);
    mic_widget,             the Streaming section (partials over time, latency, accuracy cost)
    stream_summary
tools       entry points
    cli, notebooks          python -m asr_helpers ...; the notebooks headless
    bench, bench_train,     throughput benchmarks (training goes through Trainer.train_step)
    bench_data, bench_decode, bench_transcribe (files/s per decoder, beside a second checkout: --compare),
    bench_transcribe,       bench_stream (streaming latency, real-time factor, memory over a long stream)
    bench_stream
    gpu_check, gpu_plan     the prepared GPU check and the Kaggle week plan
    install                 requirements without breaking Kaggle/Colab's torch
"""

__version__ = "0.1.0"
