"""Run a benchmark against this tree and against another revision, interleaved, in one run.

Run: ``.venv/bin/python benchmarks/against.py REV [--rounds 3] -- benchmarks/decode.py --rounds 5``.

The machine's speed drifts, so a comparison is only fair inside one run: the script's own file (from
this tree) runs alternately with ``rxinvest`` imported from REV (``git archive`` into a temporary
folder) and from this tree, REV first in odd rounds and second in even ones. Every line the script
prints is split into a label (its leading words) and its numbers; for each label and column the
medians over the rounds are shown side by side with their ratio (this tree / REV). Which way is
better depends on the column (time: lower; rate: higher): the script's own header says what each is.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")  # 44,500 is one number


def extract(revision: str, into: Path) -> None:
    """The ``rxinvest`` package of ``revision``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "rxinvest"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def run(script: list[str], package_root: Path, timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package_root), str(ROOT / "benchmarks")])}
    done = subprocess.run(
        [sys.executable, *script], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(script)} failed under {package_root}:\n{done.stderr[-2000:]}")
    return done.stdout


def rows(output: str) -> dict[str, list[float]]:
    """label -> numbers, for every line with a label and at least one number.

    The label is the line's text up to its first gap of two spaces (a table's first column).
    """
    out = {}
    for line in output.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) < 2:
            continue
        label, rest = parts
        numbers = NUMBER.findall(rest)
        if numbers:
            out[label.strip(" :|")] = [float(n.replace(",", "")) for n in numbers]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s REV [--rounds N] -- SCRIPT [ARGS ...]"
    )
    parser.add_argument("revision", help="the revision to compare with (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one script run may take")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    script = argv[cut + 1 :]
    if not script:
        parser.error("name the benchmark script after --")
    with tempfile.TemporaryDirectory(prefix="rxinvest-against-") as tmp:
        extract(args.revision, Path(tmp))
        trees = {args.revision: Path(tmp), "this tree": ROOT}
        samples: dict[str, dict[str, list[list[float]]]] = {name: defaultdict(list) for name in trees}
        header = ""
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for name in order:
                output = run(script, trees[name], args.timeout)
                header = header or output.splitlines()[0]
                for label, numbers in rows(output).items():
                    samples[name][label].append(numbers)
                print(f"round {round_ + 1}, {name}: done", file=sys.stderr)
    base, mine = (samples[name] for name in trees)
    print(f"{' '.join(script)}: medians of {args.rounds} rounds; ratio = this tree / {args.revision}")
    print(f"(the script's header: {header.strip()})")
    for label in mine:
        if label not in base:
            continue
        columns = min(len(row) for row in (*base[label], *mine[label]))
        cells = []
        for i in range(columns):
            old = statistics.median(row[i] for row in base[label])
            new = statistics.median(row[i] for row in mine[label])
            ratio = f"{new / old:.2f}" if old else "-"
            cells.append(f"{old:g} -> {new:g} ({ratio})")
        print(f"{label:<28} " + " | ".join(cells))


if __name__ == "__main__":
    main()
