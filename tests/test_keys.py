"""API keys from the command line: list and revoke, seen at once by a running server process
(the request path reads keys and connections from the database on every request)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx2

from alloy_oauth.crypto import new_key
from tests.support.servers import free_port
from tests.test_two_processes import BIN, serve


def cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def shared_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
    env.update(ALLOY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
               ALLOY_ENCRYPTION_KEYS=new_key("keys"),
               ALLOY_PUBLIC_URL=f"http://127.0.0.1:{port}")
    return env


def test_a_revoked_key_is_refused_by_the_running_server_at_once(tmp_path: Path) -> None:
    port = free_port()
    env = shared_env(tmp_path, port)
    created = cli(tmp_path, env, "keys", "create", "--name", "first")
    first = created.stdout.strip()
    account = created.stderr.split("account: ", 1)[1].split()[0]
    second = cli(tmp_path, env, "keys", "create", "--name", "second",
                 "--account", account).stdout.strip()
    with serve(port, env, tmp_path) as url:
        def status(key: str) -> int:
            return httpx2.get(f"{url}/users", headers={"Authorization": f"Bearer {key}"},
                              timeout=10).status_code

        assert status(first) == 200 and status(second) == 200
        listed = cli(tmp_path, env, "keys", "list", "--account", account)
        assert listed.returncode == 0
        lines = listed.stdout.splitlines()
        assert len(lines) == 2 and all(line.endswith("active") for line in lines)
        assert first not in listed.stdout and second not in listed.stdout  # never the key
        assert first[:10] in lines[0] and "name=first" in lines[0]

        revoked = cli(tmp_path, env, "keys", "revoke", first[:10])
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked=" in revoked.stdout and first not in revoked.stdout + revoked.stderr

        # The very next request, on the process that checked the key a moment ago.
        answer = httpx2.get(f"{url}/users", headers={"Authorization": f"Bearer {first}"})
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_api_key"
        assert status(second) == 200
        listed = cli(tmp_path, env, "keys", "list").stdout.splitlines()
        assert [line.rsplit(" ", 1)[-1].split("=")[0] for line in listed] == ["revoked",
                                                                             "active"]


def test_revoking_an_unknown_key_names_the_problem_and_changes_nothing(tmp_path: Path) -> None:
    env = shared_env(tmp_path, free_port())
    key = cli(tmp_path, env, "keys", "create", "--name", "only").stdout.strip()
    before = cli(tmp_path, env, "keys", "list").stdout
    for ref, shown in (("ak_nothere", "ak_nothere"), ("key_unknown", "key_unknown"),
                       (key, f"{key[:10]}...")):  # the whole key is no reference, nor echoed
        result = cli(tmp_path, env, "keys", "revoke", ref)
        assert result.returncode == 1
        assert f"API key not found: no key with id or prefix '{shown}'" in result.stderr
        assert key not in result.stderr + result.stdout
    assert cli(tmp_path, env, "keys", "list").stdout == before
