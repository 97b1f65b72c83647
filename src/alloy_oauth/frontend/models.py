"""The table of the hosted pages: one row per SDK session (a connect attempt or a
"my connections" visit). All of its state lives here, so any server process can serve any step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from alloy_oauth.store.base import Base
from alloy_oauth.store.models import UTCDateTime, account_fk, utcnow


class SdkSession(Base):
    """Started by `POST /sdk/sessions` (JWT); its outcome is set once, by one conditional UPDATE.

    status: pending (page shown) -> launched (user went to the provider) -> succeeded | failed |
    cancelled. `kind` "manage" rows are the "my connections" page and stay pending.
    """

    __tablename__ = "sdk_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The secret of the hosted page's URL (`?token=`), hashed.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(account_fk(), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    connector_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The opener's origin (from the browser's Origin header): the only postMessage target.
    origin: Mapped[str] = mapped_column(Text)
    # popup | redirect | page (a reconnect started from the "my connections" page)
    mode: Mapped[str] = mapped_column(String(20))
    return_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The account's own OAuth app for the connector (`authConfigId`), if the SDK named one.
    auth_config_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    replaces_connection_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    parent_token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The `state` this session's flow was started with, hashed: finds the row on return.
    flow_state_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    credential_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    connection_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
