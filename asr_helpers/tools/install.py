"""Install requirements.txt without breaking a preinstalled GPU stack.

Kaggle and Colab ship a CUDA torch/torchaudio and numpy 2; reinstalling them wastes minutes
and can break the image. pyctcdecode 0.5.0 declares numpy<2 yet works with numpy 2, so lines
marked ``no-deps`` are installed without their declared dependencies. Lines marked
``local-only`` (JupyterLab, the browser-test driver) are skipped on Kaggle and Colab, whose own
notebook servers a newer jupyter_server could break. Lines marked ``optional`` (flashlight-text:
a second LM engine) are installed one by one afterwards, and one that fails is a printed line,
not a failed install: the package works without them. Standard library only: this runs before
the requirements exist.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from asr_helpers.runtime import environment

KEEP_WHEN_PRESENT = ("torch", "torchaudio", "numpy")
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


@dataclass(frozen=True)
class Requirement:
    name: str
    spec: str
    no_deps: bool = False
    local_only: bool = False
    optional: bool = False


def parse_requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    """Read requirement lines; a comment starting with ``no-deps``, ``local-only`` or ``optional`` marks the line."""
    found = []
    for raw in path.read_text().splitlines():
        spec, _, comment = raw.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower()
        comment = comment.strip()
        found.append(Requirement(name, spec, comment.startswith("no-deps"), comment.startswith("local-only"),
                                 comment.startswith("optional")))
    return found


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def plan(requirements: list[Requirement], where: str = "local") -> tuple[list[str], list[str], list[str]]:
    """Split requirements into (normal installs, no-deps installs, kept-as-present or skipped notes).

    ``where`` is ``runtime.environment()``: ``local``, ``kaggle`` or ``colab``.
    """
    normal, no_deps, kept = [], [], []
    torch_version = installed_version("torch")
    for req in requirements:
        if req.local_only and where != "local":
            kept.append(f"{req.name} (local only, skipped on {where})")
            continue
        present = installed_version(req.name)
        if req.name in KEEP_WHEN_PRESENT and present:
            kept.append(f"{req.name}=={present}")
            continue
        spec = req.spec
        if req.name == "torchaudio" and torch_version:
            # torchaudio must match the torch already there, or pip would replace torch.
            spec = f"torchaudio=={torch_version.split('+')[0]}"
        (no_deps if req.no_deps else normal).append(spec)
    return normal, no_deps, kept


def install(requirements: Path = REQUIREMENTS, quiet: bool = True) -> None:
    found = parse_requirements(requirements)
    normal, no_deps, kept = plan(found, environment())
    optional = {r.spec for r in found if r.optional}
    if kept:
        print("not installing:", ", ".join(kept))
    pip = [sys.executable, "-m", "pip", "install"] + (["-q"] if quiet else [])
    if required := [spec for spec in normal if spec not in optional]:
        subprocess.run(pip + required, check=True)
    if no_deps:
        subprocess.run(pip + ["--no-deps"] + no_deps, check=True)
    for spec in (spec for spec in normal if spec in optional):
        if subprocess.run(pip + [spec]).returncode != 0:
            print(f"optional {spec} did not install; everything else works without it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    install(args.requirements, quiet=not args.verbose)


if __name__ == "__main__":
    main()
