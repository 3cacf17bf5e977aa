"""Checkpoints load without running code; the export is small and transcribes like best.pt."""
from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_helpers.decoding.tuned import Tuned, save_tuned
from asr_helpers.training.checkpoint import (UnsafeCheckpointError, convert_trusted, load_checkpoint, load_model, plain,
                                    rng_state, save_atomic, set_rng_state, tuned_record)
from conftest import run_cli, train_in_folder


class CreatesFile:
    """Unpickling this calls ``open(path, "w")``: the file appears only if the pickle was run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short training run for the whole module: a folder with LibriSpeech/ and runs/safe/."""
    return train_in_folder(tmp_path_factory.mktemp("trained"), "safe", model_size="tiny", epochs=1,
                           batch_seconds=6.0, max_seconds=6.0, num_workers=0, wandb_mode="disabled")


@pytest.fixture
def best(trained, tmp_path) -> Path:
    """A private copy of the run folder (tests add files next to the checkpoint)."""
    shutil.copytree(trained / "runs" / "safe", tmp_path / "run")
    return tmp_path / "run" / "best.pt"


@pytest.fixture
def audio(trained) -> Path:
    return trained / "LibriSpeech" / "dev-clean"


def transcripts(capsys, checkpoint: Path, audio: Path, out: Path, decoder: str) -> dict[str, str]:
    code, _, err = run_cli(capsys, "transcribe", "--checkpoint", str(checkpoint), "--input", str(audio),
                           "--output", str(out), "--decoder", decoder)
    assert code == 0, err
    return {p.name: p.read_text() for p in sorted(out.glob("*.txt"))}


def test_training_checkpoints_load_weights_only(best):
    for name in ("best.pt", "last.pt"):
        state = torch.load(best.with_name(name), weights_only=True)
        assert state["model"] and state["optimizer"]["state"] and state["rng"]["numpy"]["state"]["key"].numel() == 624


def test_rng_states_survive_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_atomic({"model": {}, "rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_numpy_values_are_stored_plain_and_objects_are_named():
    state = plain({"best_wer": np.float64(0.5), "key": np.arange(3, dtype=np.uint32), "skips": {"x": np.int64(2)}})
    assert type(state["best_wer"]) is float and type(state["skips"]["x"]) is int
    assert torch.equal(state["key"], torch.arange(3))
    with pytest.raises(TypeError, match=r"state\['extra'\]\[1\] is a object"):
        plain({"extra": [1, object()]})


def test_crafted_checkpoint_is_refused_before_any_code_runs(best, audio, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    state = torch.load(best, weights_only=True)
    torch.save({**state, "train_config": CreatesFile(marker)}, evil)
    out = tmp_path / "predictions"
    digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    for args in (("transcribe", "--checkpoint", str(evil), "--input", str(audio), "--output", str(out)),
                 ("checkpoint", "info", str(evil)), ("checkpoint", "convert", str(evil), "--out", str(tmp_path / "c.pt")),
                 ("download", "checkpoint", "--url", evil.as_uri(), "--sha256", digest, "--out", str(tmp_path / "got.pt"))):
        code, _, err = run_cli(capsys, *args)
        last = err.replace("\r", "\n").strip().splitlines()[-1]  # after download's progress bar
        assert code == 2 and err.count("error: ") == 1 and last.startswith("error: ") and "Traceback" not in err, err
        assert "any code" in err
    assert "asks to import io.open" in run_cli(capsys, "checkpoint", "info", str(evil))[2]
    assert not marker.exists() and not list(out.glob("*.txt"))
    torch.load(evil, weights_only=False)  # what the refusal prevents: the payload is live
    assert marker.exists()


def test_export_is_small_and_transcribes_like_best(best, audio, tmp_path, capsys):
    tuned = Tuned("lm", {"alpha": 0.75, "beta": 1.5}, "wer", 0.2, [{"weights": {"alpha": 0.75, "beta": 1.5}, "score": 0.2}])
    save_tuned(best.parent, tuned)
    export = tmp_path / "published" / "model.pt"
    code, out, err = run_cli(capsys, "checkpoint", "export", str(best), "--out", str(export))
    assert code == 0, err
    assert "export" in out and "tuned lm alpha=0.75 beta=1.5" in out and hashlib.sha256(export.read_bytes()).hexdigest() in out
    state = torch.load(export, weights_only=True)
    assert set(state) >= {"model", "model_config", "tokenizer", "tuned"} and "optimizer" not in state
    assert export.stat().st_size < best.stat().st_size / 3
    assert tuned_record(export) == {"lm": tuned}, "the export carries the record"
    for decoder in ("greedy", "beam"):
        assert transcripts(capsys, export, audio, tmp_path / f"e-{decoder}", decoder) == \
            transcripts(capsys, best, audio, tmp_path / f"b-{decoder}", decoder)
    (original, _, _), (exported, _, _) = load_model(best), load_model(export)
    features = torch.randn(2, original.config.n_mels, 120)
    lengths = torch.tensor([120, 90])
    assert torch.equal(original(features, lengths)[0], exported(features, lengths)[0])


def test_float16_export_halves_the_weights(best, tmp_path, capsys):
    for dtype in ("float32", "float16"):
        assert run_cli(capsys, "checkpoint", "export", str(best), "--out", str(tmp_path / f"{dtype}.pt"),
                       "--dtype", dtype)[0] == 0
    state = torch.load(tmp_path / "float16.pt", weights_only=True)
    assert {t.dtype for t in state["model"].values() if t.is_floating_point()} == {torch.float16}
    assert (tmp_path / "float16.pt").stat().st_size < 0.6 * (tmp_path / "float32.pt").stat().st_size
    model, _, _ = load_model(tmp_path / "float16.pt")
    assert next(model.parameters()).dtype == torch.float32


def test_download_checkpoint_verifies_sha256_and_loads_safely(best, tmp_path, capsys):
    export = tmp_path / "model.pt"
    run_cli(capsys, "checkpoint", "export", str(best), "--out", str(export))
    digest = hashlib.sha256(export.read_bytes()).hexdigest()
    code, out, err = run_cli(capsys, "download", "checkpoint", "--url", export.as_uri(), "--sha256", digest,
                             "--out", str(tmp_path / "got" / "model.pt"))
    assert code == 0 and f"sha256 {digest}" in out and "export" in out, err
    code, _, err = run_cli(capsys, "download", "checkpoint", "--url", export.as_uri(), "--sha256", "0" * 64,
                           "--out", str(tmp_path / "bad" / "model.pt"))
    assert code == 2 and "sha256" in err and not (tmp_path / "bad" / "model.pt").exists()


def test_broken_files_are_clear_errors_not_refusals(best, tmp_path):
    (tmp_path / "text.pt").write_text("weights")
    (tmp_path / "cut.pt").write_bytes(best.read_bytes()[:5000])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    for name, reason in (("text.pt", "not a torch checkpoint"), ("cut.pt", "not a readable checkpoint"),
                         ("foreign.pt", "no model weights")):
        with pytest.raises(ValueError, match=reason) as error:
            load_model(tmp_path / name)
        assert not isinstance(error.value, UnsafeCheckpointError)


def test_old_checkpoint_loads_only_after_a_trusted_convert(best, tmp_path, capsys):
    old = tmp_path / "old.pt"
    state = torch.load(best, weights_only=True)
    state["rng"]["numpy"], state["best_wer"] = np.random.get_state(), np.float64(0.5)
    torch.save(state, old)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_model(old)
    code, _, err = run_cli(capsys, "checkpoint", "convert", str(old), "--out", str(tmp_path / "new.pt"))
    assert code == 2 and "--trust" in err and not (tmp_path / "new.pt").exists()
    convert_trusted(old, tmp_path / "new.pt")
    converted = load_checkpoint(tmp_path / "new.pt")
    assert converted["best_wer"] == 0.5
    set_rng_state(converted["rng"])
    assert np.random.get_state()[1].tolist() == state["rng"]["numpy"][1].tolist()
    load_model(tmp_path / "new.pt")
