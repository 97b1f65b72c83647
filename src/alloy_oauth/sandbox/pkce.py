"""Proof Key for Code Exchange (RFC 7636), S256 only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

S256 = "S256"

# RFC 7636 4.1 and 4.2: 43 to 128 characters of the unreserved set.
_UNRESERVED_43_128 = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def is_valid_challenge(challenge: str) -> bool:
    return _UNRESERVED_43_128.fullmatch(challenge) is not None


def is_valid_verifier(verifier: str) -> bool:
    return _UNRESERVED_43_128.fullmatch(verifier) is not None


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_s256(verifier: str, challenge: str) -> bool:
    if not is_valid_verifier(verifier):
        return False
    return hmac.compare_digest(s256_challenge(verifier), challenge)
