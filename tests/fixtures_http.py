"""Test helpers for downloads: a local HTTP server with Range support and fault injection,
and a tiny corpus in the exact LibriSpeech layout packed the way OpenSLR packs it.

The stdlib ``SimpleHTTPRequestHandler`` ignores Range, so resuming could not be tested with
it. This server binds 127.0.0.1 on a free port, serves in-memory files, records every
request, and can cut the connection after N body bytes to imitate a dropped download.
"""
from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SAMPLE_RATE = 16000
SPEAKERS = ((19, 198), (26, 495))          # (speaker, chapter) pairs, LibriSpeech-style ids
UTTERANCES_PER_CHAPTER = 2


class FileServer(ThreadingHTTPServer):
    """In-memory files over HTTP with Range, plus switches to misbehave."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, str | None]] = []
        self.ignore_range = False
        self.cut_after: int | None = None   # body bytes sent before hanging up ...
        self.cuts_left = 0                  # ... on this many of the next requests

    def url(self, name: str = "") -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{name}"


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # a stuck client cannot hold a test open

    def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        server: FileServer = self.server  # type: ignore[assignment]
        requested = self.headers.get("Range")
        server.requests.append({"path": self.path, "range": requested})
        data = server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", requested or "")
        if match and not server.ignore_range:
            start, status = int(match[1]), 206
            end = min(int(match[2]), end) if match[2] else end
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if server.cut_after is not None and server.cuts_left > 0:
            server.cuts_left -= 1
            self.wfile.write(body[:server.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        """Keep test output clean."""


@pytest.fixture
def file_server():
    """A running ``FileServer``; shut down and joined at teardown."""
    server = FileServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(name: str = "x") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def write_librispeech_split(root: Path, split: str) -> list[Path]:
    """Write ``root/LibriSpeech/<split>/<spk>/<chap>/...`` with FLAC, transcripts and the
    SPEAKERS.TXT/CHAPTERS.TXT files every OpenSLR archive carries; return the FLAC paths."""
    base = root / "LibriSpeech"
    flacs = []
    for speaker, chapter in SPEAKERS:
        folder = base / split / str(speaker) / str(chapter)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(UTTERANCES_PER_CHAPTER):
            utt = f"{speaker}-{chapter}-{index:04d}"
            seconds = 0.2 + 0.1 * index
            t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
            wave = 0.3 * np.sin(2 * np.pi * (220 + 40 * index) * t)
            sf.write(folder / f"{utt}.flac", wave.astype(np.float32), SAMPLE_RATE)
            lines.append(f"{utt} HELLO WORLD NUMBER {index}\n")
            flacs.append(folder / f"{utt}.flac")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    (base / "SPEAKERS.TXT").write_text(
        "".join(f"{spk:<4} | F | {split} | 1.00 | Reader {spk}\n" for spk, _ in SPEAKERS))
    (base / "CHAPTERS.TXT").write_text(
        "".join(f"{chap:<6} | {spk:<4} | {split} | 1.00 | 1 | Book | Project\n"
                for spk, chap in SPEAKERS))
    return flacs


def librispeech_archive(tmp_path: Path, split: str) -> bytes:
    """The bytes of ``<split>.tar.gz`` holding ``LibriSpeech/<split>/...``, as OpenSLR ships it."""
    source = tmp_path / f"source-{split}"
    write_librispeech_split(source, split)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "LibriSpeech", arcname="LibriSpeech")
    return buffer.getvalue()


def checksums(data: bytes) -> dict[str, str | int]:
    """Keyword arguments for ``download``/``fetch`` that match ``data``."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(),
            "size": len(data)}
