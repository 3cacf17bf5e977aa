"""Profiles are plain papermill parameter files, and wrong parameter types are named in one line."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import nbformat
import papermill
import pytest

from asr_helpers.training.config import TrainConfig, check_parameters
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR, PROFILES_DIR, load_profile, notebook_parameters

PROFILES = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def code_without_magics(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_papermill_injects_every_profile_into_every_notebook(profile, notebook, tmp_path):
    """What `papermill -f notebooks/params/PROFILE.yaml NOTEBOOK out.ipynb --prepare-only` writes compiles."""
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(notebook), str(out), parameters=load_profile(profile), prepare_only=True,
                               kernel_name="python3", progress_bar=False)
    cells = nbformat.read(out, as_version=4).cells
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    namespace: dict = {}
    exec(injected[0].source, namespace)  # the injected values are the profile's, as Python literals
    assert {key: namespace[key] for key in load_profile(profile)} == load_profile(profile)
    for cell in (c for c in cells if c.cell_type == "code"):
        compile(code_without_magics(cell.source), f"{notebook.name}[{profile}]", "exec")


def test_every_profile_key_is_a_parameter_of_some_notebook():
    declared = set().union(*(papermill.inspect_notebook(str(nb)) for nb in NOTEBOOKS))
    for profile in PROFILES:
        assert set(load_profile(profile)) <= declared, profile


def test_one_batch_parameters_reach_02_only():
    profile = load_profile("smoke")
    one_batch = notebook_parameters(NOTEBOOKS_DIR / "02_one_batch_test.ipynb", profile)
    assert one_batch["one_batch_size"] == 2 and one_batch["one_batch_lr"] == 3.0e-3 and "epochs" not in one_batch
    train = notebook_parameters(NOTEBOOKS_DIR / "03_train.ipynb", profile)
    assert train["lr"] == profile["lr"] and "one_batch_lr" not in train


def test_a_profile_with_a_section_is_refused(tmp_path, monkeypatch):
    from asr_helpers.tools import notebooks
    monkeypatch.setattr(notebooks, "PROFILES_DIR", tmp_path)
    (tmp_path / "nested.yaml").write_text("epochs: 1\n02_one_batch_test:\n  lr: 1.0\n")
    with pytest.raises(ValueError, match="02_one_batch_test"):
        load_profile("nested")


@pytest.mark.parametrize("values, message", [
    ({"lr": "abc"}, "lr must be a number, got 'abc'"),
    ({"lr": "1e-3"}, "lr must be a number, got '1e-3'"),   # YAML 1.1 reads 1e-3 as a string
    ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
    ({"epochs": True}, "epochs must be an integer, got True"),
    ({"train_splits": "train-clean-100"}, "train_splits must be a list of strings, got 'train-clean-100'"),
    ({"dev_splits": ["dev-clean", 3]}, "dev_splits must be a list of strings, got ['dev-clean', 3]"),
    ({"time_budget_minutes": "soon"}, "time_budget_minutes must be a number or None, got 'soon'"),
    ({"resume": "yes"}, "resume must be true or false, got 'yes'"),
    ({"data_root": 3}, "data_root must be a string or None, got 3"),
])
def test_wrong_types_name_the_parameter_value_and_type(values, message):
    with pytest.raises(ValueError) as error:
        TrainConfig.from_dict(values)
    assert str(error.value) == message


def test_right_types_pass_ints_count_as_numbers_and_none_as_optional():
    config = TrainConfig.from_dict({"lr": 1, "epochs": 3, "time_budget_minutes": None, "max_steps": 5})
    assert config.lr == 1 and config.max_steps == 5


def test_notebook_annotations_are_checked_the_same_way():
    cell = ("from typing import Optional\nroot: Optional[str] = None\nsplits: list = ['a']\n"
            "seed: int = 0\nbeam_width: int = 8\n")
    namespace: dict = {}
    exec(compile(cell, "parameters", "exec", dont_inherit=True), namespace)  # as a notebook cell runs
    annotations = namespace["__annotations__"]
    assert annotations["root"] == Optional[str]
    check_parameters(annotations, {**namespace, "root": "/data"})
    with pytest.raises(ValueError, match="beam_width must be an integer, got 'wide'"):
        check_parameters(annotations, {**namespace, "beam_width": "wide"})
    with pytest.raises(ValueError, match="splits must be a list, got 'dev-clean'"):
        check_parameters(annotations, {**namespace, "splits": "dev-clean"})


def test_the_smoke_profile_has_no_per_notebook_sections():
    assert not any(isinstance(v, dict) for v in load_profile("smoke").values())
    assert Path(PROFILES_DIR / "smoke.yaml").read_text().count("02_one_batch_test:") == 0
