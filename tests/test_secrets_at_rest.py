"""Encryption at rest: AES-GCM with key ids, rotation, records bound to their ciphertext."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from alloy_oauth.crypto import (
    DecryptionError,
    EncryptionKeyError,
    SecretBox,
    load_or_create_key_file,
    new_key,
    parse_keys,
)
from alloy_oauth.runtime import encryption_box
from alloy_oauth.settings import Settings
from tests.conftest import Alloy
from tests.support.browser import HttpBrowser

StartAlloy = Callable[..., contextlib.AbstractContextManager[Alloy]]


def test_value_encrypted_with_an_old_key_opens_after_rotation() -> None:
    old, new = new_key("k1"), new_key("k2")
    sealed = SecretBox(parse_keys(old)).encrypt("tok", "conn:1:access")
    rotated = SecretBox(parse_keys(f"{new},{old}"))
    assert rotated.decrypt(sealed, "conn:1:access") == "tok"
    assert rotated.needs_rotation(sealed)
    resealed = rotated.encrypt("tok", "conn:1:access")
    assert resealed.startswith("v1.k2.") and not rotated.needs_rotation(resealed)


def test_ciphertext_moved_to_another_record_does_not_open() -> None:
    box = SecretBox(parse_keys(new_key("k1")))
    sealed = box.encrypt("tok", "conn:1:access")
    with pytest.raises(DecryptionError):
        box.decrypt(sealed, "conn:2:access")


def test_value_from_an_unknown_key_names_the_key_id() -> None:
    sealed = SecretBox(parse_keys(new_key("gone"))).encrypt("tok", "c")
    with pytest.raises(DecryptionError, match="gone"):
        SecretBox(parse_keys(new_key("k1"))).decrypt(sealed, "c")


@pytest.mark.parametrize("spec,message", [
    ("nokid", "must look like"),
    ("k1:not-base64!!", "base64"),
    ("k1:AAAA", "32 bytes"),
    ("", "no encryption key"),
])
def test_malformed_encryption_keys_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError, match=message):
        parse_keys(spec)


def test_repr_of_box_and_settings_shows_no_key_material() -> None:
    key = new_key("k1")
    material = key.split(":")[1]
    assert material not in repr(SecretBox(parse_keys(key)))
    assert material not in repr(Settings(encryption_keys=key))


def _make_key_file(path: str, out: multiprocessing.Queue[str]) -> None:
    out.put(load_or_create_key_file(path))


def test_development_key_file_is_shared_by_processes_started_together(tmp_path: Path) -> None:
    path = str(tmp_path / "dev.key")
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_make_key_file, args=(path, out)) for _ in range(4)]
    for p in procs:
        p.start()
    keys = {out.get(timeout=30) for _ in procs}
    for p in procs:
        p.join()
    assert len(keys) == 1
    assert (tmp_path / "dev.key").stat().st_mode & 0o077 == 0


def test_production_requires_encryption_keys() -> None:
    with pytest.raises(ValueError, match="ALLOY_ENCRYPTION_KEYS"):
        encryption_box(Settings(env="production", public_url="https://x.example"))


async def test_rotating_keys_keeps_existing_connections_readable(start_alloy: StartAlloy,
                                                                 tmp_path: Path) -> None:
    old = new_key("old1")
    with start_alloy(encryption_keys=old) as alloy:
        async with alloy.api() as api, HttpBrowser() as browser:
            started = (await api.post("/connectors/sandbox/credentials", json={
                "credentialType": "oauth2",
                "redirectUri": "http://localhost:3999/cb"})).json()
            consent = await browser.goto(started["oauthUrl"], stop_at="http://localhost:3999")
            assert isinstance(consent, httpx2.Response)
            back = await browser.submit_form(consent, fields={"decision": "allow"},
                                             stop_at="http://localhost:3999")
            assert isinstance(back, httpx2.URL)
            code = back.params["code"]
            conn = (await api.post("/connectors/sandbox/credentials/callback",
                                   json={"code": code})).json()["connectionId"]
            before = (await api.get(f"/connections/{conn}/token")).json()["accessToken"]
    # Same database, a new primary key in front of the old one.
    db_url = alloy.settings.database_url
    with start_alloy(encryption_keys=f"{new_key('new1')},{old}", database_url=db_url) as again:
        async with httpx2.AsyncClient(base_url=again.base_url, headers=alloy.headers) as api:
            token = await api.get(f"/connections/{conn}/token")
            assert token.status_code == 200 and token.json()["accessToken"] == before
            # A refresh stores the new tokens under the new primary key.
            fresh = await api.get(f"/connections/{conn}/token", params={"forceRefresh": "true"})
            assert fresh.status_code == 200, fresh.text
            assert fresh.json()["accessToken"] != before
    import sqlite3
    with contextlib.closing(sqlite3.connect(alloy.db_path)) as db:
        access, refresh = db.execute("SELECT access_token_enc, refresh_token_enc "
                                     "FROM connections").fetchone()
    assert access.startswith("v1.new1.") and refresh.startswith("v1.new1.")
