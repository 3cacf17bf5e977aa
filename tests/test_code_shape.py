"""Short modules and short functions: the package stays readable in one sitting per module."""
from __future__ import annotations

import ast

from asr_helpers import paths

PACKAGE = paths.REPO_ROOT / "asr_helpers"
MODULE_LINES = 450    # "about 400": data/download.py, the one way files enter, is 440
FUNCTION_LINES = 60


def test_no_module_is_longer_than_about_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert not long


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.name}"] = lines
    assert not long
