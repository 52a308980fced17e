"""API tokens: a name, a role, the SHA-256 of the token (never the token)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def name():
    return sa.String(200).with_variant(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), *MY)


def upgrade() -> None:
    op.create_table(
        "token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("last_used_at", stamp(), nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'operator', 'editor', 'admin')", name=op.f("ck_token_role")),
        sa.PrimaryKeyConstraint("id", name="pk_token"),
        sa.UniqueConstraint("name", name="uq_token_name"),
        sa.UniqueConstraint("digest", name="uq_token_digest"),
        **TABLE,
    )


def downgrade() -> None:
    op.drop_table("token")
