"""when a track's state last changed: the API's event stream reads the tracks of a run changed
since its last look, by an index, instead of the whole run

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")


def upgrade() -> None:
    # the tracks that exist keep NULL: they changed before anyone watched
    op.add_column("track", sa.Column("changed_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY),
                                     nullable=True))
    op.create_index("ix_track_pipeline_id_changed_at", "track", ["pipeline_id", "changed_at"])


def downgrade() -> None:
    op.drop_index("ix_track_pipeline_id_changed_at", table_name="track")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE track DROP COLUMN changed_at")  # in place: no rebuild
    else:
        op.drop_column("track", "changed_at")
