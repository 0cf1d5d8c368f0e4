"""File search: an HNSW index over 384-dimension embeddings, built for the rows already stored.

The `embedding` column stays untyped (any model fits); the index is typed by a cast and partial on
the dimension, so vectors of other lengths are simply not in it (their queries use the exact scan).
A plain CREATE INDEX (Alembic runs in a transaction, so not CONCURRENTLY) blocks writes to `chunks`
while it builds; pgvector 0.6 builds in parallel and fastest when the graph fits in
maintenance_work_mem.

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
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    op.execute(
        f"CREATE INDEX ix_chunks_embedding_hnsw_{DIMENSIONS} ON chunks "
        f"USING hnsw ((embedding::vector({DIMENSIONS})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) WHERE vector_dims(embedding) = {DIMENSIONS}"
    )


def downgrade() -> None:
    op.execute(f"DROP INDEX ix_chunks_embedding_hnsw_{DIMENSIONS}")
