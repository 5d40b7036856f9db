"""Settings: embedded defaults, the generated secret, and deploy files that name real knobs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vidgen import errors
from vidgen.settings import Settings, known_env_vars

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_defaults(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path)
    assert s.resolved_database_url == f"sqlite://{(tmp_path / 'vidgen.sqlite3').resolve()}"
    assert s.redis_url is None and s.is_sqlite and s.run_embedded_worker
    assert s.resolved_media_root == (tmp_path / "media").resolve()
    assert s.port == 8000


def test_reads_vidgen_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDGEN_PORT", "9001")
    monkeypatch.setenv("VIDGEN_PROVIDER_CONCURRENCY", "runway=2,fal=4")
    monkeypatch.setenv("VIDGEN_WS_ALLOWED_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("VIDGEN_SIGNUP_ENABLED", "false")
    s = Settings(_env_file=None)
    assert s.port == 9001
    assert s.provider_concurrency == {"runway": 2, "fal": 4}
    assert s.ws_allowed_origins == ["https://a.example", "https://b.example"]
    assert s.signup_enabled is False


def test_embedded_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(_env_file=None, data_dir=tmp_path).resolved_secret_key
    second = Settings(_env_file=None, data_dir=tmp_path).resolved_secret_key
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_postgres_without_secret_is_a_clear_error(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path, database_url="postgres://u@h/db")
    with pytest.raises(errors.ConfigurationError, match="VIDGEN_SECRET_KEY"):
        s.check()
    assert not (tmp_path / "secret_key").exists()
    Settings(
        _env_file=None, data_dir=tmp_path, database_url="postgres://u@h/db", secret_key="k"
    ).check()


def test_unknown_database_scheme_is_refused(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=tmp_path, database_url="mysql://x", secret_key="k")
    with pytest.raises(errors.ConfigurationError, match="VIDGEN_DATABASE_URL"):
        s.check()


def test_docker_compose_sets_only_known_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    names: set[str] = set()
    envs = [compose.get("x-vidgen-env", {})]
    envs += [svc.get("environment") or {} for svc in compose["services"].values()]
    for env in envs:
        items = env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
        names |= {k for k in items if k.startswith("VIDGEN_")}
    dockerfile = (ROOT / "Dockerfile").read_text()
    names |= set(re.findall(r"\b(VIDGEN_[A-Z0-9_]+)=", dockerfile))
    assert names, "compose file sets no VIDGEN_ variable?"
    unknown = names - known_env_vars()
    assert not unknown, f"docker-compose/Dockerfile set unknown settings: {sorted(unknown)}"


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import sys

    import pydantic

    from vidgen import eventloop

    async def loop_kind() -> str:
        return type(asyncio.get_running_loop()).__module__.partition(".")[0]

    assert Settings(_env_file=None).event_loop == "auto"
    assert eventloop.run(loop_kind()) == "uvloop"  # installed with uvicorn[standard]
    assert eventloop.run(loop_kind(), "asyncio") == "asyncio"
    monkeypatch.setenv("VIDGEN_EVENT_LOOP", "tokio")
    with pytest.raises(pydantic.ValidationError):
        Settings(_env_file=None)
    # Without uvloop: auto falls back, an explicit uvloop is a clear error.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert eventloop.run(loop_kind()) == "asyncio"
    coro = loop_kind()
    with pytest.raises(errors.ConfigurationError, match="uvloop is not installed"):
        eventloop.run(coro, "uvloop")
    assert coro.cr_frame is None  # closed, not left pending
