"""Projects, and the project a conversation belongs to.

A conversation names its project by public id; deleting a project sets it to NULL (the conversations
stay, detached), which the foreign key does in the same statement.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("public_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("public_id", name="uq_projects_public_id"),
        sa.UniqueConstraint("user_id", "name", name="uq_projects_user_id_name"),
    )
    op.create_index("ix_projects_user_id_id", "projects", ["user_id", "id"])
    op.add_column("conversations", sa.Column("project_id", sa.String(64), nullable=True))
    op.create_foreign_key(
        "fk_conversations_project_id_projects",
        "conversations",
        "projects",
        ["project_id"],
        ["public_id"],
        ondelete="SET NULL",
    )
    # The `?project_id=` list filter, and the foreign key's own lookups when a project is deleted.
    op.create_index("ix_conversations_project_id_id", "conversations", ["project_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_project_id_id", table_name="conversations")
    op.drop_constraint("fk_conversations_project_id_projects", "conversations", type_="foreignkey")
    op.drop_column("conversations", "project_id")
    op.drop_index("ix_projects_user_id_id", table_name="projects")
    op.drop_table("projects")
