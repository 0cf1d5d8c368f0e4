"""The event log of streamed background responses, so any replica can replay and follow them.

Revision ID: 0004
Revises: 0003

`response_events` keeps every `response.*` event of a background response created with
`stream: true`, as the SSE frame that was sent (`GET /v1/responses/{id}?stream=true&starting_after=N`
replays them byte for byte). `responses.event_log` says whether a response has such a log, so a
stream request for a response that never had one is refused at once rather than left waiting.
Events go with their response (`ON DELETE CASCADE`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "responses",
        sa.Column("event_log", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "response_events",
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("sequence_number", sa.Integer(), nullable=False),
        sa.Column("frame", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.id"],
            name=op.f("fk_response_events_response_id_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("response_id", "sequence_number", name=op.f("pk_response_events")),
    )


def downgrade() -> None:
    op.drop_table("response_events")
    op.drop_column("responses", "event_log")
