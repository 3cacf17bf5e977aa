"""Run the numbered notebooks headless with papermill and a parameter profile.

A profile (``notebooks/params/<name>.yaml``) is a plain papermill parameter file: a flat
mapping of parameter names to values, so ``papermill -f PROFILE.yaml`` works for every notebook.
Here each notebook receives only the keys its ``parameters`` cell declares, so papermill never
warns about foreign parameters.
Executed copies land in ``artifacts/executed/<profile>/``; a marker records a finished stage so
``--skip-done`` can resume a long run after a failure.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import yaml

from asr_helpers import paths

NOTEBOOKS_DIR = paths.REPO_ROOT / "notebooks"
PROFILES_DIR = NOTEBOOKS_DIR / "params"


def load_profile(name: str) -> dict:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no profile {name!r} ({path}); known profiles: {known}")
    profile = yaml.safe_load(path.read_text()) or {}
    if not isinstance(profile, dict):
        raise ValueError(f"{path}: a profile maps parameter names to values")
    bad = [key for key in profile if not (isinstance(key, str) and key.isidentifier())]
    if bad:
        raise ValueError(f"{path}: {bad} are not parameter names (a profile is flat: name: value)")
    return profile


def notebook_parameters(notebook: Path, profile: dict) -> dict:
    """The profile's values for the parameters this notebook declares."""
    import papermill
    declared = papermill.inspect_notebook(str(notebook))
    return {k: v for k, v in profile.items() if k in declared}


def _stamp(notebook: Path, parameters: dict) -> str:
    digest = hashlib.sha1(notebook.read_bytes() + json.dumps(parameters, sort_keys=True).encode())
    return digest.hexdigest()


def export_html(executed: Path) -> list[Path]:
    """The executed report as HTML into ``artifacts/``: with code, and without it for graders."""
    import nbformat
    from nbconvert import HTMLExporter
    notebook = nbformat.read(executed, as_version=4)
    written = []
    for suffix, exclude_input in (("", False), ("-no-code", True)):
        html, _ = HTMLExporter(exclude_input=exclude_input, exclude_input_prompt=exclude_input,
                               exclude_output_prompt=exclude_input).from_notebook_node(notebook)
        path = paths.artifacts_dir() / f"report{suffix}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    return written


def run_notebooks(profile_name: str, only: list[str] | None = None, skip_done: bool = False,
                  overrides: dict | None = None) -> None:
    """Execute notebooks 00..05 in order; stop at the first failure, naming the notebook.

    ``overrides`` replace profile values (``--set run_name=x augment=none``); the executed copies
    then carry the run name, so several runs of one notebook keep their own record.
    """
    import papermill
    profile = {**load_profile(profile_name), **(overrides or {})}
    suffix = f"-{overrides['run_name']}" if overrides and "run_name" in overrides else ""
    out_dir = paths.artifacts_dir() / "executed" / profile_name
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    for notebook in notebooks:
        parameters = notebook_parameters(notebook, profile)
        executed = out_dir / f"{notebook.stem}{suffix}.ipynb"
        marker = out_dir / f".{executed.stem}.completed"
        if skip_done and marker.exists() and marker.read_text() == _stamp(notebook, parameters):
            print(f"[skip] {notebook.name}: finished earlier with the same parameters")
            continue
        started = time.monotonic()
        print(f"[run ] {notebook.name} {parameters}", flush=True)
        try:
            papermill.execute_notebook(str(notebook), str(executed), parameters=parameters,
                                       cwd=str(paths.REPO_ROOT), kernel_name="python3", progress_bar=False,
                                       log_output=False)
        except papermill.PapermillExecutionError as error:
            print(f"[FAIL] {notebook.name}: {error.ename}: {error.evalue}\n"
                  f"       executed copy with the traceback: {executed}", file=sys.stderr)
            sys.exit(1)
        if notebook.stem.startswith("05"):
            for path in export_html(executed):
                print(f"[html] {path}")
        marker.write_text(_stamp(notebook, parameters))
        print(f"[done] {notebook.name} in {time.monotonic() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="run the workbook notebooks headless")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--only", nargs="*", help="notebook number prefixes, e.g. 00 03")
    parser.add_argument("--skip-done", action="store_true", help="skip notebooks finished with the same parameters")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override profile values")
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    try:
        run_notebooks(args.profile, args.only, args.skip_done, overrides)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
