"""Install requirements.txt without breaking a preinstalled GPU stack.

Kaggle and Colab ship a CUDA torch/torchaudio and numpy 2; reinstalling them wastes minutes
and can break the image. pyctcdecode 0.5.0 declares numpy<2 yet works with numpy 2, so lines
marked ``no-deps`` are installed without their declared dependencies. Standard library only:
this runs before the requirements exist.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

KEEP_WHEN_PRESENT = ("torch", "torchaudio", "numpy")
REQUIREMENTS = Path(__file__).resolve().parent.parent / "requirements.txt"


@dataclass(frozen=True)
class Requirement:
    name: str
    spec: str
    no_deps: bool


def parse_requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    """Read requirement lines; a comment starting with ``no-deps`` marks a no-deps install."""
    found = []
    for raw in path.read_text().splitlines():
        spec, _, comment = raw.partition("#")
        spec = spec.strip()
        if not spec:
            continue
        name = re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower()
        found.append(Requirement(name, spec, comment.strip().startswith("no-deps")))
    return found


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def plan(requirements: list[Requirement]) -> tuple[list[str], list[str], list[str]]:
    """Split requirements into (normal installs, no-deps installs, kept-as-present notes)."""
    normal, no_deps, kept = [], [], []
    torch_version = installed_version("torch")
    for req in requirements:
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
    normal, no_deps, kept = plan(parse_requirements(requirements))
    if kept:
        print("keeping preinstalled:", ", ".join(kept))
    pip = [sys.executable, "-m", "pip", "install"] + (["-q"] if quiet else [])
    if normal:
        subprocess.run(pip + normal, check=True)
    if no_deps:
        subprocess.run(pip + ["--no-deps"] + no_deps, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    install(args.requirements, quiet=not args.verbose)


if __name__ == "__main__":
    main()
