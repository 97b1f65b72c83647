"""Accounts, their API keys (stored hashed) and their users."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alloy_oauth.crypto import random_token, sha256
from alloy_oauth.errors import Conflict, NotFound, Unauthorized
from alloy_oauth.ids import new_id
from alloy_oauth.store.models import Account, ApiKey, User, utcnow
from alloy_oauth.store.reads import Reader

KEY_PREFIX = "ak_"
# delete_user's hook: runs before, returns the step run inside the deleting transaction.
BeforeUserDeleted = Callable[[str], Awaitable[Callable[[AsyncSession], Awaitable[int]]]]


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an account, through one of its keys."""

    account_id: str
    key_id: str
    default_user_id: str


async def create_account_with_key(sessions: async_sessionmaker[AsyncSession], name: str,
                                  ) -> tuple[str, str]:
    """A new account with a default user and an API key. Returns (account id, plaintext key)."""
    key = KEY_PREFIX + random_token(32)
    async with sessions.begin() as db:
        account = Account(id=new_id("acct"), name=name, redirect_uris=[])
        db.add(account)
        await db.flush()
        db.add(User(id=new_id("user"), account_id=account.id, username="default",
                    full_name="Default user", is_default=True))
        db.add(ApiKey(id=new_id("key"), account_id=account.id, name=name,
                      key_hash=sha256(key), prefix=key[:10]))
    return account.id, key


async def add_key(sessions: async_sessionmaker[AsyncSession], account_id: str, name: str) -> str:
    """Another API key for an existing account; returns the plaintext key (shown once)."""
    key = KEY_PREFIX + random_token(32)
    async with sessions.begin() as db:
        if await db.get(Account, account_id) is None:
            raise NotFound(f"Account not found: '{account_id}'.", code="account_not_found")
        db.add(ApiKey(id=new_id("key"), account_id=account_id, name=name,
                      key_hash=sha256(key), prefix=key[:10]))
    return key


async def list_keys(sessions: async_sessionmaker[AsyncSession],
                    account_id: str | None = None) -> list[ApiKey]:
    """API keys (hashes only; never the key), oldest first; of one account when given."""
    query = select(ApiKey).order_by(ApiKey.created_at)
    if account_id:
        query = query.where(ApiKey.account_id == account_id)
    async with sessions() as db:
        return list((await db.execute(query)).scalars())


async def revoke_key(sessions: async_sessionmaker[AsyncSession], ref: str) -> ApiKey:
    """Revoke an API key by its id or its shown prefix (`ak_` and 7 more characters).
    From the commit on, every server process refuses it: keys are checked in the database
    on each request, never cached."""
    async with sessions.begin() as db:
        found = list((await db.execute(select(ApiKey).where(
            or_(ApiKey.id == ref, ApiKey.prefix == ref)))).scalars())
        if not found:
            # A whole key typed by mistake is not echoed: only what a prefix would show.
            shown = f"{ref[:10]}..." if ref.startswith(KEY_PREFIX) and len(ref) > 10 else ref
            raise NotFound(f"API key not found: no key with id or prefix '{shown}' "
                           "(`alloy-oauth keys list` shows them).", code="key_not_found")
        if len(found) > 1:
            raise Conflict(f"The prefix '{ref}' names {len(found)} keys: revoke by key id.",
                           code="ambiguous_key")
        key = found[0]
        if key.revoked_at is None:
            key.revoked_at = utcnow()
    return key


async def find_account(sessions: async_sessionmaker[AsyncSession], name: str) -> str | None:
    async with sessions() as db:
        return (await db.execute(
            select(Account.id).where(Account.name == name).order_by(Account.created_at)
        )).scalar()


# The API key given as the `key_hash` parameter (`sha256(key)`), not revoked: the one test of
# a key, here and in the token endpoint's joined read (connections.valid_token).
ACTIVE_KEY = (ApiKey.key_hash == bindparam("key_hash")) & ApiKey.revoked_at.is_(None)
_KEY_QUERY = (
    select(ApiKey.id, ApiKey.account_id, User.id)
    .join(User, (User.account_id == ApiKey.account_id) & User.is_default)
    .where(ACTIVE_KEY)
)


async def authenticate(reads: Reader, key: str) -> Principal:
    row = await reads.first(_KEY_QUERY, {"key_hash": sha256(key)})
    if row is None:
        raise Unauthorized(
            "Invalid API key: check the key in your Authorization: Bearer header "
            "(create one with `alloy-oauth keys create --name NAME`).",
            code="invalid_api_key",
        )
    return Principal(account_id=row[1], key_id=row[0], default_user_id=row[2])


def _user_filter(account_id: str, user_ref: str):  # type: ignore[no-untyped-def]
    return (User.account_id == account_id) & or_(User.id == user_ref, User.username == user_ref)


async def find_user(db: AsyncSession, account_id: str, user_ref: str) -> User:
    """A user of the account by id or username; 404 otherwise."""
    user = (await db.execute(select(User).where(_user_filter(account_id, user_ref)))).scalar()
    if user is None:
        raise NotFound(f"User not found: no user '{user_ref}' in this account "
                       "(create one with POST /users).", code="user_not_found")
    return user


async def create_user(sessions: async_sessionmaker[AsyncSession], account_id: str,
                      username: str, full_name: str | None) -> User:
    user = User(id=new_id("user"), account_id=account_id, username=username,
                full_name=full_name, is_default=False)
    try:
        async with sessions.begin() as db:
            db.add(user)
    except IntegrityError:
        raise Conflict(f"A user named '{username}' already exists in this account.",
                       code="user_exists") from None
    return user


async def list_users(sessions: async_sessionmaker[AsyncSession], account_id: str) -> list[User]:
    async with sessions() as db:
        return list((await db.execute(
            select(User).where(User.account_id == account_id).order_by(User.created_at)
        )).scalars())


async def delete_user(sessions: async_sessionmaker[AsyncSession], account_id: str,
                      user_ref: str, *, before: BeforeUserDeleted | None = None) -> int:
    """Delete a user of the account (never its default user).

    `before(user_id)` runs first, outside any transaction (revocation at providers), and gives
    back a step run inside the deleting transaction (deleting the user's connections with their
    events); its answer, the number of connections deleted, is returned (0 without `before`).
    """
    def refuse_default(user: User) -> None:
        if user.is_default:
            raise Conflict("The account's default user cannot be deleted.",
                           code="default_user")

    finish = None
    if before is not None:
        async with sessions() as db:
            user = await find_user(db, account_id, user_ref)
        refuse_default(user)
        finish = await before(user.id)
    async with sessions.begin() as db:
        user = await find_user(db, account_id, user_ref)
        refuse_default(user)
        deleted = await finish(db) if finish is not None else 0
        await db.delete(user)
    return deleted
