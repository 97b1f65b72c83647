"""Settings come from the environment and a `.env` file in the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from alloy_oauth.settings import load_settings


def test_env_file_and_environment_are_read_with_environment_winning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ALLOY_PUBLIC_URL=http://localhost:9000/\n"
        "ALLOY_CONNECTOR_GOOGLE_DRIVE_CLIENT_ID=from-file\n"
        "ALLOY_CONNECTOR_GOOGLE_DRIVE_CLIENT_SECRET=file-secret\n"
        "ALLOY_ALLOWED_REDIRECT_URIS=https://a.example/cb, https://b.example/*\n")
    monkeypatch.setenv("ALLOY_CONNECTOR_GOOGLE_DRIVE_CLIENT_ID", "from-env")
    settings = load_settings()
    assert settings.public_url == "http://localhost:9000"
    assert settings.connector_setting("google-drive", "CLIENT_ID") == "from-env"
    assert settings.connector_setting("google-drive", "CLIENT_SECRET") == "file-secret"
    assert settings.connector_setting("notion", "CLIENT_ID") is None
    assert settings.redirect_allow_list == ("https://a.example/cb", "https://b.example/*")
    assert "file-secret" not in repr(settings)


def test_production_settings_list_what_stops_the_server(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALLOY_ENV", "production")
    problems = load_settings().problems()
    assert any("ALLOY_ENCRYPTION_KEYS" in p for p in problems)
    assert any("https" in p for p in problems)
    monkeypatch.setenv("ALLOY_PUBLIC_URL", "https://connect.example.com")
    monkeypatch.setenv("ALLOY_ENCRYPTION_KEYS", "k1:" + "A" * 43)
    assert load_settings().problems() == []


def test_unknown_env_value_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALLOY_ENV", "staging")
    with pytest.raises(ValueError, match="env"):
        load_settings()
