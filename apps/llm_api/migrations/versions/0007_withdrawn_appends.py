"""Withdrawn appends: a response's append that response-api took back stays out.

response-api withdraws a response's items (or the new conversation it made for it) when the response
could not be stored; a delivery of that append still in flight must then be refused, not store the
items again. One row per (user, conversation public id, key; an empty key for a withdrawn
conversation as a whole), kept for a day (see `ResponseWrites.WITHDRAWN_KEEP`); no foreign key,
since it must outlive a withdrawn conversation.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "withdrawn_appends",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("append_key", sa.String(64), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "conversation_id", "append_key"),
    )
    op.create_index("ix_withdrawn_appends_withdrawn_at", "withdrawn_appends", ["withdrawn_at"])


def downgrade() -> None:
    op.drop_index("ix_withdrawn_appends_withdrawn_at", table_name="withdrawn_appends")
    op.drop_table("withdrawn_appends")
