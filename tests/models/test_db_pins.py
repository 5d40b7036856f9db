"""Tortoise is pinned exactly where vidgen.db relies on its internals, and checked at import."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vidgen import db, pins
from vidgen.graphql.compiled import pins as compiled_pins

ROOT = Path(__file__).resolve().parents[2]


def _dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for spec in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)", spec)
        assert match is not None, spec
        found[match.group(1).lower()] = match.group(2).strip()
    return found


def test_every_checked_library_is_pinned_exactly_in_pyproject() -> None:
    dependencies = _dependencies()
    for name, version in {**db.PINNED, **compiled_pins.PINNED}.items():
        assert dependencies[name] == f"=={version}", name


def test_the_installed_tortoise_is_the_pinned_one() -> None:
    pins.check(db.PINNED, module="vidgen.db", relies_on="Tortoise")


def test_another_tortoise_fails_with_a_clear_error() -> None:
    with pytest.raises(pins.VersionMismatch) as raised:
        pins.check(
            db.PINNED, module="vidgen.db", relies_on="Tortoise", installed={"tortoise-orm": "1.2.0"}
        )
    message = str(raised.value)
    assert "vidgen.db relies on Tortoise" in message
    assert "tortoise-orm 1.2.0 (pinned: 1.1.9)" in message
    assert "pip install -e ." in message
    with pytest.raises(pins.VersionMismatch, match=r"tortoise-orm \(missing\)"):
        pins.check(db.PINNED, module="vidgen.db", relies_on="Tortoise", installed={})


def test_importing_vidgen_db_with_another_tortoise_fails(tmp_path: Path) -> None:
    """In a fresh interpreter whose metadata reports another Tortoise version, importing
    vidgen.db raises the mismatch before any Tortoise internals are used."""
    script = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "m.version = lambda name: '1.2.0' if name == 'tortoise-orm' else real(name)\n"
        "try:\n"
        "    import vidgen.db\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.startswith("VersionMismatch vidgen.db relies on"), out
    assert "tortoise-orm 1.2.0 (pinned: 1.1.9)" in out
