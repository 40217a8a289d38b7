"""Settings, generated secrets and start-up checks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.preflight import check
from cluster.settings import ConfigError, Settings
from models.registry import Capability, configured_engines, engine_names

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve() / 'studio.db'}"
    assert settings.resolved_storage_url == f"file://{tmp_path.resolve() / 'storage'}"
    assert settings.ray_address is None
    assert configured_engines(settings)[Capability.video] == "animatic"


def test_env_prefix_and_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("STUDIO_PORT=9001\nSTUDIO_VOICE_ENGINE=openai\n")
    monkeypatch.setenv("STUDIO_PORT", "9002")
    settings = Settings(_env_file=env)
    assert settings.port == 9002
    assert settings.voice_engine == "openai"


def test_secrets_are_generated_once_private_and_stable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    key = settings.jwt_key()
    assert key == Settings(data_dir=tmp_path, _env_file=None).jwt_key()
    assert len(settings.token_key()) == 32
    for name in ("jwt.key", "token.key"):
        mode = stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode)
        assert mode == 0o600
    assert Settings(data_dir=tmp_path / "other", _env_file=None).jwt_key() != key


def test_given_secrets_win_and_are_not_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret="s" * 40, _env_file=None)
    assert settings.jwt_key() == b"s" * 40
    assert not (tmp_path / "secrets").exists()
    assert "s" * 40 not in repr(settings)


def test_unreachable_database_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
        _env_file=None,
    )
    with pytest.raises(ConfigError) as error:
        check(settings)
    assert error.value.setting == "STUDIO_DATABASE_URL"
    assert not (tmp_path / "var").exists()


def test_an_unknown_engine_names_the_setting_and_the_engines(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var", video_engine="sora", _env_file=None)
    with pytest.raises(ConfigError) as error:
        check(settings)
    assert error.value.setting == "STUDIO_VIDEO_ENGINE"
    assert "no video engine named 'sora'" in str(error.value)
    assert ", ".join(engine_names(Capability.video)) in str(error.value)
    assert not (tmp_path / "var").exists()


def test_unwritable_storage_folder(tmp_path: Path) -> None:
    """A file where the folder should be: unwritable even for root (CI runs as root)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    settings = Settings(
        data_dir=tmp_path / "var", storage_url=f"file://{blocker}/storage", _env_file=None
    )
    with pytest.raises(ConfigError) as error:
        check(settings)
    assert error.value.setting == "STUDIO_STORAGE_URL"
    assert "not writable" in str(error.value)


def test_cli_prints_one_clear_line_and_creates_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "var"),
        "STUDIO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "db", "upgrade"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("studio: configuration error: STUDIO_DATABASE_URL:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()
