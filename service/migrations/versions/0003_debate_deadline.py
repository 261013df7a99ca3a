"""A debate's absolute deadline: a resumed debate runs only what is left of it, not its deadline again.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: debates stored before this revision have none; a resume derives it from their start.
    op.add_column("debates", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("debates", "deadline_at")
