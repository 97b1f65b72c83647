"""The sandbox provider's state: grants, codes and tokens in the database, never in memory.

Every single-use step (redeeming a code, rotating a refresh token) is one conditional UPDATE
whose row count decides the winner, so several server processes sharing the database cannot
both use the same code or refresh token. Each write transaction starts with that UPDATE, which
on SQLite takes the write lock at once instead of upgrading a read lock (which can deadlock).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Update, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alloy_oauth.sandbox.authorize import AuthorizationRequest, parse_scope
from alloy_oauth.sandbox.config import SandboxConfig
from alloy_oauth.sandbox.errors import OAuthError, invalid_grant, invalid_token
from alloy_oauth.sandbox.models import (
    ACCESS,
    REFRESH,
    SandboxAuthorizationCode,
    SandboxGrant,
    SandboxToken,
)
from alloy_oauth.sandbox.pkce import verify_s256

ACCESS_TOKEN_PREFIX = "sbx_at_"
REFRESH_TOKEN_PREFIX = "sbx_rt_"


def hash_secret(value: str) -> str:
    """The SHA-256 hex digest under which a code or token is stored."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    scope: str

    def as_json(self) -> dict[str, Any]:
        """The successful token response of RFC 6749 section 5.1."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }


@dataclass(frozen=True)
class AccessInfo:
    """What a valid access token grants: whose account and which scopes."""

    client_id: str
    username: str
    scopes: tuple[str, ...]


async def _rowcount(session: AsyncSession, statement: Update) -> int:
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return cast("CursorResult[Any]", result).rowcount


class SandboxStore:
    """Issues, redeems, rotates and revokes the sandbox's codes and tokens."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: SandboxConfig) -> None:
        self._sessions = sessions
        self._config = config

    async def issue_code(self, request: AuthorizationRequest, username: str) -> str:
        """Record the user's consent as a new grant and return its authorization code."""
        now = self._config.now()
        code = secrets.token_urlsafe(32)
        grant_id = uuid.uuid4().hex
        async with self._sessions() as session, session.begin():
            session.add(
                SandboxGrant(
                    id=grant_id,
                    client_id=request.client_id,
                    username=username,
                    scope=request.scope,
                    created_at=now,
                )
            )
            await session.flush()
            session.add(
                SandboxAuthorizationCode(
                    code_hash=hash_secret(code),
                    grant_id=grant_id,
                    client_id=request.client_id,
                    redirect_uri=request.redirect_uri,
                    code_challenge=request.code_challenge,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self._config.code_ttl),
                )
            )
        return code

    async def redeem_code(
        self, client_id: str, code: str, redirect_uri: str, code_verifier: str | None
    ) -> IssuedTokens:
        """Exchange an authorization code (RFC 6749 4.1.3, RFC 7636 4.6) exactly once."""
        code_hash = hash_secret(code)
        now = self._config.now()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(SandboxAuthorizationCode, SandboxGrant)
                    .join(SandboxGrant, SandboxGrant.id == SandboxAuthorizationCode.grant_id)
                    .where(SandboxAuthorizationCode.code_hash == code_hash)
                )
            ).one_or_none()
        if row is None:
            raise invalid_grant("The authorization code is invalid.")
        stored, grant = row
        if stored.client_id != client_id:
            raise invalid_grant("The authorization code was issued to another client.")
        if stored.used_at is not None:
            await self._revoke_grant(grant.id)
            raise invalid_grant(
                "The authorization code was already used; the tokens issued from it are revoked."
            )
        if stored.expires_at <= now:
            raise invalid_grant("The authorization code expired.")
        if stored.redirect_uri != redirect_uri:
            raise invalid_grant("redirect_uri does not match the authorization request.")
        if stored.code_challenge is not None:
            if code_verifier is None:
                raise OAuthError("invalid_request", "Missing required parameter: code_verifier.")
            if not verify_s256(code_verifier, stored.code_challenge):
                raise invalid_grant("The code_verifier does not match the code_challenge.")
        elif code_verifier is not None:
            # RFC 9700 2.1.1: a verifier for a code issued without a challenge is a downgrade.
            raise invalid_grant("code_verifier given, but the authorization had no code_challenge.")
        if grant.revoked_at is not None:
            raise invalid_grant("The authorization was revoked.")

        scope = grant.scope
        async with self._sessions() as session, session.begin():
            won = await _rowcount(
                session,
                update(SandboxAuthorizationCode)
                .where(
                    SandboxAuthorizationCode.code_hash == code_hash,
                    SandboxAuthorizationCode.used_at.is_(None),
                )
                .values(used_at=now),
            )
            if won:
                tokens = self._add_tokens(session, grant.id, scope, scope, now)
            else:
                await self._revoke_grant_in(session, grant.id, now)
        if not won:
            raise invalid_grant(
                "The authorization code was already used; the tokens issued from it are revoked."
            )
        return tokens

    async def rotate_refresh_token(
        self, client_id: str, refresh_token: str, requested_scope: str | None
    ) -> IssuedTokens:
        """Refresh (RFC 6749 section 6) with rotation and reuse detection."""
        token_hash = hash_secret(refresh_token)
        now = self._config.now()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(SandboxToken, SandboxGrant)
                    .join(SandboxGrant, SandboxGrant.id == SandboxToken.grant_id)
                    .where(SandboxToken.token_hash == token_hash, SandboxToken.kind == REFRESH)
                )
            ).one_or_none()
        if row is None:
            raise invalid_grant("The refresh token is invalid.")
        stored, grant = row
        if grant.client_id != client_id:
            raise invalid_grant("The refresh token was issued to another client.")
        if stored.revoked_at is not None or grant.revoked_at is not None:
            raise invalid_grant("The refresh token was revoked.")
        if stored.used_at is not None:
            await self._revoke_grant(grant.id)
            raise invalid_grant(
                "The refresh token was already used; every token of this grant is revoked."
            )
        if stored.expires_at <= now:
            raise invalid_grant("The refresh token expired.")
        access_scope = stored.scope
        if requested_scope is not None:
            requested = parse_scope(requested_scope)
            granted = set(stored.scope.split())
            if requested is None or not set(requested) <= granted:
                raise OAuthError("invalid_scope", "The requested scope exceeds the granted scope.")
            access_scope = " ".join(requested)

        async with self._sessions() as session, session.begin():
            won = await _rowcount(
                session,
                update(SandboxToken)
                .where(
                    SandboxToken.token_hash == token_hash,
                    SandboxToken.used_at.is_(None),
                    SandboxToken.revoked_at.is_(None),
                )
                .values(used_at=now),
            )
            if won:
                tokens = self._add_tokens(session, grant.id, access_scope, stored.scope, now)
            else:
                await self._revoke_grant_in(session, grant.id, now)
        if not won:
            raise invalid_grant(
                "The refresh token was already used; every token of this grant is revoked."
            )
        return tokens

    async def revoke(self, client_id: str, token: str) -> None:
        """RFC 7009: revoke an access token, or a refresh token with its whole grant."""
        token_hash = hash_secret(token)
        now = self._config.now()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(SandboxToken.kind, SandboxGrant.id, SandboxGrant.client_id)
                    .join(SandboxGrant, SandboxGrant.id == SandboxToken.grant_id)
                    .where(SandboxToken.token_hash == token_hash)
                )
            ).one_or_none()
        if row is None:
            return
        kind, grant_id, owner = row
        if owner != client_id:
            # Another client's token: leave it alone and reveal nothing (RFC 7009 2.1, 2.2).
            return
        async with self._sessions() as session, session.begin():
            await _rowcount(
                session,
                update(SandboxToken)
                .where(SandboxToken.token_hash == token_hash, SandboxToken.revoked_at.is_(None))
                .values(revoked_at=now),
            )
            if kind == REFRESH:
                await self._revoke_grant_in(session, grant_id, now)

    async def access_info(self, access_token: str) -> AccessInfo:
        """What a bearer token grants, or `OAuthError` `invalid_token` (401)."""
        now = self._config.now()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(SandboxToken, SandboxGrant)
                    .join(SandboxGrant, SandboxGrant.id == SandboxToken.grant_id)
                    .where(
                        SandboxToken.token_hash == hash_secret(access_token),
                        SandboxToken.kind == ACCESS,
                    )
                )
            ).one_or_none()
        if row is None:
            raise invalid_token("The access token is invalid.")
        stored, grant = row
        if stored.revoked_at is not None or grant.revoked_at is not None:
            raise invalid_token("The access token was revoked.")
        if stored.expires_at <= now:
            raise invalid_token("The access token expired.")
        return AccessInfo(
            client_id=grant.client_id, username=grant.username, scopes=tuple(stored.scope.split())
        )

    def _add_tokens(
        self,
        session: AsyncSession,
        grant_id: str,
        access_scope: str,
        refresh_scope: str,
        now: datetime,
    ) -> IssuedTokens:
        access = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        refresh = REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)
        session.add_all(
            [
                SandboxToken(
                    token_hash=hash_secret(access),
                    grant_id=grant_id,
                    kind=ACCESS,
                    scope=access_scope,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self._config.access_token_ttl),
                ),
                SandboxToken(
                    token_hash=hash_secret(refresh),
                    grant_id=grant_id,
                    kind=REFRESH,
                    scope=refresh_scope,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self._config.refresh_token_ttl),
                ),
            ]
        )
        return IssuedTokens(
            access_token=access,
            refresh_token=refresh,
            expires_in=self._config.access_token_ttl,
            scope=access_scope,
        )

    async def _revoke_grant(self, grant_id: str) -> None:
        async with self._sessions() as session, session.begin():
            await self._revoke_grant_in(session, grant_id, self._config.now())

    @staticmethod
    async def _revoke_grant_in(session: AsyncSession, grant_id: str, now: datetime) -> None:
        await _rowcount(
            session,
            update(SandboxGrant)
            .where(SandboxGrant.id == grant_id, SandboxGrant.revoked_at.is_(None))
            .values(revoked_at=now),
        )
