"""install.py: which requirement lines are installed where (local, Kaggle, Colab)."""
from __future__ import annotations

import subprocess

from asr_helpers.tools.install import REQUIREMENTS, parse_requirements, plan


def _write(tmp_path, text: str):
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return parse_requirements(path)


def test_markers_are_read_from_the_comment(tmp_path):
    found = _write(tmp_path, "jiwer>=3.0  # metrics\npyctcdecode==0.5.0  # no-deps: numpy<2\n"
                             "jupyterlab>=4.2  # local-only: front end\n# a comment line\n\n")
    assert [(r.name, r.no_deps, r.local_only) for r in found] == [
        ("jiwer", False, False), ("pyctcdecode", True, False), ("jupyterlab", False, True)]


def test_local_only_lines_are_skipped_on_kaggle_and_colab(tmp_path):
    found = _write(tmp_path, "jupyterlab>=4.2  # local-only\njiwer>=3.0\n")
    for where in ("kaggle", "colab"):
        normal, no_deps, notes = plan(found, where)
        assert normal == ["jiwer>=3.0"] and no_deps == []
        assert notes == [f"jupyterlab (local only, skipped on {where})"]
    assert plan(found, "local")[0] == ["jupyterlab>=4.2", "jiwer>=3.0"]


def test_the_project_requirements_keep_the_gpu_stack_and_the_lab_off_kaggle():
    names = {r.name: r for r in parse_requirements(REQUIREMENTS)}
    assert names["jupyterlab"].local_only and names["selenium"].local_only
    normal, no_deps, _ = plan(list(names.values()), "kaggle")
    installed = " ".join(normal + no_deps)
    assert "jupyterlab" not in installed and "selenium" not in installed
    assert "pyctcdecode==0.5.0" in no_deps


def test_an_optional_line_that_fails_to_install_is_reported_and_the_rest_installs(tmp_path, monkeypatch, capsys):
    from asr_helpers.tools import install as module
    path = tmp_path / "requirements.txt"
    path.write_text("jiwer>=3.0\nflashlight-text>=0.0.7  # optional: a second LM engine\n")
    assert [r.optional for r in parse_requirements(path)] == [False, True]
    calls = []

    def pip(command, check=False):
        calls.append(command[-1])
        if "flashlight-text>=0.0.7" in command and check:
            raise AssertionError("an optional line must not be installed with check=True")
        return subprocess.CompletedProcess(command, 1 if "flashlight-text>=0.0.7" in command else 0)

    monkeypatch.setattr(module.subprocess, "run", pip)
    monkeypatch.setattr(module, "environment", lambda: "local")
    module.install(path)
    assert calls == ["jiwer>=3.0", "flashlight-text>=0.0.7"]
    assert "optional flashlight-text>=0.0.7 did not install" in capsys.readouterr().out
