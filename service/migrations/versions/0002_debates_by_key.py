"""Index debates by API key and creation time: GET /v1/debates lists a key's own debates.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_debates_key_created", "debates", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_debates_key_created", table_name="debates")
