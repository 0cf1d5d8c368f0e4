"""Conversations move to llm-api: this app's own conversation store becomes an export source.

Revision ID: 0003
Revises: 0002

Why and how. Until now response-api kept its own `conversations` table, apart from llm-api's, so a
conversation made with `client.conversations.create()` could not be used by `/v1/responses` and a
response's `conversation.id` was unknown to `GET /v1/conversations/{id}`. Conversations now have one
owner, llm-api, whichever API writes to them. Each app owns its schema and never touches another
app's tables, so no single migration can move rows from one schema to the other; the move is split:

1. This migration (run before the release rolls out, like every migration) keeps the old rows
   readable and lets go of the table: `conversations` is renamed `legacy_conversations`, and
   `responses.conversation_id` loses its foreign key, because from now on it names a conversation
   of llm-api. Nothing is deleted, so a failed rollout loses nothing.
2. Once the new release runs, every response-api replica starts `services/legacy.py`, which copies
   each legacy conversation to llm-api through `POST /internal/conversations/import` (guarded by the
   internal token, like the API-key check): same `conv_…` id, owner and creation time, and as items
   the input and output items of its finished responses, in the order they were replayed before.
   A row is deleted only after llm-api has committed it (and the import is idempotent), and rows are
   claimed with `FOR UPDATE SKIP LOCKED`, so replicas share the work and a crash just repeats a copy.
   Until its copy lands (seconds after start), continuing an old conversation answers 404.
3. A later release drops the then-empty `legacy_conversations` table in its own migration, after
   every deployment has logged "legacy conversations copied". (A migration here cannot know when
   the running apps have finished, so it does not try.)

llm-api needs no schema change for this: its `conversation_items` table already stores any item
type (`type` plus a JSONB body), and imported rows reuse the existing columns.

Downgrade puts the table back under its old name with its foreign key; conversations created in
llm-api in the meantime stay there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_responses_conversation_id_conversations", "responses", type_="foreignkey")
    op.rename_table("conversations", "legacy_conversations")
    op.execute("ALTER INDEX ix_conversations_user_id RENAME TO ix_legacy_conversations_user_id")
    op.execute(
        "ALTER TABLE legacy_conversations RENAME CONSTRAINT pk_conversations TO pk_legacy_conversations"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE legacy_conversations RENAME CONSTRAINT pk_legacy_conversations TO pk_conversations"
    )
    op.execute("ALTER INDEX ix_legacy_conversations_user_id RENAME TO ix_conversations_user_id")
    op.rename_table("legacy_conversations", "conversations")
    # Responses of conversations that now live only in llm-api keep their id but lose the link.
    op.execute(
        "UPDATE responses SET conversation_id = NULL WHERE conversation_id IS NOT NULL"
        " AND conversation_id NOT IN (SELECT id FROM conversations)"
    )
    op.create_foreign_key(
        "fk_responses_conversation_id_conversations",
        "responses",
        "conversations",
        ["conversation_id"],
        ["id"],
        ondelete="SET NULL",
    )
