"""The `auth_configs` table: an account's own OAuth app for a connector."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from alloy_oauth.store.base import Base
from alloy_oauth.store.models import UTCDateTime, utcnow


class AuthConfig(Base):
    """Client credentials an account brings for one connector; the secret is encrypted."""

    __tablename__ = "auth_configs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            index=True)
    connector_id: Mapped[str] = mapped_column(String(100))
    client_id: Mapped[str] = mapped_column(Text)
    client_secret_enc: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def secret_context(auth_config_id: str) -> str:
    """The encryption context of an auth config's client secret (binds it to its row)."""
    return f"authcfg:{auth_config_id}:secret"
