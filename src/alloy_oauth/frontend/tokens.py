"""The browser SDK's JWT: issued to an app's backend, carried by the browser, one user only.

HS256 with a key derived from the deployment's primary encryption key (`box.derive`), so every
server process signs and verifies alike; rotating the primary key ends the tokens it signed
(they live one hour at most).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from alloy_oauth.accounts import find_user
from alloy_oauth.crypto import random_token
from alloy_oauth.errors import NotFound, Unauthorized
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import utcnow

AUDIENCE = "alloy-sdk"
TOKEN_TTL = timedelta(hours=1)
ALGORITHM = "HS256"
# Clock skew tolerated between the processes of one deployment.
LEEWAY = timedelta(seconds=30)
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class SdkUser:
    """Who an SDK request acts for: one user of one account, until `expires_at`."""

    account_id: str
    user_id: str
    expires_at: datetime


def _key(rt: Runtime) -> str:
    return rt.box.derive("sdk-jwt")


def issue_token(rt: Runtime, account_id: str, user_id: str) -> str:
    """A JWT for the browser SDK, valid `TOKEN_TTL`, for this user of this account only."""
    now = utcnow()
    return jwt.encode(
        {"sub": user_id, "acct": account_id, "iat": now, "nbf": now, "exp": now + TOKEN_TTL,
         "iss": rt.settings.public_url, "aud": AUDIENCE, "jti": random_token(12)},
        _key(rt), algorithm=ALGORITHM,
    )


def invalid_token(why: str) -> Unauthorized:
    return Unauthorized(
        f"Invalid SDK token: {why} Get a fresh one from your backend "
        "(GET /users/{userId}/token) and call alloy.authenticate() with it.",
        code="invalid_token")


def decode_token(rt: Runtime, token: str) -> SdkUser:
    """Check signature, audience, issuer and lifetime; no database access."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token("it is missing or too long.")
    try:
        claims = jwt.decode(
            token, _key(rt), algorithms=[ALGORITHM], audience=AUDIENCE,
            issuer=rt.settings.public_url, leeway=LEEWAY,
            options={"require": ["sub", "acct", "exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise invalid_token("it has expired (SDK tokens live one hour).") from None
    except jwt.PyJWTError:
        raise invalid_token("its signature, issuer or audience does not match.") from None
    sub, acct = claims.get("sub"), claims.get("acct")
    if not isinstance(sub, str) or not isinstance(acct, str) or not sub or not acct:
        raise invalid_token("it names no user.")
    iat = datetime.fromtimestamp(int(claims["iat"]), UTC)
    exp = datetime.fromtimestamp(int(claims["exp"]), UTC)
    if exp - iat > TOKEN_TTL + LEEWAY:  # never honour a longer life than we issue
        raise invalid_token("its lifetime is longer than this server issues.")
    return SdkUser(account_id=acct, user_id=sub, expires_at=exp)


async def verify_token(rt: Runtime, token: str) -> SdkUser:
    """`decode_token`, and the user must still exist in that account."""
    who = decode_token(rt, token)
    async with rt.sessions() as db:
        try:
            await find_user(db, who.account_id, who.user_id)
        except NotFound:
            raise invalid_token("its user no longer exists.") from None
    return who
