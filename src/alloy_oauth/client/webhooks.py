"""Checking that a webhook really comes from your alloy-oauth server.

The server signs each delivery with the secret shown when the webhook URL was set:
``Alloy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>``.
Verify against the raw request body (before any JSON parsing), and refuse old timestamps so a
captured delivery cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "Alloy-Signature"
DEFAULT_TOLERANCE = 300


class WebhookSignatureError(ValueError):
    """The signature is missing, malformed, wrong, or too old."""


def _parse(header: str) -> tuple[int, list[str]]:
    stamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                stamp = int(value)
            except ValueError:
                raise WebhookSignatureError("the signature's timestamp is not a number") from None
        elif key == "v1":
            signatures.append(value)
    if stamp is None or not signatures:
        raise WebhookSignatureError("the signature header has no 't=' or no 'v1=' part")
    return stamp, signatures


def check_webhook_signature(payload: bytes | str, signature_header: str | None, secret: str, *,
                            tolerance: float = DEFAULT_TOLERANCE,
                            now: float | None = None) -> None:
    """Raise `WebhookSignatureError` unless `signature_header` signs `payload` with `secret`
    within `tolerance` seconds of `now`."""
    if not signature_header:
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
    if not secret:
        raise WebhookSignatureError("no webhook secret given")
    body = payload.encode() if isinstance(payload, str) else payload
    stamp, signatures = _parse(signature_header)
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise WebhookSignatureError("the signature's timestamp is outside the tolerance")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, sig) for sig in signatures):
        raise WebhookSignatureError("the signature does not match the body and secret")


def verify_webhook_signature(payload: bytes | str, signature_header: str | None, secret: str, *,
                             tolerance: float = DEFAULT_TOLERANCE,
                             now: float | None = None) -> bool:
    """True when `signature_header` (the ``Alloy-Signature`` header) signs the raw `payload`
    with `secret`, within `tolerance` seconds of now."""
    try:
        check_webhook_signature(payload, signature_header, secret, tolerance=tolerance, now=now)
    except WebhookSignatureError:
        return False
    return True


def parse_webhook(payload: bytes | str, headers: Mapping[str, str], secret: str, *,
                  tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """The verified event (``{"id", "type", "createdAt", "data"}``) of a delivery; raises
    `WebhookSignatureError` when the signature does not hold."""
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    check_webhook_signature(payload, header, secret, tolerance=tolerance)
    try:
        event = json.loads(payload)
    except ValueError:
        raise WebhookSignatureError("the signed body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookSignatureError("the signed body is not a JSON object")
    return event
