"""Conversation items remember which append stored them, so a repeated append stores nothing twice.

response-api appends a response's items with the response id as an idempotency key; a retry after a
lost answer finds the key already in the conversation and stores nothing.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversation_items", sa.Column("append_key", sa.String(64), nullable=True))
    op.create_index(
        "ix_conversation_items_conversation_id_append_key",
        "conversation_items",
        ["conversation_id", "append_key"],
        postgresql_where=sa.text("append_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversation_items_conversation_id_append_key", table_name="conversation_items")
    op.drop_column("conversation_items", "append_key")
