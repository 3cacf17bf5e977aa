"""Smoke tier: every notebook runs headless with the `smoke` profile, as run_all.sh runs them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from asr_helpers import paths
from asr_helpers.tools.notebooks import NOTEBOOKS_DIR

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="needs the TTS voices (./run_all.sh setup)")


def test_every_notebook_has_a_parameters_cell_and_no_outputs():
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert [nb.stem[:2] for nb in notebooks] == ["00", "01", "02", "03", "04", "05"]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"


@pytest.mark.slow
def test_all_notebooks_run_with_the_smoke_profile():
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([sys.executable, "-m", "asr_helpers.tools.notebooks", "--profile", "smoke"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    executed = paths.artifacts_dir() / "executed" / "smoke"
    assert len(list(executed.glob("*.ipynb"))) == 6
    summary = json.loads((paths.runs_dir() / "smoke" / "train_summary.json").read_text())
    assert summary["stop_reason"] == "epochs done" and summary["final"]["dev-clean"]["cer"] <= 1.5
    decoding = json.loads((paths.runs_dir() / "smoke" / "decoding.json").read_text())
    assert {row["decoder"] for row in decoding} == {"greedy", "beam", "lm"}
    assert set(json.loads((paths.runs_dir() / "smoke" / "tuned.json").read_text())) == {"lm"}
    html = (paths.artifacts_dir() / "report-no-code.html").read_text()
    assert "Training curves" in html and "Decoders per split" in html
    assert html.count("data:image/png") >= 6 and "Course checklist" in html and "<b>ref</b>" in html  # issue 17
    one_batch = nbformat.read(executed / "02_one_batch_test.ipynb", as_version=4)
    assert "both checks passed" in json.dumps(one_batch.cells[-1].outputs)
