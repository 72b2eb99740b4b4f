"""The house's rules, checked: docs/architecture.md says what setup.cfg enforces, every package has a
room, and market-data kind names are written in one place only."""

from __future__ import annotations

import configparser
import io
import pkgutil
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import rxinvest
from rxinvest.model import Kind

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rxinvest"


def contracts() -> tuple[dict[str, int], dict[str, set[str]]]:
    """From setup.cfg: each package's layer (1 = bottom), and the packages each may never import."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    layers = [line.strip() for line in config["importlinter:contract:layers"]["layers"].splitlines()]
    level = {
        name.strip(): len(layers) - i for i, line in enumerate(layers) if line for name in line.split("|")
    }
    never: dict[str, set[str]] = {}
    for section in config.sections():
        if config[section].get("type") != "forbidden":
            continue
        sources = config[section]["source_modules"].split()
        forbidden = {
            name.removeprefix("rxinvest.")
            for name in config[section]["forbidden_modules"].split()
            if name.startswith("rxinvest.")
        }
        for source in sources:
            never.setdefault(source.removeprefix("rxinvest."), set()).update(forbidden)
    return level, never


def documented() -> dict[str, tuple[int, set[str] | None, set[str]]]:
    """From docs/architecture.md: package -> (layer, may import or None for 'every layer below', never)."""
    rows = {}
    for line in (ROOT / "docs/architecture.md").read_text().splitlines():
        match = re.match(r"\| (\d+) \| `rxinvest/(\w+)(?:/|\.py)` \|.*\|(.*)\|(.*)\|$", line)
        if not match:
            continue
        layer, name, may, never = match.groups()
        words = lambda text: {w.strip() for w in text.split(",") if w.strip()}  # noqa: E731
        may = may.strip()
        rows[name] = (int(layer), None if may == "every layer below" else words(may), words(never))
    return rows


def test_the_architecture_table_is_what_the_contracts_enforce() -> None:
    level, never = contracts()
    table = documented()
    assert {name: row[0] for name, row in table.items()} == level
    for name, (layer, may, forbidden) in table.items():
        assert forbidden == never.get(name, set()), name
        below = {other for other, other_layer in level.items() if other_layer < layer}
        if may is None:
            assert not forbidden, name
        else:
            assert may == below - forbidden, name


def test_every_package_and_top_module_has_a_room() -> None:
    level, _ = contracts()
    children = {info.name for info in pkgutil.iter_modules(rxinvest.__path__)}
    assert children == set(level)


def _string_literals(path: Path) -> list[tuple[int, str]]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    out = []
    for token in tokens:
        if token.type == tokenize.STRING and not token.string.startswith(('"""', "'''", 'f"', "f'")):
            out.append((token.start[0], token.string[1:-1]))
    return out


def test_kind_names_are_written_only_in_the_vocabulary() -> None:
    names = {kind.value for kind in Kind}
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "model" / "kinds.py"
        for line, text in _string_literals(path)
        if text in names
    ]
    assert not found


def test_a_derived_class_with_a_timedelta_does_not_reach_the_codec() -> None:
    """A derived event (here, with a timedelta field, which the wire has no form for) added next to the
    operators' types, even exported from rxinvest.model, leaves the codec's import and work alone."""
    script = """
import attrs, datetime
import rxinvest.derived as derived, rxinvest.model as model

@attrs.frozen(kw_only=True)
class Window:
    length: datetime.timedelta
    opened: datetime.datetime | None = None

derived.Window = Window
derived.__all__ = [*derived.__all__, "Window"]
model.Window = Window
model.__all__.append("Window")

import rxinvest.wire as wire
book = wire.decode('{"orderbook": {"figi": "X", "depth": 1}}', stream="MarketDataStream")
assert book == model.OrderBook(figi="X", depth=1), book
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
