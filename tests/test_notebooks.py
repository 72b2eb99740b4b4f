"""Every notebook runs headless in a real kernel (nbclient, ipykernel) against the embedded
simulator: no cell raises, and every cell tagged ``chart`` shows an image."""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PNG = b"\x89PNG\r\n\x1a\n"


def test_there_are_the_four_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_order_books", "03_positions", "04_strategy"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_draws(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVEST_TOKEN", raising=False)  # the embedded simulator, whatever the machine
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / path.name
    shutil.copy(path, work)  # the notebook runs where it may write (the strategy's recording)
    notebook = nbformat.read(work, as_version=4)
    began = time.monotonic()
    # Raises CellExecutionError, with the cell and its traceback, on any error cell.
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seconds = time.monotonic() - began
    charts = [cell for cell in notebook.cells if "chart" in cell.metadata.get("tags", [])]
    assert charts, "every notebook has a chart"
    for cell in charts:
        images = [out["data"]["image/png"] for out in cell.outputs if "image/png" in out.get("data", {})]
        assert images, f"the chart cell shows no image:\n{cell.source}"
        assert all(base64.b64decode(image).startswith(PNG) for image in images)
    assert seconds < 120
