"""critical-path priorities: a vertex's priority override, and each attempt's duration

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vertex", sa.Column("priority", sa.Double(), nullable=True))
    op.add_column("track", sa.Column("duration", sa.Double(), nullable=True))
    # the duration history of a vertex: its recent successful attempts
    op.create_index("ix_track_vertex_id_state", "track", ["vertex_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_track_vertex_id_state", "track")
    with op.batch_alter_table("track") as batch:
        batch.drop_column("duration")
    with op.batch_alter_table("vertex") as batch:
        batch.drop_column("priority")
