"""auth configs: an account's own OAuth app per connector

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alloy_oauth.store.models

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_configs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("connector_id", sa.String(length=100), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_secret_enc", sa.Text(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", alloy_oauth.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", alloy_oauth.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_auth_configs_account_id_accounts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_configs")),
    )
    with op.batch_alter_table("auth_configs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_configs_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_configs_account_id"))
    op.drop_table("auth_configs")
