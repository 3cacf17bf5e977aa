"""``python -m asr_helpers ...``: the command-line entry points graders and notebooks use.

Each command imports its module lazily, so ``--help`` is instant and a missing optional
dependency only affects the command that needs it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from asr_helpers.decoding.decoders import DECODERS, TABLE, decoders_for
from asr_helpers.decoding.lm_engines import DEFAULT_ENGINE, LM_ENGINES

LM_DECODERS = [d.name for d in TABLE.values() if d.needs_lm]  # those --lm is for


def _corpus_synth(args) -> None:
    from asr_helpers.data.synthetic import synthesize_corpus
    print(json.dumps(synthesize_corpus(args.out, minutes=args.minutes, seed=args.seed, workers=args.workers), indent=2))


def _corpus_index(args) -> None:
    from asr_helpers.data.manifest import index_split
    for split in args.split:
        print(index_split(args.root, split).summary())


def _download_librispeech(args) -> None:
    from asr_helpers.data.librispeech import ensure_split
    for split in args.split:
        print(ensure_split(split, root=args.root))


def _download_checkpoint(args) -> None:
    from asr_helpers.data.download import download
    from asr_helpers.training.export import describe
    print(describe(download(args.url, args.out, sha256=args.sha256)))


def _checkpoint_export(args) -> None:
    from asr_helpers.training.export import describe, export_checkpoint
    print(describe(export_checkpoint(args.checkpoint, args.out, dtype=args.dtype)))


def _checkpoint_info(args) -> None:
    from asr_helpers.training.export import describe
    print(describe(args.checkpoint))


def _checkpoint_convert(args) -> None:
    from asr_helpers.training.checkpoint import convert_trusted
    from asr_helpers.training.export import describe
    if not args.trust:
        raise ValueError(f"convert unpickles {args.checkpoint} fully, which runs any code the file holds; "
                         "add --trust only for a file you made yourself or got from a source you trust")
    print(describe(convert_trusted(args.checkpoint, args.out)))


def _download_lm(args) -> None:
    from asr_helpers.decoding.lm import download_lm
    print(download_lm(args.name, args.out))


def _lm_build(args) -> None:
    from asr_helpers.decoding.lm import build_ngram
    print(build_ngram(args.text, args.order, args.out))


def _train(args) -> None:
    import yaml

    from asr_helpers.training.run import train
    values = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    for item in args.set or []:
        key, _, raw = item.partition("=")
        values[key] = yaml.safe_load(raw)
    print(json.dumps(train(values), indent=2, default=str))


def _transcribe(args) -> None:
    if args.stream:
        from asr_helpers.inference.streaming import stream_transcribe
        report = stream_transcribe(args.checkpoint, args.input, args.output, args.lm, args.chunk_ms)
        print(report.summary())
        sys.exit(0 if report.written else 1)
    from asr_helpers.inference.transcribe import transcribe
    report = transcribe(args.checkpoint, args.input, args.output, decoder=args.decoder, lm_path=args.lm,
                        beam_width=args.beam_width, batch_seconds=args.batch_seconds, pool_size=args.pool_size,
                        attention_beam=args.attention_beam, ctc_weight=args.ctc_weight, lm_engine=args.lm_engine)
    print(report.summary())
    if not report.written:
        sys.exit(1)


def _score(args) -> None:
    from asr_helpers.decoding.metrics import score_folders
    report = score_folders(args.references, args.predictions)
    print(report.summary())


def _bench(args) -> None:
    from asr_helpers.tools import bench
    result = bench.run(args.what, args)
    if "table" in result:
        print(result.pop("table"))
    print(json.dumps(result))


def _lm_download_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="3-gram.pruned.1e-7", help="3-gram.pruned.1e-7, 4-gram, ...")
    parser.add_argument("--out", type=Path, default=None, help="default: artifacts/lm/librispeech")
    parser.set_defaults(func=_download_lm)


def _checkpoint_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    info = actions.add_parser("info", help="what a checkpoint holds and its SHA-256 (read without running code)")
    info.add_argument("checkpoint", type=Path)
    info.set_defaults(func=_checkpoint_info)
    export = actions.add_parser("export", help="weights, config, tokenizer and tuned decoding weights in a small file")
    export.add_argument("checkpoint", type=Path, help="e.g. artifacts/runs/demo/best.pt")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    export.set_defaults(func=_checkpoint_export)
    convert = actions.add_parser("convert", help="rewrite an old or foreign checkpoint you trust as a safe one")
    convert.add_argument("checkpoint", type=Path)
    convert.add_argument("--out", type=Path, required=True)
    convert.add_argument("--trust", action="store_true", help="unpickle the file fully: it can run code")
    convert.set_defaults(func=_checkpoint_convert)


def _corpus_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    synth = actions.add_parser("synth", help="render speech with Debian TTS voices in LibriSpeech layout")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--minutes", type=float, default=60.0)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=None)
    synth.set_defaults(func=_corpus_synth)
    index = actions.add_parser("index", help="index a LibriSpeech-layout root and print a summary")
    index.add_argument("--root", type=Path, required=True)
    index.add_argument("--split", nargs="+", required=True)
    index.set_defaults(func=_corpus_index)


def _download_parser(parser: argparse.ArgumentParser) -> None:
    what = parser.add_subparsers(dest="what", required=True)
    libri = what.add_parser("librispeech", help="LibriSpeech splits (mounted copies are used when found)")
    libri.add_argument("--split", nargs="+", required=True)
    libri.add_argument("--root", type=Path, default=None)
    libri.set_defaults(func=_download_librispeech)
    ckpt = what.add_parser("checkpoint", help="a model checkpoint by URL and SHA-256")
    ckpt.add_argument("--url", required=True)
    ckpt.add_argument("--sha256", required=True)
    ckpt.add_argument("--out", type=Path, required=True)
    ckpt.set_defaults(func=_download_checkpoint)
    _lm_download_parser(what.add_parser("lm", help="an OpenSLR resource 11 language model"))


def _lm_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="build an ARPA + KenLM binary from a text file")
    build.add_argument("--text", type=Path, required=True)
    build.add_argument("--order", type=int, default=3)
    build.add_argument("--out", type=Path, required=True)
    build.set_defaults(func=_lm_build)
    _lm_download_parser(actions.add_parser("download", help="same as `download lm`"))


def _train_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config values")
    parser.set_defaults(func=_train)


def _transcribe_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--input", type=Path, nargs="+", required=True, help="audio files or folders")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--decoder", choices=DECODERS, default="beam",
                        help="; ".join(f"{d.name}: {d.label}" for d in TABLE.values()))
    parser.add_argument("--lm", type=Path, default=None,
                        help=f"KenLM model (arpa or binary) for --decoder {' or '.join(LM_DECODERS)}")
    parser.add_argument("--beam-width", type=int, default=32)
    parser.add_argument("--attention-beam", type=int, default=8, help="beam of the attention decoders (model: las)")
    parser.add_argument("--ctc-weight", type=float, default=None,
                        help="the CTC prefix score's weight in the search of the chosen --decoder (joint and "
                             "joint+lm each have their own; default: the one 04 tuned for that decoder); not the "
                             "training loss weight")
    parser.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio seconds per model batch")
    parser.add_argument("--pool-size", type=int, default=2, help="processes for --decoder lm")
    parser.add_argument("--lm-engine", choices=LM_ENGINES, default=DEFAULT_ENGINE,
                        help="what runs --decoder lm: pyctcdecode (the reference), flashlight (C++ search, only "
                             "words of the LM's unigram list) or flashlight-lexfree (any word; LM scored in Python)")
    parser.add_argument("--stream", action="store_true",
                        help="a model: ds2_stream checkpoint fed in --chunk-ms chunks: partial greedy transcripts as "
                             "they change, then the final one (rescored with --lm when given); --decoder is not used")
    parser.add_argument("--chunk-ms", type=float, default=160.0, help="--stream: audio per chunk")
    parser.set_defaults(func=_transcribe)


def _score_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--references", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.set_defaults(func=_score)


def _bench_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("train", "data", "decode", "transcribe", "gpu-check", "stream"))
    parser.add_argument("--model", default="small")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per side")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-seconds", type=float, default=100.0, help="padded audio seconds per batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compare-baseline", action="store_true")
    parser.add_argument("--rnn-type", choices=("gru", "lstm"), default=None, help="default: the preset's")
    parser.add_argument("--arch", default="deepspeech2", help="train: the model of models.registry to train")
    parser.add_argument("--checkpoint", type=Path, default=None, help="transcribe: the model to time; decode: "
                        "compare --lm-engines on the log-probs 04 saved beside it")
    parser.add_argument("--splits", nargs="+", default=["dev-clean", "test-clean", "test-other"],
                        help="decode --checkpoint: the splits whose saved log-probs are decoded")
    parser.add_argument("--tune-on", default=None, metavar="SPLIT", help="decode --checkpoint: tune each engine's "
                        "alpha/beta on this split over 04's grid (default: every engine uses the ones 04 tuned)")
    parser.add_argument("--lm", type=Path, default=None, help="transcribe: KenLM for --decoder lm (default: the offline corpus's)")
    parser.add_argument("--utterances", type=int, default=500, help="transcribe: files to transcribe")
    parser.add_argument("--decoders", nargs="+", choices=DECODERS, default=decoders_for({"ctc"}),
                        help="transcribe: decoders to time (the attention ones need a model: las checkpoint)")
    parser.add_argument("--input", type=Path, default=None, help="transcribe: a folder of audio to time "
                        "(default: --utterances files of the offline corpus's test sets)")
    parser.add_argument("--librispeech-lengths", action="store_true", help="transcribe: the --utterances "
                        "files get LibriSpeech test-clean's lengths (mean ~7.4 s, up to 35 s), joined from the corpus")
    parser.add_argument("--compare", type=Path, default=None, metavar="REF",
                        help="transcribe: a second checkout whose code transcribes the same files in the same run")
    parser.add_argument("--lm-engines", nargs="+", choices=LM_ENGINES, default=[DEFAULT_ENGINE],
                        help="transcribe, decode --checkpoint: the engines to time --decoder lm with")
    parser.add_argument("--time-stride", type=int, default=None, help="output frame every N*10 ms (default: the preset's)")
    parser.add_argument("--quick", action="store_true", help="gpu-check: every part shrunk to seconds")
    parser.set_defaults(func=_bench)


COMMANDS = (  # (name, help, the function that adds its arguments)
    ("corpus", "the offline TTS corpus", _corpus_parser),
    ("download", "verified, resumable downloads", _download_parser),
    ("checkpoint", "inspect, export for publishing, convert trusted files", _checkpoint_parser),
    ("lm", "n-gram language models", _lm_parser),
    ("train", "train from a YAML config (what torchrun launches)", _train_parser),
    ("transcribe", "write <name>.txt for each audio file", _transcribe_parser),
    ("score", "corpus WER/CER of a predictions folder against references", _score_parser),
    ("bench", "throughput benchmarks (JSON line on stdout)", _bench_parser),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m asr_helpers", description="asr-workbook command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log skipped files and details")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text, add_arguments in COMMANDS:
        add_arguments(commands.add_parser(name, help=text))
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a command; a user's mistake (bad path, value, file, missing tool) is one line on stderr, exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    import yaml
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, RuntimeError, OSError, ImportError, yaml.YAMLError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
