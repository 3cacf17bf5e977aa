"""Notebook 03's parameter cell and TrainConfig cannot drift: same names, same defaults."""
from __future__ import annotations

import ast
import dataclasses
import json

import papermill

from asr_helpers import paths
from asr_helpers.training.config import TrainConfig

TRAIN_NOTEBOOK = paths.REPO_ROOT / "notebooks" / "03_train.ipynb"


def _defaults() -> dict:
    return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(TrainConfig)}


def test_train_notebook_declares_every_setting_with_its_default():
    declared = papermill.inspect_notebook(str(TRAIN_NOTEBOOK))
    defaults = _defaults()
    assert sorted(declared) == sorted(defaults), "parameter cell and TrainConfig list different settings"
    for name, parameter in declared.items():
        assert ast.literal_eval(parameter["default"]) == defaults[name], f"{name}: notebook and TrainConfig differ"
        assert parameter["help"], f"{name} has no comment"


def test_train_notebook_has_one_parameters_cell():
    cells = json.loads(TRAIN_NOTEBOOK.read_text())["cells"]
    assert sum("parameters" in c.get("metadata", {}).get("tags", []) for c in cells) == 1
