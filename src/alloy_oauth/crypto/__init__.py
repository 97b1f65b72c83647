"""Secrets at rest: AES-256-GCM with key ids (rotation), and hashes for lookup-only secrets."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "v1"


class EncryptionKeyError(ValueError):
    """A malformed encryption key setting."""


class DecryptionError(ValueError):
    """Ciphertext that no configured key opens, or that was moved to another record."""


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key(kid: str | None = None) -> str:
    """A fresh key in the `ALLOY_ENCRYPTION_KEYS` format: `<key id>:<32 bytes, base64url>`."""
    return f"{kid or 'k' + secrets.token_hex(4)}:{_b64e(os.urandom(32))}"


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse `kid:base64,kid:base64`; the first key encrypts, all decrypt."""
    keys: list[tuple[str, bytes]] = []
    for n, item in enumerate(p.strip() for p in spec.split(",")):
        if not item:
            continue
        kid, sep, material = item.partition(":")
        if not sep or not kid or "." in kid:
            raise EncryptionKeyError(
                f"encryption key #{n + 1} must look like '<key id>:<base64 of 32 bytes>' "
                "(make one with `alloy-oauth keys encryption-key`)"
            )
        try:
            raw = _b64d(material)
        except ValueError as exc:
            raise EncryptionKeyError(f"encryption key '{kid}' is not valid base64") from exc
        if len(raw) != 32:
            raise EncryptionKeyError(f"encryption key '{kid}' must be 32 bytes, not {len(raw)}")
        keys.append((kid, raw))
    if not keys:
        raise EncryptionKeyError("no encryption key given")
    return keys


def load_or_create_key_file(path: str | Path) -> str:
    """The development key file: created once, atomically, so all local processes share it."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(new_key("dev") + "\n")
    for _ in range(50):  # another process may be between create and write
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)
    raise EncryptionKeyError(f"key file {path} is empty")


class SecretBox:
    """Encrypts strings to `v1.<kid>.<nonce+ciphertext>`; `context` binds a value to its record."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        self._primary_kid = keys[0][0]
        self._keys = {kid: AESGCM(raw) for kid, raw in keys}
        self._raw = dict(keys)

    def __repr__(self) -> str:
        return f"SecretBox(kids={list(self._keys)})"

    @property
    def primary_kid(self) -> str:
        return self._primary_kid

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._primary_kid].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}.{self._primary_kid}.{_b64e(nonce + sealed)}"

    def decrypt(self, token: str, context: str) -> str:
        try:
            prefix, kid, body = token.split(".", 2)
        except ValueError as exc:
            raise DecryptionError("not an encrypted value") from exc
        aead = self._keys.get(kid)
        if prefix != PREFIX or aead is None:
            raise DecryptionError(f"no configured key has id '{kid}'")
        raw = _b64d(body)
        try:
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("value does not open with its key and record") from exc

    def derive(self, label: str) -> str:
        """A stable secret derived from the primary key: same on every process of a deployment."""
        return hmac.new(self._raw[self._primary_kid], label.encode(), hashlib.sha256).hexdigest()

    def needs_rotation(self, token: str) -> bool:
        return token.split(".", 2)[1] != self._primary_kid


def sha256(value: str) -> str:
    """Lookup hash for high-entropy secrets (API keys, one-time tokens, codes, states)."""
    return hashlib.sha256(value.encode()).hexdigest()


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)

