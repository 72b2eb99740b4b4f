"""Every Python block of the README runs as pasted (in a fresh interpreter, against the embedded
simulator, with no token in the environment)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_the_readme_block_runs_as_pasted(code: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INVEST_TOKEN"}
    # the rxinvest of this tree, not whichever one is installed
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(README.parent), env.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if "input(" in code:  # a block that waits for Enter gets it after a few seconds of running
        time.sleep(3)
    try:
        out, err = process.communicate(input="\n", timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    if "subscribe(print)" in code:  # the live example shows something within its few seconds
        assert out.strip(), err[-3000:]


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3
