"""Imports flow one way: low modules never reach up to the loop, the CLI or the notebook helpers."""
from __future__ import annotations

import ast

from asr_helpers import paths

PACKAGE = paths.REPO_ROOT / "asr_helpers"
LOW = {"paths", "text", "audio", "features", "manifest", "dataset", "model", "decoding", "metrics", "corpora",
       "librispeech", "synthetic", "tts", "sentences", "augment", "download", "lm", "checkpoint", "schedule",
       "config", "rundir", "recognizer", "evaluation", "data", "distributed", "ctc_prefix", "attention",
       "las", "attention_decoding", "attention_maps", "export", "tone_corpus", "spec_augment", "lm_fusion"}
HIGH = {"training", "trainer", "cli", "plots", "widgets", "report", "bench", "notebooks", "explore", "comparison",
        "bench_decode", "gpu_check", "gpu_plan", "checklist", "error_analysis", "report_figures",
        "inference"}


def imported_modules(module: str) -> set[str]:
    """Every module an ``asr_helpers`` module imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "asr_helpers":
                found |= {f"asr_helpers.{alias.name}" for alias in node.names}
    return found


def package_imports(module: str) -> set[str]:
    return {name.split(".")[1] for name in imported_modules(module) if name.startswith("asr_helpers.")}


def test_low_modules_never_import_the_loop_cli_or_notebook_helpers():
    assert LOW <= {p.stem for p in PACKAGE.glob("*.py")}, "a module in LOW no longer exists"
    wrong = {module: sorted(package_imports(module) & HIGH) for module in sorted(LOW)}
    assert not {m: w for m, w in wrong.items() if w}


def test_only_tracking_imports_wandb():
    users = {p.stem for p in PACKAGE.glob("*.py") if any(n.split(".")[0] == "wandb" for n in imported_modules(p.stem))}
    assert users <= {"tracking"}


def test_the_import_check_sees_imports_inside_functions():
    assert "lm" not in package_imports("corpora")
    assert "synthetic" in package_imports("corpora")  # imported inside prepare_corpus
