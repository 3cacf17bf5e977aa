"""The joint CTC/attention model (``model: las``) through the training core, checkpoints, registry and CLI."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_helpers import paths
from asr_helpers.decoding.attention_decoding import DEFAULT_WEIGHTS, AttentionSearch, search_settings
from asr_helpers.training.checkpoint import load_checkpoint, load_model, load_recognizer
from asr_helpers.training.config import TrainConfig
from asr_helpers.data.dataset import Batch
from asr_helpers.decoding.ctc import Encoding, available_decoders, build_decoder
from asr_helpers.decoding.decoders import DECODERS, TABLE
from asr_helpers.decoding.tuned import Tuned, save_tuned
from asr_helpers.models.registry import build_model, model_name_of
from asr_helpers.training.rundir import RunDir
from asr_helpers.training.sanity import overfit_one_batch
from asr_helpers.data.text import CharTokenizer
from asr_helpers.training.tracking import read_jsonl
from asr_helpers.training.run import train
from conftest import WORDS, run_cli, train_in_folder

BASE = dict(corpus="librispeech", dev_splits=["dev-clean"], model="las", model_size="tiny", epochs=2,
            batch_seconds=6.0, max_seconds=6.0, lr=3e-3, augment="light", num_workers=0, wandb_mode="disabled",
            eval_utterances=3, log_every=1)


@pytest.fixture(scope="module")
def las_run(tmp_path_factory) -> Path:
    """One short joint-model run for the module: a folder with LibriSpeech/ and runs/las/."""
    settings = {k: v for k, v in BASE.items() if k not in ("corpus", "dev_splits")}
    return train_in_folder(tmp_path_factory.mktemp("las"), "las", **settings)


def small_arpa(path: Path) -> Path:
    """A hand-written bigram ARPA model over the corpus words (kenlm needs order 2; no lmplz needed)."""
    words = sorted(set(WORDS)) + ["</s>", "<unk>"]
    unigram = f"{np.log10(1 / len(words)):.4f}"
    bigrams = [f"<s> {w}" for w in sorted(set(WORDS))] + [f"{w} </s>" for w in sorted(set(WORDS))]
    lines = ["\\data\\", f"ngram 1={len(words) + 1}", f"ngram 2={len(bigrams)}", "", "\\1-grams:", "-99\t<s>\t-0.3"]
    lines += [f"{unigram}\t{word}\t-0.3" for word in words]
    lines += ["", "\\2-grams:"] + [f"-1.0\t{pair}" for pair in bigrams]
    path.write_text("\n".join(lines + ["", "\\end\\", ""]))
    return path


def test_settings_name_the_model_and_refuse_bad_values():
    assert TrainConfig(model="las", ctc_weight=0.0).model == "las"
    with pytest.raises(ValueError, match="model must be one of"):
        TrainConfig(model="transformer")
    with pytest.raises(ValueError, match="ctc_weight must lie in"):
        TrainConfig(model="las", ctc_weight=1.5)
    with pytest.raises(ValueError, match="attention must be one of"):
        TrainConfig(model="las", attention="additive")


@pytest.mark.parametrize("attention", ["location", "dot"])
def test_build_model_gives_the_joint_recognizer_whose_loss_reports_both_parts(attention):
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    model = build_model("las", "tiny", tokenizer, {"ctc_weight": 0.3, "attention": attention})
    assert model.joint.config.decoder.attention == attention
    assert model_name_of(model) == "las" and model_name_of(build_model("deepspeech2", "tiny", tokenizer)) == "deepspeech2"
    waves, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    targets = torch.tensor(tokenizer.encode("the cat") + tokenizer.encode("a mat"))
    batch = Batch(waves, lengths, targets, torch.tensor([7, 5]), ["the cat", "a mat"], ["a", "b"])
    train_output = model(batch)
    parts = train_output.metrics
    assert train_output.loss.item() == pytest.approx(0.3 * parts["ctc_loss"] + 0.7 * parts["attention_loss"], rel=1e-5)
    assert "lock_on" not in parts, "lock-on is scored in evaluation only"
    model.eval()
    with torch.no_grad():
        output = model(batch)
    assert 0.0 <= output.metrics["lock_on"] <= 1.0
    assert set(model.other_transcripts(output)) == {"attention"}
    weights, symbols, row = model.attention_map(batch)
    assert row == 1 and symbols == list("a mat") + ["<eos>"] and weights.shape[0] == len(symbols)
    assert torch.allclose(weights.sum(-1), torch.ones(len(symbols)), atol=1e-5)
    figure = model.media(batch, step=7)["attention"]
    assert figure.axes[0].get_title().startswith("step 7, lock-on") and figure.axes[0].get_title().endswith("a mat")


def test_joint_run_logs_both_losses_lock_on_and_attention_maps(las_run):
    run = RunDir(las_run / "runs" / "las")
    evals = [r for r in read_jsonl(run.history) if r["kind"] == "eval/dev-clean"]
    assert evals and all({"ctc_loss", "attention_loss", "lock_on", "cer_attention", "wer_attention"} <= set(r)
                         for r in evals)
    assert all(0.0 <= r["lock_on"] <= 1.0 for r in evals)
    assert run.media_files("eval/dev-clean/attention", "png") and run.media_files("train/attention", "png")


def test_joint_training_resumes_to_the_same_weights(las_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_RUNS_DIR", str(tmp_path / "runs"))
    corpus = str(las_run / "LibriSpeech")
    full = train(dict(BASE, run_name="full", data_root=corpus))
    stopped = train(dict(BASE, run_name="split", data_root=corpus, max_steps=full["steps"] // 2 + 1))
    assert stopped["stop_reason"] == "max_steps"
    resumed = train(dict(BASE, run_name="split", data_root=corpus, resume=True))
    assert resumed["steps"] == full["steps"]
    a, b = (load_checkpoint(tmp_path / "runs" / run / "last.pt")["model"] for run in ("full", "split"))
    assert any(k.startswith("decoder.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)


def test_joint_checkpoint_loads_as_its_ctc_encoder_and_as_the_whole_model(las_run):
    best = las_run / "runs" / "las" / "best.pt"
    encoder, tokenizer, config = load_model(best)
    recognizer, _, _ = load_recognizer(best)
    assert model_name_of(recognizer) == "las" and config["model"] == "las"
    assert recognizer.joint.decoder is not None and recognizer.spec_augment is None and not recognizer.training
    mine, theirs = encoder.state_dict(), recognizer.joint.encoder.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_the_registry_resolves_every_name_and_says_what_a_decoder_needs():
    tokenizer = CharTokenizer()
    assert set(DECODERS) == {"greedy", "beam", "lm", "attention", "attention_beam", "joint", "joint+lm"}
    log_probs = np.log(np.full((6, tokenizer.vocab_size), 1.0 / tokenizer.vocab_size, dtype=np.float32))
    log_probs[1:3, tokenizer.encode("a")[0]] = 0.0
    greedy = build_decoder("greedy", tokenizer)
    assert greedy.decode([Encoding(log_probs)]) == greedy.decode([log_probs])
    with pytest.raises(ValueError, match="attention decoder"):
        build_decoder("joint", tokenizer)
    assert available_decoders() == ["greedy", "beam"]


def test_joint_searches_once_per_utterance_and_joint_lm_waits_for_a_word_lm(las_run, monkeypatch):
    recognizer, tokenizer, _ = load_recognizer(las_run / "runs" / "las" / "best.pt")
    search = AttentionSearch(recognizer.joint, tokenizer, search_settings(beam=3))
    assert available_decoders(attention=search)[-1] == "joint", "joint+lm waits for a word LM"
    with pytest.raises(ValueError, match="needs a language model"):
        build_decoder("joint+lm", tokenizer, attention=search)
    features = torch.randn(2, recognizer.joint.config.encoder.n_mels, 80)
    items = recognizer.encodings(features, torch.tensor([80, 60]))
    calls = []
    original = AttentionSearch.hypotheses
    monkeypatch.setattr(AttentionSearch, "hypotheses", lambda self, name, batch, **k: calls.extend(batch) or original(
        self, name, batch, **k))  # one entry per utterance searched
    first = build_decoder("joint", tokenizer, attention=search).decode(items)
    assert build_decoder("joint", tokenizer, attention=search).decode(items) == first and len(calls) == 2
    build_decoder("attention_beam", tokenizer, attention=search).decode(items)
    assert len(calls) == 4
    search.with_weights("joint", {"ctc_weight": 0.5}).decode("joint", items)
    assert len(calls) == 6, "other weights: another search"
    assert search.settings["joint"].weights == DEFAULT_WEIGHTS["joint"], "a new search, the old one as it was"


def test_joint_lm_keeps_the_fusion_weights_with_the_lowest_dev_cer(las_run, tmp_path):
    from asr_helpers.decoding.metrics import cer
    recognizer, tokenizer, _ = load_recognizer(las_run / "runs" / "las" / "best.pt")
    torch.manual_seed(4)
    items = recognizer.encodings(torch.randn(2, recognizer.joint.config.encoder.n_mels, 60), torch.tensor([60, 50]))
    references = ["the cat", "a mat"]
    arpa = small_arpa(tmp_path / "words.arpa")
    search = AttentionSearch(recognizer.joint, tokenizer, search_settings(beam=3, lm_beam=3))

    def fresh(weight, alpha, beta):
        tuned = Tuned("joint+lm", {"ctc_weight": weight, "alpha": alpha, "beta": beta}, "cer", 0.0)
        settings = search_settings(beam=3, tuned={"joint+lm": tuned}, lm_beam=3)
        return AttentionSearch(recognizer.joint, tokenizer, settings).with_lm(arpa).decode("joint+lm", items)

    with pytest.raises(ValueError, match="needs a language model"):
        search.tune_fusion(items, references)
    search = search.with_lm(arpa)
    result = search.tune_fusion(items, references, ctc_weights=(0.5, 0.9), alphas=(0.0, 2.0), betas=(1.0,))
    grid = [(0.5, 0.0), (0.5, 2.0), (0.9, 0.0), (0.9, 2.0)]
    assert [tuple(p["weights"].values()) for p in result.grid] == [(w, a, 1.0) for w, a in grid]
    assert [p["score"] for p in result.grid] == pytest.approx([cer(references, fresh(w, a, 1.0)) for w, a in grid])
    best = min(result.grid, key=lambda p: p["score"])
    assert (result.decoder, result.metric, result.weights, result.score) == ("joint+lm", "cer", best["weights"],
                                                                             best["score"])
    assert search.settings["joint+lm"].weights == DEFAULT_WEIGHTS["joint+lm"], "tuning leaves the search as it was"
    tuned = search.with_tuned(result)
    assert tuned.settings["joint+lm"].beam == 3
    assert build_decoder("joint+lm", tokenizer, attention=tuned).decode(items) == fresh(*result.weights.values())
    with pytest.raises(ValueError, match="CTC weights"):
        search.tune_fusion(items, references, ctc_weights=(0.0,))


def test_the_joint_search_keeps_the_ctc_weight_with_the_lowest_dev_cer(las_run, tmp_path):
    from asr_helpers.decoding.metrics import cer
    recognizer, tokenizer, _ = load_recognizer(las_run / "runs" / "las" / "best.pt")
    torch.manual_seed(2)
    items = recognizer.encodings(torch.randn(3, recognizer.joint.config.encoder.n_mels, 80), torch.tensor([80, 70, 60]))
    references = ["the cat", "a mat", "the mat"]
    fresh = lambda weight: AttentionSearch(recognizer.joint, tokenizer, search_settings(3, ctc_weight=weight)).decode(  # noqa: E731
        "joint", items)
    search = AttentionSearch(recognizer.joint, tokenizer, search_settings(beam=3))
    result = search.tune_ctc_weight(items, references, (0.2, 0.5, 1.0))
    scores = [p["score"] for p in result.grid]
    assert scores == pytest.approx([cer(references, fresh(w)) for w in (0.2, 0.5, 1.0)])
    assert result.weights == {"ctc_weight": (0.2, 0.5, 1.0)[int(np.argmin(scores))]} and result.metric == "cer"
    assert search.with_tuned(result).decode("joint", items) == fresh(result.weights["ctc_weight"])
    save_tuned(tmp_path, result)
    from asr_helpers.decoding.tuned import read_record
    assert read_record(tmp_path)["joint"] == result, "the record 04 writes reads back"
    with pytest.raises(ValueError, match="CTC weights"):
        search.tune_ctc_weight(items, references, (0.0, 0.5))


def test_transcribe_decodes_with_the_tuned_weights_unless_told_another(las_run, tmp_path, capsys):
    from asr_helpers.inference.transcribe import _attention_search
    run = tmp_path / "run"
    shutil.copytree(las_run / "runs" / "las", run)
    recognizer = load_recognizer(run / "best.pt")[0]
    arpa = small_arpa(tmp_path / "words.arpa")

    def weights(checkpoint, decoder="joint", given=None):
        search = _attention_search(checkpoint, recognizer, decoder, 3, given, arpa if decoder == "joint+lm" else None)
        return tuple(search.settings[decoder].weights.values())

    assert weights(run / "best.pt") == (0.3,) and "no tuned weights of the joint decoder" in capsys.readouterr().out
    assert weights(run / "best.pt", "joint+lm") == (0.8, 0.7, 0.0)
    assert "no tuned weights of the joint+lm decoder" in capsys.readouterr().out
    save_tuned(run, Tuned("joint", {"ctc_weight": 0.9}, "cer", 0.5))
    (run / "fusion_params.json").write_text('{"ctc_weight": 0.8, "alpha": 0.7, "beta": 0.5, "cer": 0.4, "points": []}')
    assert weights(run / "best.pt") == (0.9,) and weights(run / "best.pt", given=0.4) == (0.4,)
    assert weights(run / "best.pt", "joint+lm") == (0.8, 0.7, 0.5), "a run tuned before tuned.json still reads"
    assert weights(run / "best.pt", "joint+lm", 0.4) == (0.4, 0.7, 0.5)
    code, out, err = run_cli(capsys, "checkpoint", "export", str(run / "best.pt"), "--out", str(tmp_path / "small.pt"))
    assert code == 0, err
    assert weights(tmp_path / "small.pt") == (0.9,), "an export carries the tuned weight"
    assert weights(tmp_path / "small.pt", "joint+lm") == (0.8, 0.7, 0.5), "and the LM fusion's"
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(run / "best.pt"), "--input", str(las_run / "LibriSpeech"),
                           "--output", str(tmp_path / "out"), "--decoder", "joint", "--ctc-weight", "1.5")
    assert code == 2 and "--ctc-weight must lie in [0, 1]" in err and "Traceback" not in err


def test_transcribe_with_every_decoder_from_a_joint_checkpoint_and_its_export(las_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(las_run / "runs" / "las", run)
    audio = las_run / "LibriSpeech" / "dev-clean"
    arpa = small_arpa(tmp_path / "words.arpa")
    files = sorted(audio.rglob("*.flac"))
    for decoder in DECODERS:
        lm = ["--lm", str(arpa)] if TABLE[decoder].needs_lm else []
        code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(run / "best.pt"), "--input", str(audio),
                               "--output", str(tmp_path / decoder), "--decoder", decoder, "--attention-beam", "3", *lm)
        assert code == 0, err
        assert len(list((tmp_path / decoder).glob("*.txt"))) == len(files), decoder
    code, _, err = run_cli(capsys, "checkpoint", "export", str(run / "best.pt"), "--out", str(tmp_path / "small.pt"))
    assert code == 0, err
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(tmp_path / "small.pt"), "--input", str(audio),
                           "--output", str(tmp_path / "exported"), "--decoder", "joint", "--attention-beam", "3")
    assert code == 0, err
    read = lambda folder: {p.name: p.read_text() for p in sorted(folder.glob("*.txt"))}  # noqa: E731
    assert read(tmp_path / "exported") == read(tmp_path / "joint")


def test_attention_decoders_on_a_ctc_only_checkpoint_are_one_line_errors(las_run, tmp_path, capsys):
    train(dict(BASE, run_name="ctc", model="deepspeech2", epochs=1, data_root=str(las_run / "LibriSpeech")))
    best = paths.runs_dir() / "ctc" / "best.pt"
    assert not RunDir(best.parent).media_files("*attention*", "png"), "a CTC-only run logs no attention maps"
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(best), "--input", str(las_run / "LibriSpeech"),
                           "--output", str(tmp_path / "out"), "--decoder", "joint")
    assert code == 2 and "has no attention decoder" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(best), "--input", str(las_run / "LibriSpeech"),
                           "--output", str(tmp_path / "out"), "--decoder", "joint+lm")
    assert code == 2 and "needs --lm" in err


def test_a_dot_attention_run_trains_saves_and_transcribes(las_run, tmp_path, capsys):
    from asr_helpers.models.attention import DotAttentionDecoder
    train(dict(BASE, run_name="dot", attention="dot", epochs=1, data_root=str(las_run / "LibriSpeech")))
    best = paths.runs_dir() / "dot" / "best.pt"
    recognizer, _, config = load_recognizer(best)
    assert isinstance(recognizer.joint.decoder, DotAttentionDecoder) and config["attention"] == "dot"
    assert RunDir(best.parent).media_files("eval/dev-clean/attention", "png")
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(best), "--input", str(las_run / "LibriSpeech"),
                           "--output", str(tmp_path / "out"), "--decoder", "joint", "--attention-beam", "2")
    assert code == 0, err
    assert len(list((tmp_path / "out").glob("*.txt"))) == len(list((las_run / "LibriSpeech").rglob("*.flac")))


def test_one_batch_test_memorises_with_both_heads(tiny_corpus):
    result = overfit_one_batch(tiny_corpus, "train-clean-100", model_size="tiny", batch_size=2, max_steps=400,
                               lr=3e-3, model="las", settings={"ctc_weight": 0.3})
    assert result.losses[-1] < 0.1 and result.predictions == result.targets
    assert result.other_predictions == {"attention": result.targets}


def test_guided_attention_charges_smeared_and_backward_maps_not_the_diagonal():
    from asr_helpers.models.las import guided_attention_loss
    symbols, frames = 10, 40
    diagonal = torch.zeros(1, symbols, frames)
    diagonal[0, torch.arange(symbols), (torch.arange(symbols) * frames) // symbols] = 1.0
    smeared = torch.full((1, symbols, frames), 1.0 / frames)
    backward = diagonal.flip(-1)
    lengths, frame_lengths = torch.tensor([symbols]), torch.tensor([frames])
    costs = [float(guided_attention_loss(m, lengths, frame_lengths)) for m in (diagonal, smeared, backward)]
    assert costs[0] < 0.01 < 0.4 < costs[1] < costs[2]
    padded = torch.cat([diagonal, torch.zeros(1, symbols, 20)], -1)
    extra_rows = torch.cat([padded, torch.rand(1, 5, frames + 20)], 1)
    assert float(guided_attention_loss(extra_rows, lengths, frame_lengths)) == pytest.approx(costs[0], abs=1e-6)


def test_guided_attention_adds_to_the_joint_loss_only_when_asked():
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    targets = torch.tensor(tokenizer.encode("the cat") + tokenizer.encode("a mat"))
    batch = Batch(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000]), targets, torch.tensor([7, 5]),
                  ["the cat", "a mat"], ["a", "b"])
    losses = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("las", "tiny", tokenizer, {"guided_attention": weight}).eval()
        with torch.no_grad():
            losses.append(float(model(batch).loss))
    assert losses[1] > losses[0] + 0.1
    with pytest.raises(ValueError, match="guided_attention"):
        TrainConfig(model="las", guided_attention=-1.0)
