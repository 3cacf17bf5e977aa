"""One entry point for every corpus: finds each split's LibriSpeech-layout root.

``synthetic`` renders the offline TTS corpus on first use; ``librispeech`` and
``mini_librispeech`` use a mounted copy (Kaggle input) when present, else download.
"""
from __future__ import annotations

from pathlib import Path

from asr_helpers import paths

CORPORA = ("synthetic", "librispeech", "mini_librispeech")
SYNTHETIC_SPLITS = ("train-clean-100", "dev-clean", "test-clean", "dev-other", "test-other")


def synthetic_root(minutes: float, seed: int) -> Path:
    """Where the offline corpus of a given size and seed lives (one folder per recipe)."""
    return paths.data_dir() / f"synthetic-{minutes:g}min-seed{seed}"


def find_corpus_root(corpus: str, split: str, root: str | Path | None = None,
                     synth_minutes: float = 60.0, seed: int = 0) -> Path | None:
    """The LibriSpeech root already holding ``split`` for ``corpus``, or None; renders and downloads nothing.

    Looks where ``prepare_corpus`` would: ``root`` itself, then the synthetic corpus's folder,
    or for LibriSpeech ``librispeech.locate_split`` (``root/LibriSpeech``, then a Kaggle mount).
    """
    if root is not None and (Path(root) / split).is_dir():
        return Path(root)
    if corpus == "synthetic":
        librispeech_root = synthetic_root(synth_minutes, seed) / "LibriSpeech"
        return librispeech_root if root is None and (librispeech_root / split).is_dir() else None
    from asr_helpers.data.librispeech import locate_split
    return locate_split(split, Path(root) if root is not None else None)


def prepare_corpus(corpus: str, splits: list[str], root: str | Path | None = None,
                   synth_minutes: float = 60.0, seed: int = 0) -> dict[str, Path]:
    """Each split's LibriSpeech root (the folder holding ``<split>/``) for ``corpus``, ready to index.

    Each split is found on its own, so a Kaggle dataset holding the clean splits and another
    holding the other splits both serve one run. A ``root`` holding a split is used for it
    as it is, whatever the corpus.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose from {CORPORA}")
    given = {split: Path(root) for split in splits if root is not None and (Path(root) / split).is_dir()}
    missing = [split for split in splits if split not in given]
    if not missing:
        return given
    if corpus == "synthetic":
        found = {**given, **_synthetic_splits(missing, root, synth_minutes, seed)}
    else:
        from asr_helpers.data.librispeech import ensure_split
        found = {**given, **{split: ensure_split(split, root=Path(root) if root else None) for split in missing}}
    return {split: found[split] for split in splits}


def _synthetic_splits(splits: list[str], root: str | Path | None, synth_minutes: float, seed: int) -> dict[str, Path]:
    """Render the offline corpus on first use; every split shares its root."""
    unknown = sorted(set(splits) - set(SYNTHETIC_SPLITS))
    if unknown:
        raise ValueError(f"the synthetic corpus has no split {unknown}; it has {SYNTHETIC_SPLITS}")
    if root is not None:
        raise FileNotFoundError(f"{root} does not hold the splits {splits}; use root=None to render the corpus")
    out = synthetic_root(synth_minutes, seed)
    if not (out / ".complete").exists():
        from asr_helpers.data.synthetic import synthesize_corpus
        print(f"rendering the offline corpus ({synth_minutes:g} min of speech) into {out} ...")
        print(synthesize_corpus(out, minutes=synth_minutes, seed=seed))
        (out / ".complete").touch()
    return {split: out / "LibriSpeech" for split in splits}

