"""The model registry: every model by name, with its heads and decoders, built, trained one batch and
reloaded from a checkpoint and an export through the one ``build_model`` and ``load_recognizer``."""
from __future__ import annotations

import math

import pytest
import torch

from asr_helpers.data.dataset import SpeechDataset, collate
from asr_helpers.data.manifest import index_split
from asr_helpers.data.text import CharTokenizer
from asr_helpers.models.registry import (MODEL_NAMES, build_model, model_name_of, model_spec, offered_decoders,
                                         section_values)
from asr_helpers.training.checkpoint import load_recognizer, save_atomic
from asr_helpers.training.config import TrainConfig
from asr_helpers.training.export import export_checkpoint

TOK = CharTokenizer()


def test_the_registry_lists_every_model_with_its_heads_and_decoders():
    assert MODEL_NAMES == ("deepspeech2", "las", "ds2_stream")
    assert model_spec("deepspeech2").heads == frozenset({"ctc"}) == model_spec("ds2_stream").heads
    assert offered_decoders("ds2_stream") == ["greedy", "beam", "lm"] and model_spec("ds2_stream").section == ("lookahead", "feature_norm")
    assert model_spec("las").heads == frozenset({"ctc", "attention"})
    assert offered_decoders("deepspeech2") == ["greedy", "beam", "lm"]
    assert offered_decoders("deepspeech2", with_lm=False) == ["greedy", "beam"]
    assert offered_decoders("las") == ["greedy", "beam", "lm", "attention", "attention_beam", "joint", "joint+lm"]
    assert "joint+lm" not in offered_decoders("las", with_lm=False)
    assert model_spec("deepspeech2").section == () and set(model_spec("las").section) == {
        "ctc_weight", "guided_attention", "attention"}


@pytest.mark.parametrize("ask", [lambda: model_spec("conformer"), lambda: offered_decoders("conformer"),
                                 lambda: build_model("conformer", "tiny", TOK), lambda: TrainConfig(model="conformer")])
def test_an_unknown_model_is_a_one_line_error_naming_the_known_ones(ask):
    with pytest.raises(ValueError) as error:
        ask()
    assert "\n" not in str(error.value) and "'deepspeech2', 'las'" in str(error.value)


def test_a_setting_the_model_does_not_have_or_cannot_take_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"model deepspeech2 has no settings \['ctc_weight'\]"):
        build_model("deepspeech2", "tiny", TOK, {"ctc_weight": 0.5})
    with pytest.raises(ValueError, match="ctc_weight must lie in"):
        build_model("las", "tiny", TOK, {"ctc_weight": 1.5})
    with pytest.raises(ValueError, match="attention must be one of"):
        TrainConfig(model="deepspeech2", attention="additive")  # every model's section is checked, not only the one trained


def test_a_config_passes_exactly_its_models_section():
    assert TrainConfig(model="deepspeech2", ctc_weight=0.5, lookahead=5).model_settings() == {}
    assert TrainConfig(model="ds2_stream", ctc_weight=0.5, lookahead=5).model_settings() == {
        "lookahead": 5, "feature_norm": "global"}
    settings = TrainConfig(model="las", ctc_weight=0.5, attention="dot").model_settings()
    assert settings == {"ctc_weight": 0.5, "guided_attention": 0.0, "attention": "dot"}
    assert section_values("las", {"ctc_weight": 0.7, "lr": 1.0}) == {"ctc_weight": 0.7}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_trains_one_batch_to_a_finite_loss_and_knows_its_name(name, tiny_corpus):
    torch.manual_seed(0)
    utterances = index_split(tiny_corpus, "train-clean-100").utterances[:3]
    batch = collate([SpeechDataset(utterances, TOK)[i] for i in range(len(utterances))])
    model = build_model(name, "tiny", TOK, augment="light")
    output = model(batch)
    output.loss.backward()
    assert output.loss.ndim == 0 and math.isfinite(float(output.loss.detach()))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model_name_of(model) == name and len(model.transcribe(output)) == len(utterances)
    assert set(model.media(batch, step=1)) == ({"attention"} if "attention" in model_spec(name).heads else set())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_checkpoint_and_an_export_of_every_model_reload_as_the_same_model(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, "tiny", TOK, TrainConfig(model=name, attention="dot").model_settings())
    checkpoint = tmp_path / "best.pt"
    save_atomic({**model.checkpoint_entries(), "tokenizer": TOK.to_dict(),
                 "train_config": TrainConfig(model=name, model_size="tiny", attention="dot").to_dict()}, checkpoint)
    exported = export_checkpoint(checkpoint, tmp_path / "export.pt")
    for path in (checkpoint, exported):
        loaded, _, config = load_recognizer(path)
        assert model_name_of(loaded) == name and config["model"] == name and not loaded.training
        mine, theirs = model.state_dict(), loaded.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_checkpoint_from_before_the_model_setting_loads_as_deepspeech2(tmp_path):
    model = build_model("deepspeech2", "tiny", TOK)
    legacy = {k: v for k, v in TrainConfig(model_size="tiny").to_dict().items() if k not in ("model", "ctc_weight")}
    save_atomic({**model.checkpoint_entries(), "tokenizer": TOK.to_dict(), "train_config": legacy}, tmp_path / "old.pt")
    assert model_name_of(load_recognizer(tmp_path / "old.pt")[0]) == "deepspeech2"


def test_a_checkpoint_naming_an_unknown_model_is_a_clear_error(tmp_path):
    model = build_model("deepspeech2", "tiny", TOK)
    save_atomic({**model.checkpoint_entries(), "tokenizer": TOK.to_dict(), "train_config": {"model": "conformer"}},
                tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="does not describe a model this package can build .*conformer"):
        load_recognizer(tmp_path / "odd.pt")
