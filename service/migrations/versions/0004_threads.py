"""Threads: a follow-up debate belongs to the thread of the debate it follows, at a position in it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a debate stored before this revision is the only debate of its own thread.
    op.add_column("debates", sa.Column("thread_id", sa.String(64), nullable=True))
    op.add_column("debates", sa.Column("thread_index", sa.Integer(), nullable=True))
    op.create_index("ix_debates_thread", "debates", ["thread_id", "thread_index"])


def downgrade() -> None:
    op.drop_index("ix_debates_thread", table_name="debates")
    op.drop_column("debates", "thread_index")
    op.drop_column("debates", "thread_id")
