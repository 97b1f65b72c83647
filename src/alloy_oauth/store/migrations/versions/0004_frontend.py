"""frontend: SDK sessions of the hosted connect pages

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alloy_oauth.store.models

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sdk_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("connector_id", sa.String(length=100), nullable=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("auth_config_id", sa.String(length=40), nullable=True),
        sa.Column("replaces_connection_id", sa.String(length=40), nullable=True),
        sa.Column("parent_id", sa.String(length=40), nullable=True),
        sa.Column("parent_token_enc", sa.Text(), nullable=True),
        sa.Column("flow_state_hash", sa.String(length=64), nullable=True),
        sa.Column("credential_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=100), nullable=True),
        sa.Column("error_description", sa.Text(), nullable=True),
        sa.Column("expires_at", alloy_oauth.store.models.UTCDateTime(timezone=True),
                  nullable=False),
        sa.Column("launched_at", alloy_oauth.store.models.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column("finished_at", alloy_oauth.store.models.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column("created_at", alloy_oauth.store.models.UTCDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name=op.f("fk_sdk_sessions_account_id_accounts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_sdk_sessions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sdk_sessions")),
        sa.UniqueConstraint("flow_state_hash", name=op.f("uq_sdk_sessions_flow_state_hash")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sdk_sessions_token_hash")),
    )
    with op.batch_alter_table("sdk_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sdk_sessions_account_id"), ["account_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_sdk_sessions_expires_at"), ["expires_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sdk_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sdk_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_sdk_sessions_account_id"))
    op.drop_table("sdk_sessions")
