"""The notebooks run: their code cells, in order, as one asyncio program against the simulator."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVEST_TOKEN", raising=False)  # the embedded simulator, whatever the machine
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    # Jupyter allows top-level await: run the cells as the body of one coroutine.
    namespace: dict[str, object] = {}
    exec(
        compile(
            "async def notebook():\n" + textwrap.indent(code, "    ") + "\n    return locals()\n",
            str(path),
            "exec",
        ),
        namespace,
    )
    variables = asyncio.run(namespace["notebook"]())  # type: ignore[operator]
    client = variables.get("client")
    assert client is None or client._closed  # a notebook cleans up after itself


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS
