"""File search: an HNSW index over 384-dimension embeddings, built for the rows already stored.

The `embedding` column stays untyped (any model fits); the index is typed by a cast and partial on
the dimension, so vectors of other lengths are simply not in it (their queries use the exact scan).
A plain CREATE INDEX (Alembic runs in a transaction, so not CONCURRENTLY) blocks writes to `chunks`
while it builds; pgvector 0.6 builds in parallel and fastest when the graph fits in
maintenance_work_mem (about 2 GB for a million 384-dimension rows: set it on the role first).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept literal: a migration must not change when the application's constants do.
DIMENSIONS = 384


def upgrade() -> None:
    # Raise the build memory for this transaction, never lower what the operator set for the role.
    op.execute(
        "SELECT set_config('maintenance_work_mem', '256MB', true) "
        "WHERE pg_size_bytes(current_setting('maintenance_work_mem')) < pg_size_bytes('256MB')"
    )
    op.execute(
        f"CREATE INDEX ix_chunks_embedding_hnsw_{DIMENSIONS} ON chunks "
        f"USING hnsw ((embedding::vector({DIMENSIONS})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE vector_dims(embedding) = {DIMENSIONS}"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX ix_chunks_embedding_hnsw_{DIMENSIONS}")
