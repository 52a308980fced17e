"""page sessions: a token given at /login makes a session, known by the SHA-256 of its cookie
(never the cookie), ended by logout, its expiry, or its token's revocation

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("expires_at", stamp(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["token.id"], name="fk_web_session_token_id_token",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_web_session"),
        sa.UniqueConstraint("digest", name="uq_web_session_digest"),
        **TABLE,
    )
    op.create_index("ix_web_session_token_id", "web_session", ["token_id"])


def downgrade() -> None:
    op.drop_table("web_session")  # its index with it (MariaDB refuses to drop an index a foreign key needs)
