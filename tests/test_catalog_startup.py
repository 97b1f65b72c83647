"""A malformed catalog or providers file stops the server at start, naming file, entry, field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alloy_oauth.crypto import new_key
from alloy_oauth.server.app import create_app
from alloy_oauth.settings import Settings
from tests.support.servers import free_port

BIN = Path(sys.executable).parent / "alloy-oauth"
BAD = ("acme:\n  name: Acme\n  authorization_url: https://acme.example/oauth/authorize\n"
       "  token_url: https://acme.example/oauth/token\n  scope_seperator: ','\n")


def refusal_to_start(tmp_path: Path, providers_file: Path) -> str:
    """What `create_app` says when it refuses to start with this providers file."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
                        encryption_keys=new_key("k1"), providers_file=str(providers_file),
                        key_file=str(tmp_path / "dev.key"))
    with pytest.raises(SystemExit) as stopped:
        create_app(settings)
    message = str(stopped.value.code)
    assert message.startswith("alloy-oauth cannot start")
    return message


def test_create_app_refuses_a_malformed_providers_file(tmp_path: Path) -> None:
    bad = tmp_path / "providers.yaml"
    bad.write_text(BAD)
    message = refusal_to_start(tmp_path, bad)
    assert str(bad) in message and "entry 'acme'" in message
    assert "field 'scope_seperator'" in message


def test_create_app_refuses_a_providers_file_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'a.db'}",
                        encryption_keys=new_key("k1"), providers_file=str(missing),
                        key_file=str(tmp_path / "dev.key"))
    with pytest.raises(SystemExit, match=r"nope\.yaml: cannot read"):
        create_app(settings)


def test_serve_stops_at_start_and_names_the_bad_entry(tmp_path: Path) -> None:
    bad = tmp_path / "providers.yaml"
    bad.write_text(BAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
    env.update(ALLOY_PROVIDERS_FILE=str(bad), ALLOY_ENCRYPTION_KEYS=new_key("k1"))
    result = subprocess.run([str(BIN), "serve", "--port", str(free_port())], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode != 0
    assert str(bad) in result.stderr and "entry 'acme'" in result.stderr
    assert "field 'scope_seperator'" in result.stderr
    assert "Traceback" not in result.stderr
