"""the database's identity: an installation id that names its process markers and log
directories, whatever the URL's spelling

The table is created empty: its one row is inserted by the first process that uses the
database (``store.create_installation``), so the DDL in sql/ embeds no random value and a
database copied before its first use (a test template) does not share its id with the copy.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def upgrade() -> None:
    op.create_table(
        "installation",
        # always 1: the primary key admits one row, so concurrent first users cannot make two
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.CheckConstraint("slot = 1", name=op.f("ck_installation_slot")),
        sa.PrimaryKeyConstraint("slot", name="pk_installation"),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("installation")
