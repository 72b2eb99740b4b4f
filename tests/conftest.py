import contextlib
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, settings

# CI runs more examples; a developer's run stays quick. RXINVEST_HYPOTHESIS_PROFILE overrides.
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("RXINVEST_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Every token a simulator makes (rxinvest.sim.handshake): no file the suite writes may hold one.
_SIM_TOKEN = re.compile(rb"sim-(?:full|readonly)-[0-9a-f]{24}")


@pytest.fixture(scope="session", autouse=True)
def no_file_written_holds_a_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: every file under the session's temporary directory (recordings,
    notebooks' outputs, README runs ...), raw and, when it is gzip, zlib or zstd data, decompressed, is
    free of simulator tokens and of HTTP authorization headers."""
    yield
    found = []
    for path in Path(tmp_path_factory.getbasetemp()).rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        raw = path.read_bytes()
        texts = [raw]
        with contextlib.suppress(zlib.error):  # gzip or zlib data, whichever it is, or neither
            texts.append(zlib.decompressobj(47).decompress(raw))
        with contextlib.suppress(zstandard.ZstdError):  # zstd data (recordings), or not
            texts.append(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
        if any(_SIM_TOKEN.search(text) or b"Bearer " in text for text in texts):
            found.append(str(path))
    assert not found, f"files holding a token: {found}"
