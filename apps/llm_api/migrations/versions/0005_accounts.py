"""Accounts: browser login state, the local identity provider's tables, and guest upgrades.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def _at(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=_NOW)


def upgrade() -> None:
    op.add_column("users", _at("upgraded_at"))
    op.create_index("ix_users_upgraded_at", "users", ["upgraded_at"])
    # llm-api as an OpenID Connect client: one row per started browser login, deleted when used.
    op.create_table(
        "login_attempts",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("redirect_target", sa.String(2048), nullable=True),
        _at("created_at", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_login_attempts_expires_at", "login_attempts", ["expires_at"])
    # The local identity provider (local mode only; Keycloak keeps its own in a cluster).
    op.create_table(
        "local_accounts",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        _at("created_at", nullable=False),
        sa.UniqueConstraint("email", name="uq_local_accounts_email"),
    )
    op.create_table(
        "local_auth_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(255), nullable=True),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _at("used_at"),
    )
    op.create_table(
        "local_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=False),
        _at("created_at", nullable=False),
        _at("ended_at"),
    )
    op.create_table(
        "local_revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "local_revoked_tokens",
        "local_sessions",
        "local_auth_codes",
        "local_accounts",
        "login_attempts",
    ):
        op.drop_table(table)
    op.drop_index("ix_users_upgraded_at", table_name="users")
    op.drop_column("users", "upgraded_at")
