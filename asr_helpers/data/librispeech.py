"""Real LibriSpeech: the split table, mounted copies (Kaggle inputs) and verified downloads.

``ensure_split`` is what notebooks call: it returns the LibriSpeech root (the folder that
holds ``<split>/``), using a copy that is already there when it can and downloading through
``download.fetch`` (resume, checksum, safe extraction) when it must.

Sources of the numbers in ``SPLITS`` (none is made up; a missing one would be ``None``):
- [tfds] sizes and sha256 of the seven LibriSpeech archives: tensorflow/datasets,
  ``tensorflow_datasets/url_checksums/librispeech.txt``. The sha256 values are identical to
  pytorch/audio ``torchaudio/datasets/librispeech.py`` (``_CHECKSUMS``); the sizes are
  identical to kaldi-asr/kaldi ``egs/librispeech/s5/local/download_and_untar.sh``
  (``sizes_new``).
- [paddle] md5 of the seven archives: PaddlePaddle/PaddleSpeech
  ``examples/dataset/librispeech/librispeech.py``; md5 of the two Mini LibriSpeech archives:
  ``examples/dataset/mini_librispeech/mini_librispeech.py`` (OpenSLR's own md5sum.txt values).
- [kaldi-mini] sizes of the Mini LibriSpeech archives: kaldi-asr/kaldi
  ``egs/mini_librispeech/s5/local/download_and_untar.sh`` (``sizes``, current values).
- [pinned] sha256 of the Mini LibriSpeech archives as pinned in public download scripts next
  to the same md5 and size (dev-clean-2 also in a Nix ``fetchurl`` hash, which only builds
  when it matches). Less authoritative than the rest, so the md5 is checked as well.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from asr_helpers import paths
from asr_helpers.data.download import ArchiveError, DownloadError, extraction_marker, fetch

KAGGLE_INPUT = Path("/kaggle/input")  # where Kaggle mounts datasets; ASR_KAGGLE_INPUT overrides it (tests)
SEARCH_DEPTH = 6          # /kaggle/input/<dataset>/<split>/LibriSpeech/<split> is 4 deep
SEARCH_MAX_DIRS = 5000    # stop looking rather than crawl a huge tree

# OpenSLR hosts, tried in this order when no mirror is named. Listed on openslr.org/12
# (www, US, EU, CN; seen in datasets-mila/datasets--librispeech README.rst, a copy of the
# page); openslr.trmal.net is the host many current scripts download from.
MIRRORS = {
    "openslr": "https://www.openslr.org",
    "us": "https://us.openslr.org",
    "eu": "https://openslr.elda.org",
    "cn": "https://openslr.magicdatatech.com",
    "trmal": "https://openslr.trmal.net",
}


@dataclass(frozen=True)
class Split:
    """One downloadable archive: ``<name>.tar.gz`` in OpenSLR resource ``resource``."""

    name: str
    resource: int
    size: int | None
    sha256: str | None
    md5: str | None

    @property
    def archive(self) -> str:
        return f"{self.name}.tar.gz"


_TABLE = (
    # name, OpenSLR resource, size [tfds|kaldi-mini], sha256 [tfds|pinned], md5 [paddle]
    ("dev-clean", 12, 337926286,
     "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
     "42e2234ba48799c1f50f24a7926300a1"),
    ("dev-other", 12, 314305928,
     "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
     "c8d0bcc9cca99d4f8b62fcc847357931"),
    ("test-clean", 12, 346663984,
     "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
     "32fa31d27d2e1cad72775fee3f4849a9"),
    ("test-other", 12, 328757843,
     "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
     "fb5a50374b501bb3bac4815ee91d3135"),
    ("train-clean-100", 12, 6387309499,
     "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
     "2a93770f6d5c6c964bc36631d331a522"),
    ("train-clean-360", 12, 23049477885,
     "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
     "c0e676e450a7ff2f54aeade5171606fa"),
    ("train-other-500", 12, 30593501606,
     "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
     "d1a0fd59409feb2c614ce4d30c387708"),
    ("train-clean-5", 31, 332954390,
     "47805806c8b15f7549f3c51bd6b7da72ec0128a34d32830c8014a88658c0292d",
     "5df7d4e78065366204ca6845bb08f490"),
    ("dev-clean-2", 31, 126046265,
     "176ec501490eced2d6c1f89f4f0ddc7dfe799e649e5322f8ba49fe3ff50c8012",
     "6d7ab67ac6a1d2c993d050e16d61080d"),
)
SPLITS: dict[str, Split] = {row[0]: Split(*row) for row in _TABLE}


class UnknownSplitError(ValueError):
    """A split name that is not in the table."""


def split_info(split: str) -> Split:
    """The table row for ``split``; an unknown name lists the valid ones."""
    try:
        return SPLITS[split]
    except KeyError:
        raise UnknownSplitError(
            f"unknown LibriSpeech split {split!r}; choose from {', '.join(SPLITS)}"
        ) from None


def split_url(split: str, mirror: str | None = None, base_url: str | None = None) -> str:
    """Download URL of ``split``'s archive.

    ``mirror`` is a key of ``MIRRORS`` or a host URL (``https://us.openslr.org``);
    ``base_url`` replaces the whole folder (a local server in tests, a private copy).
    """
    info = split_info(split)
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{info.archive}"
    mirror = mirror or "openslr"
    if mirror in MIRRORS:
        host = MIRRORS[mirror]
    elif mirror.startswith(("http://", "https://")):
        host = mirror.rstrip("/")
    else:
        raise ValueError(f"unknown mirror {mirror!r}; use one of {', '.join(MIRRORS)} or a URL")
    return f"{host}/resources/{info.resource}/{info.archive}"


def kaggle_input() -> Path:
    """Where mounted datasets are searched: ``$ASR_KAGGLE_INPUT``, else ``/kaggle/input``."""
    return Path(os.environ.get("ASR_KAGGLE_INPUT", KAGGLE_INPUT))


def find_mounted(split: str, search_roots: list[Path] | None = None) -> Path | None:
    """The LibriSpeech root holding a usable ``<split>/`` under ``search_roots``, or None.

    Kaggle datasets nest the split in different ways (``<ds>/LibriSpeech/<split>``,
    ``<ds>/<split>/LibriSpeech/<split>``, ...), so this walks breadth first to a bounded
    depth, never into speaker folders or hidden ones, and returns the shallowest match.
    ``search_roots`` defaults to ``kaggle_input()``.
    """
    split_info(split)
    for root in search_roots if search_roots is not None else [kaggle_input()]:
        found = _search(Path(root), split)
        if found is not None:
            return found
    return None


def locate_split(split: str, root: Path | None = None) -> Path | None:
    """The LibriSpeech root already holding ``split``, or None; downloads nothing.

    Checks ``root/LibriSpeech/<split>`` (``root`` defaults to ``paths.data_dir()``), then a
    Kaggle input copy. The data folder itself is not walked: it also holds the synthetic
    corpus in LibriSpeech layout, which must never pass for the real thing.
    """
    split_info(split)
    librispeech = (Path(root) if root is not None else paths.data_dir()) / "LibriSpeech"
    if _is_split_dir(librispeech / split):
        return librispeech
    return find_mounted(split)


def ensure_split(
    split: str,
    root: Path | None = None,
    mirror: str | None = None,
    *,
    base_url: str | None = None,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Make ``split`` available and return the LibriSpeech root that contains it.

    Uses ``root/LibriSpeech/<split>`` (``root`` defaults to ``paths.data_dir()``) or a
    Kaggle input copy when there is one. Otherwise downloads ``<split>.tar.gz`` into
    ``root`` (from ``base_url``, the named ``mirror``, or each OpenSLR mirror in turn),
    verifies it and extracts it to ``root/LibriSpeech/<split>``. The archive is deleted
    afterwards unless ``keep_archive`` (keeping it doubles the disk use).
    """
    found = locate_split(split, root)
    if found is not None:
        return found
    info = split_info(split)
    root = Path(root) if root is not None else paths.data_dir()
    librispeech = root / "LibriSpeech"
    if base_url is not None:
        urls = [split_url(split, base_url=base_url)]
    else:
        urls = [split_url(split, mirror=name) for name in ([mirror] if mirror else MIRRORS)]
    extraction_marker(root / info.archive, root).unlink(missing_ok=True)  # split was deleted
    failures = []
    for url in urls:
        try:
            fetch(url, root, sha256=info.sha256, md5=info.md5, size=info.size,
                  extract=True, progress=progress)
            break
        except ArchiveError:
            raise
        except DownloadError as exc:
            failures.append(str(exc))
    else:
        raise DownloadError(f"could not get LibriSpeech {split}:\n  " + "\n  ".join(failures))
    if not keep_archive:
        (root / info.archive).unlink(missing_ok=True)
    if not _is_split_dir(librispeech / split):
        raise DownloadError(
            f"{info.archive} was extracted into {root} but {librispeech / split} holds no "
            "<speaker>/<chapter>/*.trans.txt; the archive is not in LibriSpeech layout"
        )
    return librispeech


def _search(root: Path, split: str) -> Path | None:
    queue = deque([(root, 0)])
    seen = 0
    while queue:
        folder, depth = queue.popleft()
        if _is_split_dir(folder / split):
            return folder
        if depth == SEARCH_DEPTH:
            continue
        for child in _subdirs(folder):
            if child.name.isdigit() or child.name.startswith("."):
                continue
            seen += 1
            if seen > SEARCH_MAX_DIRS:
                return None
            queue.append((child, depth + 1))
    return None


def _subdirs(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir())
    except OSError:
        return []


def _is_split_dir(path: Path) -> bool:
    """Cheap layout check on the first speaker/chapter: ``<spk>/<chap>/<spk>-<chap>.trans.txt``."""
    for speaker in _subdirs(path)[:1]:
        for chapter in _subdirs(speaker)[:1]:
            return (chapter / f"{speaker.name}-{chapter.name}.trans.txt").is_file()
    return False
