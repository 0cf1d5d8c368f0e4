"""File search: each collection's chunk count, kept by the database as documents come and go.

Choosing between the HNSW walk and the exact scan needs the scope's size before the query runs.
Summing `documents.chunk_count` over the scope read one row per document (about 2 ms of the query
at 10,000 documents, and growing with them); this table holds the sum, one row per (user,
collection, model). A trigger on `documents` keeps it in the writing transaction itself, so every
path that adds, replaces or deletes a document (a cascade included) moves the count with it, and
readers see the count of what they can see. Writers to one collection queue on its row until
they commit, which indexing (one document per transaction) can afford.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collection_sizes",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("collection", sa.String(128), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("chunks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "collection", "model", name="pk_collection_sizes"),
    )
    # `FROM CURRENT`: the function finds the table in this schema whatever the caller's search_path.
    op.execute(
        """
        CREATE FUNCTION count_collection_chunks() RETURNS trigger
        LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                UPDATE collection_sizes SET chunks = chunks - OLD.chunk_count
                WHERE user_id = OLD.user_id AND collection = OLD.collection AND model = OLD.model;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                INSERT INTO collection_sizes AS sizes (user_id, collection, model, chunks)
                VALUES (NEW.user_id, NEW.collection, NEW.model, NEW.chunk_count)
                ON CONFLICT (user_id, collection, model)
                DO UPDATE SET chunks = sizes.chunks + EXCLUDED.chunks;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER documents_count_chunks "
        "AFTER INSERT OR DELETE OR UPDATE OF user_id, collection, model, chunk_count ON documents "
        "FOR EACH ROW EXECUTE FUNCTION count_collection_chunks()"
    )
    op.execute(
        "INSERT INTO collection_sizes (user_id, collection, model, chunks) "
        "SELECT user_id, collection, model, sum(chunk_count) FROM documents "
        "GROUP BY user_id, collection, model"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER documents_count_chunks ON documents")
    op.execute("DROP FUNCTION count_collection_chunks()")
    op.drop_table("collection_sizes")
