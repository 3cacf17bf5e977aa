"""The split table, mounted-copy detection and ensure_split end to end over local HTTP."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from asr_helpers.data import download as dl
from asr_helpers.data import librispeech as ls
from asr_helpers.data.download import DownloadError
from asr_helpers.data.librispeech import (
    SPLITS,
    Split,
    UnknownSplitError,
    ensure_split,
    find_mounted,
    locate_split,
    split_url,
)
from fixtures_http import (  # noqa: F401 - file_server is a fixture
    SPEAKERS,
    UTTERANCES_PER_CHAPTER,
    checksums,
    closed_port_url,
    file_server,
    librispeech_archive,
    write_librispeech_split,
)

LIBRISPEECH = ("dev-clean", "dev-other", "test-clean", "test-other",
               "train-clean-100", "train-clean-360", "train-other-500")
MINI = ("train-clean-5", "dev-clean-2")


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path):
    """No real Kaggle mount, no waiting between retries."""
    monkeypatch.setattr(ls, "KAGGLE_INPUT", tmp_path / "no-kaggle")
    monkeypatch.setattr(dl, "BACKOFF_S", 0.0)
    monkeypatch.setattr(dl, "RETRIES", 1)


def _serve_split(server, tmp_path, monkeypatch, split="dev-clean", prefix="") -> bytes:
    """Serve a tiny archive for ``split`` and point the table's checksums at it."""
    data = librispeech_archive(tmp_path, split)
    server.files[f"{prefix}{split}.tar.gz"] = data
    sums = checksums(data)
    row = Split(split, SPLITS[split].resource, sums["size"], sums["sha256"], sums["md5"])
    monkeypatch.setitem(SPLITS, split, row)
    return data


def test_table_has_every_split_with_sourced_numbers():
    assert set(SPLITS) == set(LIBRISPEECH + MINI)
    for name, row in SPLITS.items():
        assert row.resource == (31 if name in MINI else 12)
        assert re.fullmatch(r"[0-9a-f]{64}", row.sha256) and re.fullmatch(r"[0-9a-f]{32}", row.md5)
        assert row.size > 100_000_000
    assert SPLITS["train-clean-100"].size == 6387309499  # 6.3G on openslr.org/12


def test_urls_for_default_named_and_custom_mirrors():
    assert split_url("dev-clean") == "https://www.openslr.org/resources/12/dev-clean.tar.gz"
    assert split_url("dev-clean-2", mirror="eu") == (
        "https://openslr.elda.org/resources/31/dev-clean-2.tar.gz")
    assert split_url("test-other", mirror="https://example.org/") == (
        "https://example.org/resources/12/test-other.tar.gz")
    assert split_url("dev-clean", base_url="http://127.0.0.1:1/x/") == (
        "http://127.0.0.1:1/x/dev-clean.tar.gz")
    with pytest.raises(ValueError, match="unknown mirror 'mars'.*openslr, us, eu"):
        split_url("dev-clean", mirror="mars")


@pytest.mark.parametrize("call", [ensure_split, find_mounted, locate_split, split_url])
def test_unknown_split_lists_the_valid_ones(call):
    with pytest.raises(UnknownSplitError, match="'dev_clean'.*dev-clean, dev-other.*dev-clean-2"):
        call("dev_clean")


def test_ensure_split_downloads_verifies_and_extracts(file_server, tmp_path, monkeypatch):
    _serve_split(file_server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    got = ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False)
    assert got == root / "LibriSpeech"
    flacs = sorted((got / "dev-clean").glob("*/*/*.flac"))
    assert len(flacs) == len(SPEAKERS) * UTTERANCES_PER_CHAPTER
    assert sf.info(flacs[0]).samplerate == 16000
    speaker, chapter = SPEAKERS[0]
    transcript = got / "dev-clean" / str(speaker) / str(chapter) / f"{speaker}-{chapter}.trans.txt"
    first_line = transcript.read_text().splitlines()[0]
    assert first_line == f"{speaker}-{chapter}-0000 HELLO WORLD NUMBER 0"
    assert not (root / "dev-clean.tar.gz").exists()  # deleted by default to save disk

    again = ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False)
    assert again == got and len(file_server.requests) == 1

    shutil.rmtree(got / "dev-clean")  # a user deleting the split gets it back, not an error
    ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False)
    assert len(list((got / "dev-clean").glob("*/*/*.flac"))) == len(flacs)


def test_ensure_split_keeps_archive_when_asked_and_resumes_cut_download(
        file_server, tmp_path, monkeypatch):
    data = _serve_split(file_server, tmp_path, monkeypatch)
    file_server.cut_after, file_server.cuts_left = len(data) // 3, 1
    root = tmp_path / "data"
    ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False,
                 keep_archive=True)
    assert (root / "dev-clean.tar.gz").read_bytes() == data
    assert file_server.requests[1]["range"] == f"bytes={len(data) // 3}-"


def test_ensure_split_refuses_a_corrupted_archive(file_server, tmp_path, monkeypatch):
    _serve_split(file_server, tmp_path, monkeypatch)
    file_server.files["dev-clean.tar.gz"] = b"garbage" * 1000
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="could not get LibriSpeech dev-clean") as err:
        ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False)
    assert file_server.url("dev-clean.tar.gz") in str(err.value)
    assert not (root / "LibriSpeech").exists()


def test_ensure_split_falls_back_to_the_next_mirror(file_server, tmp_path, monkeypatch):
    _serve_split(file_server, tmp_path, monkeypatch, split="dev-clean-2", prefix="resources/31/")
    dead = closed_port_url().rsplit("/", 1)[0]
    monkeypatch.setattr(ls, "MIRRORS", {"dead": dead, "live": file_server.url().rstrip("/")})
    root = ensure_split("dev-clean-2", root=tmp_path / "data", progress=False)
    assert (root / "dev-clean-2").is_dir()
    assert [r["path"] for r in file_server.requests] == ["/resources/31/dev-clean-2.tar.gz"]


def test_ensure_split_reports_every_mirror_that_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(ls, "MIRRORS", {"a": closed_port_url().rsplit("/", 1)[0],
                                        "b": closed_port_url().rsplit("/", 1)[0]})
    with pytest.raises(DownloadError) as err:
        ensure_split("test-clean", root=tmp_path / "data", progress=False)
    assert str(err.value).count("gave up") == 2


def test_ensure_split_prefers_a_mounted_copy(file_server, tmp_path, monkeypatch):
    kaggle = tmp_path / "kaggle" / "input"
    write_librispeech_split(kaggle / "librispeech", "dev-clean")
    monkeypatch.setattr(ls, "KAGGLE_INPUT", kaggle)
    got = ensure_split("dev-clean", root=tmp_path / "data", base_url=file_server.url())
    assert got == kaggle / "librispeech" / "LibriSpeech"
    assert file_server.requests == []


@pytest.mark.parametrize(
    "layout",
    [
        "librispeech",                                   # <ds>/LibriSpeech/<split>
        "librispeech-clean",
        "librispeech/train-clean-100",                   # <ds>/<split>/LibriSpeech/<split>
        "datasets/someone/librispeech-asr",              # owner/slug nesting
    ],
)
def test_find_mounted_handles_kaggle_layouts(tmp_path, layout):
    kaggle = tmp_path / "kaggle" / "input"
    write_librispeech_split(kaggle / layout, "train-clean-100")
    (kaggle / "unrelated-dataset" / "images").mkdir(parents=True)
    assert find_mounted("train-clean-100", [kaggle]) == kaggle / layout / "LibriSpeech"
    assert find_mounted("dev-clean", [kaggle]) is None


def test_find_mounted_ignores_empty_or_foreign_split_folders(tmp_path):
    (tmp_path / "LibriSpeech" / "dev-clean" / "19" / "198").mkdir(parents=True)  # no trans.txt
    (tmp_path / "other" / "dev-clean").mkdir(parents=True)
    assert find_mounted("dev-clean", [tmp_path]) is None


def test_find_mounted_search_is_bounded(tmp_path, monkeypatch):
    deep = tmp_path.joinpath(*[f"level{i}" for i in range(ls.SEARCH_DEPTH + 1)])
    write_librispeech_split(deep, "dev-clean")
    assert find_mounted("dev-clean", [tmp_path]) is None
    assert find_mounted("dev-clean", [tmp_path / "level0" / "level1"]) == deep / "LibriSpeech"
    monkeypatch.setattr(ls, "SEARCH_MAX_DIRS", 3)
    for index in range(5):
        (tmp_path / f"a{index}").mkdir()
    write_librispeech_split(tmp_path / "zz", "test-clean")
    assert find_mounted("test-clean", [tmp_path]) is None


def test_find_mounted_checks_roots_in_order_and_skips_missing(tmp_path):
    write_librispeech_split(tmp_path / "first", "dev-clean")
    write_librispeech_split(tmp_path / "second", "dev-clean")
    roots = [tmp_path / "missing", tmp_path / "second", tmp_path / "first"]
    assert find_mounted("dev-clean", roots) == tmp_path / "second" / "LibriSpeech"


def test_default_search_finds_own_copy_and_kaggle_but_not_the_synthetic_corpus(
        monkeypatch, tmp_path):
    data = tmp_path / "data"
    monkeypatch.setenv("ASR_DATA_DIR", str(data))
    write_librispeech_split(data / "synthetic-60min-seed0", "dev-clean")
    assert locate_split("dev-clean") is None
    write_librispeech_split(data, "dev-clean-2")
    assert locate_split("dev-clean-2") == data / "LibriSpeech"
    kaggle = tmp_path / "kaggle" / "input"
    write_librispeech_split(kaggle / "librispeech" / "dev-clean", "dev-clean")
    monkeypatch.setattr(ls, "KAGGLE_INPUT", kaggle)
    assert locate_split("dev-clean") == kaggle / "librispeech" / "dev-clean" / "LibriSpeech"


def test_ensure_split_never_returns_the_synthetic_corpus(file_server, tmp_path, monkeypatch):
    _serve_split(file_server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    write_librispeech_split(root / "synthetic-60min-seed0", "dev-clean")
    got = ensure_split("dev-clean", root=root, base_url=file_server.url(), progress=False)
    assert got == root / "LibriSpeech" and len(file_server.requests) == 1


def test_ensure_split_default_root_is_the_data_dir(file_server, tmp_path, monkeypatch):
    _serve_split(file_server, tmp_path, monkeypatch)
    monkeypatch.setenv("ASR_DATA_DIR", str(tmp_path / "data"))
    got = ensure_split("dev-clean", base_url=file_server.url(), progress=False)
    assert got == Path(tmp_path / "data" / "LibriSpeech")
