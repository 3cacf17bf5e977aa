"""The one way files enter the project: resumable, verified downloads and safe extraction.

Checkpoints, LibriSpeech archives and language models all come through ``download`` (one
file) or ``fetch`` (file, then optionally ``safe_extract``). The rules, and why:

- Bytes stream into ``<dest>.part`` and are renamed only after size and checksum match, so a
  file under its final name is always complete and verified.
- An interrupted download resumes with an HTTP Range request; a server that ignores Range
  gets a fresh start, a 416 means the part is already whole. Multi-gigabyte LibriSpeech
  archives over a notebook connection do get cut.
- Archives come from the internet: a member that would land outside the destination
  (absolute path, ``..``, link pointing out or through another link, device file) is
  refused before it is written. Extraction happens in a scratch folder that is deleted on
  any failure, so a refused or half-extracted archive never looks finished.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import posixpath
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
RETRIES = 4
BACKOFF_S = 1.0
USER_AGENT = "asr-workbook/0.1 (+python urllib)"
_SCHEMES = ("http", "https", "file")


class DownloadError(RuntimeError):
    """A download or extraction failed; the message names the URL or file and the reason."""


class ArchiveError(DownloadError):
    """An archive is unreadable or holds members that would escape the destination."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, timeout, 5xx): resume from the part."""


class _RangeDone(Exception):
    """The server answered 416: it has nothing past the bytes already in the part file."""


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` (resuming, verifying) and return ``dest``.

    A ``dest`` that already exists and matches the given size/checksums is returned without
    touching the network. One that does not match is refused unless ``overwrite=True``,
    which deletes it (and any partial download) and fetches the file again.
    """
    dest = Path(dest)
    _check_url(url)
    if dest.is_dir():
        raise DownloadError(f"cannot download {url} to {dest}: it is a folder; give a file path")
    if dest.exists() and not overwrite:
        problem = _verify(dest, sha256=sha256, md5=md5, size=size)
        if problem:
            raise DownloadError(
                f"{dest} already exists but {problem}; it is not the file at {url}. "
                "Delete it or pass overwrite=True to download it again."
            )
        return dest
    part = dest.with_suffix(dest.suffix + ".part")
    if overwrite:
        dest.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()
    _fill_part(url, part, size=size, progress=progress)
    problem = _verify(part, sha256=sha256, md5=md5, size=size)
    if problem:
        part.unlink(missing_ok=True)
        raise DownloadError(f"downloaded {url} but {problem}; the partial file was deleted")
    os.replace(part, dest)
    return dest


def fetch(
    url: str,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    extract: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Download ``url`` into ``dest_dir`` under its own file name; extract it if asked.

    Returns the downloaded file, or ``dest_dir`` when ``extract`` (the archive's contents
    land there). An archive already extracted into ``dest_dir`` is not downloaded again,
    even if the archive file itself has since been deleted to save space.
    """
    dest_dir = Path(dest_dir)
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not name:
        raise DownloadError(f"cannot tell a file name from {url}; download() it to a path")
    marker = extraction_marker(dest_dir / name, dest_dir)
    if extract and overwrite:
        marker.unlink(missing_ok=True)
    if extract and marker.exists():
        return dest_dir
    archive = download(
        url, dest_dir / name, sha256=sha256, md5=md5, size=size, progress=progress,
        overwrite=overwrite,
    )
    return safe_extract(archive, dest_dir) if extract else archive


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks so multi-gigabyte archives fit in memory."""
    return file_digests(path, [algorithm])[algorithm]


def file_digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    """Several hex digests in one pass over the file (a second pass over 30 GB is minutes)."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def _verify(path: Path, *, sha256: str | None, md5: str | None, size: int | None) -> str | None:
    """What is wrong with ``path`` against the expected size/checksums, or None if nothing."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"its size is {actual_size} bytes, expected {size}"
    expected = {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    actual = file_digests(path, list(expected)) if expected else {}
    for name, value in expected.items():
        if actual[name] != value:
            return f"its {name} is {actual[name]}, expected {value}"
    return None


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in _SCHEMES:
        raise DownloadError(f"cannot download {url!r}: scheme must be one of {_SCHEMES}")


def _fill_part(url: str, part: Path, *, size: int | None, progress: bool) -> None:
    """Append to ``part`` until the source has no more bytes, retrying transient failures.

    The retry budget is spent only by attempts that made no progress, so a flaky connection
    that keeps cutting a 30 GB archive still finishes.
    """
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset == size:
            return
        try:
            _transfer(url, part, offset, progress)
            return
        except _RangeDone:
            return
        except _Transient as exc:
            grown = part.exists() and part.stat().st_size > offset
            failures = 0 if grown else failures + 1
            if failures > RETRIES:
                raise DownloadError(f"gave up on {url} after {RETRIES} retries: {exc}") from exc
            time.sleep(BACKOFF_S * 2 ** max(failures - 1, 0))


def _transfer(url: str, part: Path, offset: int, progress: bool) -> None:
    """One attempt: open the source at ``offset`` and append what it sends to ``part``."""
    with _open(url, offset) as (stream, start, length):
        received = 0
        with part.open("ab" if start else "wb") as out, \
                _progress_bar(part.name, start, length, progress) as advance:
            while chunk := _read(stream, start + received):
                _write(out, chunk, part)
                received += len(chunk)
                advance(len(chunk))
            _sync(out, part)
    if length is not None and received < length:
        raise _Transient(f"connection closed after {start + received} of {start + length} bytes")


def _read(stream: BinaryIO, position: int) -> bytes:
    """Next chunk of the body; a dropped or timed-out connection is worth a resume."""
    try:
        return stream.read(CHUNK_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"connection lost after {position} bytes: {exc}") from exc


def _write(out: BinaryIO, chunk: bytes, part: Path) -> None:
    """Append ``chunk``. A full or read-only disk is reported, not retried."""
    try:
        out.write(chunk)
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc}") from exc


def _sync(out: BinaryIO, part: Path) -> None:
    """Flush to disk, so the file renamed into place later survives a crash intact."""
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise DownloadError(f"cannot write {part}: {exc}") from exc


@contextlib.contextmanager
def _open(url: str, offset: int) -> Iterator[tuple[BinaryIO, int, int | None]]:
    """Yield (stream, offset the body starts at, body length if known) for one attempt."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
        stream, start, length = _open_file(url, path, offset)
    else:
        stream, start, length = _open_http(url, offset)
    with stream:
        yield stream, start, length


def _open_file(url: str, path: Path, offset: int) -> tuple[BinaryIO, int, int | None]:
    if not path.is_file():
        raise DownloadError(f"cannot download {url}: {path} is not a file")
    total = path.stat().st_size
    if offset == total:
        raise _RangeDone()
    start = offset if offset < total else 0
    handle = path.open("rb")
    handle.seek(start)
    return handle, start, total - start


def _open_http(url: str, offset: int) -> tuple[BinaryIO, int, int | None]:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _RangeDone() from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(f"cannot connect: {getattr(exc, 'reason', exc)}") from exc
    try:
        start = _served_start(url, response, offset)
    except DownloadError:
        response.close()
        raise
    length = response.headers.get("Content-Length", "")
    return response, start, int(length) if length.isdigit() else None


def _served_start(url: str, response: http.client.HTTPResponse, offset: int) -> int:
    """Where the body starts: ``offset`` on a matching 206; 0 (a restart) on a plain 200."""
    if response.status != 206:
        return 0
    content_range = response.headers.get("Content-Range", "")
    try:
        start = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError) as exc:
        raise DownloadError(
            f"cannot resume {url}: unreadable Content-Range {content_range!r}"
        ) from exc
    if start != offset:
        raise DownloadError(f"cannot resume {url}: asked for byte {offset}, got "
                            f"{content_range!r}; delete the .part file to start over")
    return start


@contextlib.contextmanager
def _progress_bar(
    name: str, start: int, length: int | None, enabled: bool
) -> Iterator[Callable[[int], object]]:
    """Yield a byte-count callback: a tqdm bar when wanted and installed, else a no-op."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        yield lambda n: None
        return
    total = start + length if length is not None else None
    with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
              desc=name.removesuffix(".part"), leave=False) as bar:
        yield bar.update


def extraction_marker(archive: Path, dest: Path) -> Path:
    """The file whose presence says ``archive`` was fully extracted into ``dest``."""
    return Path(dest) / f".extracted-{Path(archive).name}"


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a .tar(.gz|.tgz|.bz2|.xz) or .zip into ``dest`` safely; return ``dest``.

    Every member is checked before it is written; the archive is unpacked into a scratch
    folder inside ``dest`` and merged in afterwards, and the completion marker is written
    last. A refused or interrupted extraction leaves nothing that looks finished.
    """
    archive, dest = Path(archive), Path(dest)
    marker = extraction_marker(archive, dest)
    if marker.exists():
        return dest
    if not archive.is_file():
        raise ArchiveError(f"cannot extract {archive}: no such file")
    dest.mkdir(parents=True, exist_ok=True)
    scratch = dest / f".extracting-{archive.name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, scratch)
        else:
            _extract_tar(archive, scratch)
        _merge_into(scratch, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    marker.write_text(f"{archive.name}\n")
    return dest


def _extract_tar(archive: Path, scratch: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            symlinks: set[str] = set()
            for member in tar:
                _check_tar_member(member, archive, symlinks)
                _extract_member(tar, member, scratch, archive)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"cannot extract {archive}: {exc}") from exc


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, scratch: Path,
                    archive: Path) -> None:
    """Extract one member, with the stdlib 'data' filter where this Python has it."""
    if hasattr(tarfile, "data_filter"):
        try:
            tar.extract(member, scratch, filter="data")
        except tarfile.FilterError as exc:
            raise ArchiveError(f"refusing {archive}: {exc}") from exc
    else:
        tar.extract(member, scratch)


def _check_tar_member(member: tarfile.TarInfo, archive: Path, symlinks: set[str]) -> None:
    """Refuse members that could write outside the destination.

    Paths are checked as text, so nothing may be reached *through* an earlier symlink of
    the archive (``a -> ..`` then ``a/b -> ..`` would climb out one level per link).
    """
    name = _inside(member.name, ".", archive)
    if member.isdev():
        raise ArchiveError(f"refusing {archive}: {member.name!r} is a device or FIFO")
    if member.issym():
        target = _inside(member.linkname, posixpath.dirname(name), archive, what="symlink target")
        _not_through(symlinks, target, archive, member.name)
        symlinks.add(name)
    elif member.islnk():
        _not_through(symlinks, _inside(member.linkname, ".", archive, what="hard link target"),
                     archive, member.name)
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"refusing {archive}: {member.name!r} has an unsupported type")
    _not_through(symlinks, posixpath.dirname(name), archive, member.name)


def _not_through(symlinks: set[str], path: str, archive: Path, member: str) -> None:
    """Refuse ``path`` when it or one of its parent folders is a symlink from the archive."""
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        if "/".join(parts[:end]) in symlinks:
            raise ArchiveError(f"refusing {archive}: {member!r} goes through symlink "
                               f"{'/'.join(parts[:end])!r}")


def _inside(name: str, base: str, archive: Path, what: str = "member") -> str:
    """Normalised relative path of ``name`` seen from ``base``; refuse one that escapes."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"refusing {archive}: {what} {name!r} is an absolute path")
    joined = posixpath.normpath(posixpath.join(base, name.replace("\\", "/")))
    if joined == ".." or joined.startswith("../"):
        raise ArchiveError(f"refusing {archive}: {what} {name!r} points outside the folder")
    return joined


def _extract_zip(archive: Path, scratch: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                _inside(info.filename, ".", archive)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ArchiveError(f"refusing {archive}: {info.filename!r} is a symlink")
            zipped.extractall(scratch)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"cannot extract {archive}: {exc}") from exc


def _merge_into(source: Path, dest: Path) -> None:
    """Move the tree under ``source`` into ``dest``, merging folders that already exist.

    LibriSpeech splits all unpack into ``LibriSpeech/``, so the second split must merge.
    Whole folders move with one rename, so a split folder appears complete or not at all.
    """
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)

