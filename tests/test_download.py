"""download/fetch/safe_extract against a real local HTTP server and hand-built archives."""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import soundfile as sf

from asr_helpers.data import download as dl
from asr_helpers.data.download import ArchiveError, DownloadError, download, fetch, safe_extract
from fixtures_http import (  # noqa: F401 - file_server is a fixture
    SPEAKERS,
    UTTERANCES_PER_CHAPTER,
    checksums,
    closed_port_url,
    file_server,
    librispeech_archive,
)

PAYLOAD = hashlib.sha256(b"seed").digest() * 10_000  # 320 kB, not compressible to nothing


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(dl, "BACKOFF_S", 0.0)
    monkeypatch.setattr(dl, "RETRIES", 2)


def _serve(server, name: str, data: bytes) -> str:
    server.files[name] = data
    return server.url(name)


def test_download_verifies_and_second_call_uses_no_network(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    dest = tmp_path / "out" / "blob.bin"
    assert download(url, dest, progress=False, **checksums(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_suffix(".bin.part").exists()
    assert download(url, dest, progress=False, **checksums(PAYLOAD)) == dest
    assert len(file_server.requests) == 1


def test_truncated_download_resumes_with_range(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    file_server.cut_after, file_server.cuts_left = 100_000, 1
    dest = download(url, tmp_path / "blob.bin", progress=True, **checksums(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    ranges = [request["range"] for request in file_server.requests]
    assert ranges == [None, "bytes=100000-"]


def test_many_cuts_still_finish_because_progress_resets_retries(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    file_server.cut_after, file_server.cuts_left = 50_000, 5  # more cuts than RETRIES (2)
    download(url, tmp_path / "blob.bin", progress=False, **checksums(PAYLOAD))
    ranges = [request["range"] for request in file_server.requests]
    assert ranges == [None] + [f"bytes={50_000 * n}-" for n in range(1, 6)]
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_existing_part_is_resumed(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:1234])
    download(url, tmp_path / "blob.bin", progress=False, **checksums(PAYLOAD))
    assert [r["range"] for r in file_server.requests] == ["bytes=1234-"]
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    file_server.ignore_range = True
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes that must not survive")
    download(url, tmp_path / "blob.bin", progress=False, **checksums(PAYLOAD))
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_416_on_a_complete_part_means_done(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download(url, tmp_path / "blob.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
             progress=False)
    assert [r["range"] for r in file_server.requests] == [f"bytes={len(PAYLOAD)}-"]
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_complete_part_with_known_size_needs_no_request(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download(url, tmp_path / "blob.bin", progress=False, **checksums(PAYLOAD))
    assert file_server.requests == []


def test_wrong_checksum_is_refused_and_nothing_kept(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    with pytest.raises(DownloadError, match=r"sha256 is [0-9a-f]{64}, expected 0+") as err:
        download(url, tmp_path / "blob.bin", sha256="0" * 64, progress=False)
    assert url in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    expected = f"size is {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 10}"
    with pytest.raises(DownloadError, match=expected):
        download(url, tmp_path / "blob.bin", size=len(PAYLOAD) + 10, progress=False)


def test_existing_wrong_file_is_refused_unless_overwrite(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"not the payload")
    with pytest.raises(DownloadError, match="overwrite=True"):
        download(url, dest, progress=False, **checksums(PAYLOAD))
    assert file_server.requests == []
    download(url, dest, progress=False, overwrite=True, **checksums(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


def test_http_404_fails_at_once_with_the_url(file_server, tmp_path):
    url = file_server.url("missing.bin")
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        download(url, tmp_path / "missing.bin", progress=False)
    assert url in str(err.value)
    assert len(file_server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_retried_then_reported(tmp_path):
    url = closed_port_url("blob.bin")
    with pytest.raises(DownloadError, match="gave up .* after 2 retries"):
        download(url, tmp_path / "blob.bin", progress=False)


def test_folder_as_destination_is_a_clear_error(file_server, tmp_path):
    url = _serve(file_server, "blob.bin", PAYLOAD)
    with pytest.raises(DownloadError, match="it is a folder"):
        download(url, tmp_path, progress=False)
    assert file_server.requests == []


def test_file_url_downloads_and_resumes(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    dest = tmp_path / "dest" / "copy.bin"
    dest.parent.mkdir()
    dest.with_suffix(".bin.part").write_bytes(PAYLOAD[:777])
    download(source.as_uri(), dest, progress=False, **checksums(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("url", ["ftp://example.org/x", "not a url", "/just/a/path"])
def test_unsupported_url_is_a_clear_error(url, tmp_path):
    with pytest.raises(DownloadError, match="scheme must be one of"):
        download(url, tmp_path / "x", progress=False)


# --- fetch + safe_extract: the LibriSpeech archive path ---------------------------------


def test_fetch_downloads_verifies_and_extracts_librispeech(file_server, tmp_path):
    data = librispeech_archive(tmp_path, "dev-clean")
    url = _serve(file_server, "dev-clean.tar.gz", data)
    root = tmp_path / "data"
    assert fetch(url, root, extract=True, progress=False, **checksums(data)) == root
    flacs = sorted((root / "LibriSpeech" / "dev-clean").glob("*/*/*.flac"))
    assert len(flacs) == len(SPEAKERS) * UTTERANCES_PER_CHAPTER
    audio, rate = sf.read(flacs[0])
    assert rate == 16000 and len(audio) == 3200
    assert (root / "LibriSpeech" / "SPEAKERS.TXT").is_file()
    assert (root / ".extracted-dev-clean.tar.gz").is_file()
    assert not list(root.glob(".extracting-*"))

    (root / "dev-clean.tar.gz").unlink()  # extracted once: the archive is no longer needed
    assert fetch(url, root, extract=True, progress=False, **checksums(data)) == root
    assert len(file_server.requests) == 1


def test_fetch_without_extract_returns_the_file(file_server, tmp_path):
    url = _serve(file_server, "lm/3-gram.arpa.gz", PAYLOAD)
    path = fetch(url, tmp_path, progress=False, **checksums(PAYLOAD))
    assert path == tmp_path / "3-gram.arpa.gz" and path.read_bytes() == PAYLOAD


def test_corrupted_archive_is_refused_and_nothing_extracted(file_server, tmp_path):
    data = librispeech_archive(tmp_path, "dev-clean")
    expected = checksums(data)
    corrupted = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
    url = _serve(file_server, "dev-clean.tar.gz", corrupted)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="sha256"):
        fetch(url, root, extract=True, progress=False, **expected)
    assert not (root / "LibriSpeech").exists()
    assert not list(root.glob(".extracted-*"))
    assert not list(root.glob("dev-clean.tar.gz*"))


def test_second_split_merges_into_the_same_librispeech_folder(tmp_path):
    root = tmp_path / "data"
    for split in ("dev-clean", "test-clean"):
        archive = tmp_path / f"{split}.tar.gz"
        archive.write_bytes(librispeech_archive(tmp_path, split))
        safe_extract(archive, root)
    assert sorted(p.name for p in (root / "LibriSpeech").iterdir() if p.is_dir()) == [
        "dev-clean", "test-clean"]


def test_zip_is_extracted(tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("model/weights.txt", "1 2 3")
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model" / "weights.txt").read_text() == "1 2 3"


def test_truncated_archive_never_looks_extracted(tmp_path):
    data = librispeech_archive(tmp_path, "dev-clean")
    archive = tmp_path / "dev-clean.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    dest = tmp_path / "data"
    with pytest.raises(ArchiveError, match="cannot extract"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def _tar(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for info, payload in members:
            info.size = len(payload) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("../escape.txt"), "outside"),
        (_member("LibriSpeech/../../escape.txt"), "outside"),
        (_member("/tmp/absolute-escape.txt"), "absolute"),
        (_member("LibriSpeech/link", tarfile.SYMTYPE, "../../outside"), "symlink target"),
        (_member("LibriSpeech/link", tarfile.SYMTYPE, "/etc/passwd"), "absolute"),
        (_member("LibriSpeech/hard", tarfile.LNKTYPE, "../outside"), "hard link"),
        (_member("LibriSpeech/tty", tarfile.CHRTYPE), "device"),
        (_member("LibriSpeech/up", tarfile.SYMTYPE, ".."), "through symlink"),
        (_member("LibriSpeech/fifo", tarfile.FIFOTYPE), "device"),
    ],
)
@pytest.mark.parametrize("stdlib_filter", [True, False], ids=["py>=3.11.4", "py3.10-no-filter"])
def test_unsafe_tar_members_are_refused(tmp_path, monkeypatch, member, message, stdlib_filter):
    if not stdlib_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    climb = [member]
    if member.issym() and member.linkname == "..":  # a -> .. then a/b -> .. climbs out
        climb.append(_member("LibriSpeech/up/up2", tarfile.SYMTYPE, ".."))
    archive = _tar(tmp_path, (_member("LibriSpeech/ok.txt"), b"fine"),
                   *[(info, b"evil") for info in climb])
    dest = tmp_path / "deep" / "dest"
    with pytest.raises(ArchiveError, match=message):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # not even the harmless member, no marker, no scratch
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "deep" / "escape.txt").exists()


def test_links_inside_the_archive_are_allowed(tmp_path):
    archive = _tar(tmp_path, (_member("a/target.txt"), b"data"),
                   (_member("a/link", tarfile.SYMTYPE, "target.txt"), b""),
                   (_member("a/hard", tarfile.LNKTYPE, "a/target.txt"), b""))
    safe_extract(archive, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "a" / "link") == "target.txt"
    assert (tmp_path / "out" / "a" / "hard").read_bytes() == b"data"


def test_unsafe_zip_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("../escape.txt", "evil")
    with pytest.raises(ArchiveError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_missing_archive_is_a_clear_error(tmp_path):
    with pytest.raises(ArchiveError, match="no such file"):
        safe_extract(tmp_path / "nope.tar.gz", tmp_path / "out")
