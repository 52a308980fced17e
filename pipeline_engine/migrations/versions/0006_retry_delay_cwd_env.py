"""retries that wait, and where a script runs: a vertex's retry_delay, retry_backoff, cwd and env;
the time before which a track waiting for its retry is not claimed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def upgrade() -> None:
    # server defaults: the vertices that exist retry at once, as they did
    op.add_column("vertex", sa.Column("retry_delay", sa.Double(), nullable=False, server_default="0"))
    op.add_column("vertex", sa.Column("retry_backoff", sa.Double(), nullable=False, server_default="1"))
    op.add_column("vertex", sa.Column("cwd", sa.String(1024), nullable=True))
    op.add_column("vertex", sa.Column("env", sa.Text().with_variant(mysql.MEDIUMTEXT(), *MY), nullable=True))
    # no index on it: claims find pending tracks by track(pipeline_id, state) and
    # track(state, priority); this is a condition on those few rows
    op.add_column("track", sa.Column("not_before", stamp(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("track") as batch:
        batch.drop_column("not_before")
    with op.batch_alter_table("vertex") as batch:
        batch.drop_column("env")
        batch.drop_column("cwd")
        batch.drop_column("retry_backoff")
        batch.drop_column("retry_delay")
