"""graphs, vertices, edges, pipelines and tracks

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MY = ("mysql", "mariadb")
TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def name():
    return sa.String(200).with_variant(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"), *MY)


def long_text():
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), *MY)


def stamp():
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MY)


def big_id():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "graph",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("updated_at", stamp(), nullable=False),
        sa.Column("sealed_at", stamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_graph"),
        sa.UniqueConstraint("name", name="uq_graph_name"),
        sa.CheckConstraint("status IN ('draft', 'checked', 'sealed')", name=op.f("ck_graph_status")),
        **TABLE,
    )
    op.create_table(
        "vertex",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("script", long_text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("inputs", long_text(), nullable=False),
        sa.Column("timeout", sa.Double(), nullable=True),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vertex"),
        sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], name="fk_vertex_graph_id_graph", ondelete="CASCADE"),
        sa.UniqueConstraint("graph_id", "name", name="uq_vertex_graph_id_name"),
        sa.UniqueConstraint("graph_id", "id", name="uq_vertex_graph_id_id"),
        sa.CheckConstraint("timeout IS NULL OR timeout > 0", name=op.f("ck_vertex_timeout")),
        sa.CheckConstraint("retries >= 0", name=op.f("ck_vertex_retries")),
        **TABLE,
    )
    op.create_table(
        "edge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.Integer(), nullable=False),
        sa.Column("tail_id", sa.Integer(), nullable=False),
        sa.Column("head_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_edge"),
        # Both ends belong to the edge's own graph: the foreign keys include graph_id.
        sa.ForeignKeyConstraint(["graph_id", "tail_id"], ["vertex.graph_id", "vertex.id"],
                                name="fk_edge_tail_vertex", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["graph_id", "head_id"], ["vertex.graph_id", "vertex.id"],
                                name="fk_edge_head_vertex", ondelete="CASCADE"),
        sa.UniqueConstraint("graph_id", "tail_id", "head_id", name="uq_edge_graph_id_tail_id_head_id"),
        sa.CheckConstraint("tail_id <> head_id", name=op.f("ck_edge_no_self_loop")),
        **TABLE,
    )
    op.create_index("ix_edge_graph_id_head_id", "edge", ["graph_id", "head_id"])
    op.create_table(
        "pipeline",
        sa.Column("id", big_id(), nullable=False),
        sa.Column("graph_id", sa.Integer(), nullable=False),
        sa.Column("name", name(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", long_text(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=True),
        sa.Column("created_at", stamp(), nullable=False),
        sa.Column("started_at", stamp(), nullable=True),
        sa.Column("finished_at", stamp(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline"),
        sa.ForeignKeyConstraint(["graph_id"], ["graph.id"], name="fk_pipeline_graph_id_graph", ondelete="RESTRICT"),
        sa.CheckConstraint("state IN ('running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_pipeline_state")),
        **TABLE,
    )
    op.create_index("ix_pipeline_graph_id_created_at", "pipeline", ["graph_id", "created_at"])
    op.create_index("ix_pipeline_state", "pipeline", ["state"])
    op.create_table(
        "track",
        sa.Column("id", big_id(), nullable=False),
        sa.Column("pipeline_id", big_id(), nullable=False),
        sa.Column("vertex_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("waiting_on", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Double(), nullable=False),
        sa.Column("inputs", long_text(), nullable=False),
        sa.Column("script", long_text(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", stamp(), nullable=True),
        sa.Column("started_at", stamp(), nullable=True),
        sa.Column("finished_at", stamp(), nullable=True),
        sa.Column("stdout", long_text(), nullable=False),
        sa.Column("stderr", long_text(), nullable=False),
        sa.Column("log_path", sa.String(1024), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_track"),
        sa.ForeignKeyConstraint(["pipeline_id"], ["pipeline.id"], name="fk_track_pipeline_id_pipeline",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["vertex_id"], ["vertex.id"], name="fk_track_vertex_id_vertex", ondelete="RESTRICT"),
        sa.UniqueConstraint("pipeline_id", "vertex_id", name="uq_track_pipeline_id_vertex_id"),
        sa.CheckConstraint("state IN ('waiting', 'pending', 'running', 'succeeded', 'failed', "
                           "'upstream_failed', 'cancelled')", name=op.f("ck_track_state")),
        sa.CheckConstraint("attempt >= 0", name=op.f("ck_track_attempt")),
        **TABLE,
    )
    op.create_index("ix_track_state_priority", "track", ["state", "priority"])
    op.create_index("ix_track_vertex_id", "track", ["vertex_id"])


def downgrade() -> None:
    op.drop_table("track")
    op.drop_table("pipeline")
    op.drop_table("edge")
    op.drop_table("vertex")
    op.drop_table("graph")
