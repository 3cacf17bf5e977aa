"""One record of tuned decoding weights per run (tuned.json); the three files it replaced, and exports, still read."""
from __future__ import annotations

import json

import pytest
import torch

from asr_helpers.decoding.tuned import TUNED_FILE, Tuned, read_record, record_from_state, save_tuned
from asr_helpers.training.checkpoint import save_atomic, tuned_record
from asr_helpers.training.rundir import RunDir

# The three files as the code before the record wrote them (TuneResult.save, CTCWeightResult.save, FusionResult.save).
LM_PARAMS = {"alpha": 0.5, "beta": 1.0, "wer": 0.25, "alphas": [0.0, 0.5], "betas": [0.0, 1.0],
             "grid": [[0.4, 0.35], [0.3, 0.25]], "lm": "/somewhere/3-gram.bin"}
JOINT_PARAMS = {"ctc_weight": 0.5, "cer": 0.174, "weights": [0.3, 0.5], "cers": [0.192, 0.174]}
FUSION_PARAMS = {"ctc_weight": 0.85, "alpha": 0.6, "beta": 0.0, "cer": 0.129,
                 "points": [{"ctc_weight": 0.7, "alpha": 0.6, "beta": 0.0, "cer": 0.131},
                            {"ctc_weight": 0.85, "alpha": 0.6, "beta": 0.0, "cer": 0.129}]}
# The same results in the record's layout.
LM = Tuned("lm", {"alpha": 0.5, "beta": 1.0}, "wer", 0.25,
           [{"weights": {"alpha": a, "beta": b}, "score": s}
            for a, row in zip((0.0, 0.5), ((0.4, 0.35), (0.3, 0.25))) for b, s in zip((0.0, 1.0), row)])
JOINT = Tuned("joint", {"ctc_weight": 0.5}, "cer", 0.174,
              [{"weights": {"ctc_weight": 0.3}, "score": 0.192}, {"weights": {"ctc_weight": 0.5}, "score": 0.174}])
FUSION = Tuned("joint+lm", {"ctc_weight": 0.85, "alpha": 0.6, "beta": 0.0}, "cer", 0.129,
               [{"weights": {"ctc_weight": 0.7, "alpha": 0.6, "beta": 0.0}, "score": 0.131},
                {"weights": {"ctc_weight": 0.85, "alpha": 0.6, "beta": 0.0}, "score": 0.129}])


def _write_legacy(folder) -> None:
    for name, state in (("lm_params.json", LM_PARAMS), ("joint_params.json", JOINT_PARAMS),
                        ("fusion_params.json", FUSION_PARAMS)):
        (folder / name).write_text(json.dumps(state, indent=2) + "\n")


def _export(path, **entries) -> None:
    """A weights-only file shaped like an export, carrying ``entries`` next to the weights."""
    save_atomic({"format": "asr-workbook-export/1", "model": {"w": torch.zeros(2)}, **entries}, path)


def test_save_and_read_round_trip_two_decoders_in_one_record(tmp_path):
    assert read_record(tmp_path) == {}
    assert save_tuned(tmp_path, LM) == RunDir(tmp_path).tuned == tmp_path / TUNED_FILE
    save_tuned(tmp_path, JOINT)
    assert read_record(tmp_path) == {"lm": LM, "joint": JOINT}
    retuned = Tuned("lm", {"alpha": 1.0, "beta": 2.0}, "wer", 0.2)
    save_tuned(tmp_path, retuned)
    assert read_record(tmp_path) == {"lm": retuned, "joint": JOINT}, "a re-tune replaces only its own decoder"
    assert set(json.loads((tmp_path / TUNED_FILE).read_text())) == {"lm", "joint"}
    assert not list(tmp_path.glob("*.partial"))


def test_each_legacy_file_reads_as_its_decoder(tmp_path):
    _write_legacy(tmp_path)
    assert read_record(tmp_path) == {"lm": LM, "joint": JOINT, "joint+lm": FUSION}
    newer = Tuned("joint", {"ctc_weight": 0.7}, "cer", 0.15)
    save_tuned(tmp_path, newer)
    assert read_record(tmp_path)["joint"] == newer, "tuned.json wins over a legacy file of the same decoder"
    assert read_record(tmp_path)["lm"] == LM


def test_an_export_made_by_the_previous_code_gives_the_same_record(tmp_path):
    old_export = tmp_path / "old" / "model.pt"
    old_export.parent.mkdir()
    legacy_lm = {key: value for key, value in LM_PARAMS.items() if key != "lm"}  # asdict(TuneResult), no LM path
    _export(old_export, lm_params=legacy_lm, joint_params=JOINT_PARAMS, fusion_params=FUSION_PARAMS)
    assert tuned_record(old_export) == {"lm": LM, "joint": JOINT, "joint+lm": FUSION}
    run = tmp_path / "run"
    run.mkdir()
    _write_legacy(run)
    assert tuned_record(run / "best.pt") == tuned_record(old_export), "an old run folder reads the same"
    assert record_from_state({"tuned": {"lm": LM.to_dict()}}) == {"lm": LM}


def test_a_retune_beside_an_export_wins(tmp_path):
    export = tmp_path / "model.pt"
    _export(export, tuned={"lm": LM.to_dict(), "joint": JOINT.to_dict()})
    assert tuned_record(export) == {"lm": LM, "joint": JOINT}
    retuned = Tuned("lm", {"alpha": 2.0, "beta": 0.0}, "wer", 0.1)
    save_tuned(tmp_path, retuned)
    assert tuned_record(export) == {"lm": retuned, "joint": JOINT}


@pytest.mark.parametrize("file, content, message", [
    (TUNED_FILE, "{not json", "tuned.json is not valid JSON"),
    (TUNED_FILE, "[1, 2]", "tuned.json holds no tuned weights"),
    (TUNED_FILE, json.dumps({"joint": {"weights": {"ctc_weight": 0.5}}}), r"tuned.json: .*'joint' are malformed"),
    (TUNED_FILE, json.dumps({"lm": {"weights": {"alpha": 1}, "metric": "wer", "score": 0.3}}),
     r"tuned.json: the tuned weights of 'lm' lack beta"),
    (TUNED_FILE, json.dumps({"beam+lm": {"weights": {}, "metric": "wer", "score": 0.3}}),
     r"tuned.json: unknown decoder 'beam\+lm'"),
    ("lm_params.json", json.dumps({"alpha": 0.5}), r"lm_params.json: the tuned weights of 'lm' are malformed"),
    ("fusion_params.json", "{not json", "fusion_params.json is not valid JSON"),
])
def test_a_malformed_record_is_one_line_naming_the_file_and_decoder(tmp_path, file, content, message):
    (tmp_path / file).write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        tuned_record(tmp_path / "best.pt")
    assert "\n" not in str(error.value)


def test_a_malformed_export_names_the_file(tmp_path):
    export = tmp_path / "model.pt"
    _export(export, tuned={"joint": {"weights": {}, "metric": "cer", "score": 0.2}})
    with pytest.raises(ValueError, match=r"model.pt: the tuned weights of 'joint' lack ctc_weight"):
        tuned_record(export)


def test_weights_missing_a_tuned_name_are_refused_before_saving(tmp_path):
    with pytest.raises(ValueError, match="'joint\\+lm' lack alpha, beta"):
        save_tuned(tmp_path, Tuned("joint+lm", {"ctc_weight": 0.8}, "cer", 0.1))
    with pytest.raises(ValueError, match="unknown decoder"):
        save_tuned(tmp_path, Tuned("beam+lm", {}, "wer", 0.1))
    assert not (tmp_path / TUNED_FILE).exists()
    assert LM.settings() == "alpha=0.5 beta=1"
