"""Shared by the recording and replay tests: no file a test writes may hold a token."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard


@pytest.fixture
def secrets(tmp_path: Path) -> Iterator[list[str]]:
    """The tokens the test used (it appends them); after the test, no file under ``tmp_path``
    holds one, raw or decompressed, nor an ``Authorization`` header."""
    used: list[str] = []
    yield used
    assert used, "the test registered its token"
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        texts = [raw]
        with contextlib.suppress(zlib.error):  # not gzip
            texts.append(zlib.decompressobj(31).decompress(raw))
        with contextlib.suppress(zstandard.ZstdError):  # not zstd
            texts.append(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
        for secret in used:
            for text in texts:
                assert secret.encode() not in text, f"{path.name} holds a token"
                assert b"Authorization" not in text and b"Bearer" not in text
