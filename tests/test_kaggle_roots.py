"""Kaggle datasets with the clean and the other splits under different mounted roots serve one run."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from asr_helpers import paths
from asr_helpers.report import summary
from asr_helpers.data.corpora import find_corpus_root, prepare_corpus
from asr_helpers.data.manifest import load_splits
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR, load_profile, notebook_parameters
from conftest import WORDS, write_librispeech

CLEAN = ("train-clean-100", "train-clean-360", "dev-clean", "test-clean")
OTHER = ("dev-other", "test-other")


@pytest.fixture
def two_mounts(tmp_path, monkeypatch) -> Path:
    """The layout of issue 13: librispeech-clean/LibriSpeech/{clean splits}, librispeech-other/LibriSpeech/{other}."""
    kaggle = tmp_path / "kaggle-input"
    for seed, split in enumerate(CLEAN):
        write_librispeech(kaggle / "librispeech-clean" / "LibriSpeech", split, speakers=1, utterances=2, seed=seed)
    for seed, split in enumerate(OTHER, start=len(CLEAN)):
        write_librispeech(kaggle / "librispeech-other" / "LibriSpeech", split, speakers=1, utterances=2, seed=seed)
    monkeypatch.setenv("ASR_KAGGLE_INPUT", str(kaggle))
    return kaggle


def test_each_split_is_found_under_its_own_mount(two_mounts):
    splits = load_profile("kaggle")["splits"]
    roots = prepare_corpus("librispeech", splits)
    assert set(roots) == set(splits)
    for split in splits:
        expected = two_mounts / ("librispeech-other" if split in OTHER else "librispeech-clean") / "LibriSpeech"
        assert roots[split] == expected == find_corpus_root("librispeech", split)
    utterances = load_splits(roots, ["dev-clean", "dev-other"])
    assert len(utterances) == 4 and all(Path(u.path).is_file() for u in utterances)


def test_a_root_holding_some_splits_is_used_for_those(two_mounts):
    clean = two_mounts / "librispeech-clean" / "LibriSpeech"
    roots = prepare_corpus("librispeech", ["dev-clean", "dev-other"], root=clean)
    assert roots == {"dev-clean": clean, "dev-other": two_mounts / "librispeech-other" / "LibriSpeech"}


def _run(notebook: str, parameters: dict, out_dir: Path) -> nbformat.NotebookNode:
    path = NOTEBOOKS_DIR / notebook
    executed = out_dir / notebook
    papermill.execute_notebook(str(path), str(executed), parameters=notebook_parameters(path, parameters),
                               cwd=str(paths.REPO_ROOT), kernel_name="python3", progress_bar=False)
    return nbformat.read(executed, as_version=4)


@pytest.mark.slow
def test_kaggle_profile_trains_decodes_and_reports_from_two_mounts(two_mounts, tmp_path, monkeypatch):
    from asr_helpers.decoding.lm import build_ngram
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH")])))
    text = tmp_path / "lm.txt"
    text.write_text(" ".join(WORDS) + "\n" + " ".join(reversed(WORDS)) + "\n")
    build_ngram(text, 3, paths.artifacts_dir() / "lm" / "librispeech", name="3-gram.pruned.1e-7")  # no download
    profile = {**load_profile("kaggle"), "model_size": "tiny", "epochs": 1, "batch_seconds": 20.0, "max_batch_size": 2,
               "num_workers": 0, "wandb_mode": "disabled", "eval_utterances": 2, "time_budget_minutes": None,
               "alphas": [0.0, 0.5], "betas": [0.0], "beam_width": 4, "pool_size": 1, "examples": 1}
    _run("03_train.ipynb", profile, tmp_path)
    run = paths.runs_dir() / profile["run_name"]
    trained = json.loads((run / "train_summary.json").read_text())
    assert trained["steps"] == 2 and set(trained["final"]) == {"dev-clean", "dev-other"}
    _run("04_lm_decoding.ipynb", profile, tmp_path)
    decoding = json.loads((run / "decoding.json").read_text())
    assert {row["split"] for row in decoding} == {"dev-clean", "test-clean", "test-other"}
    assert json.loads((run / "tuned.json").read_text())["lm"]["weights"]["alpha"] in (0.0, 0.5)  # tuned on dev
    executed = _run("05_report.ipynb", {**profile, "profile": "kaggle"}, tmp_path)
    assert any(o.get("data", {}).get("text/html", "").count("<audio") for c in executed.cells
               for o in c.get("outputs", []))
    test_other = next((two_mounts / "librispeech-other" / "LibriSpeech" / "test-other").rglob("*.flac"))
    assert summary.audio_path(run, "test-other", test_other.stem) == test_other
