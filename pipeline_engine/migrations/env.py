"""Alembic environment: runs on the connection the caller passes in ``attributes``,
or offline (``--sql``) to print the DDL for a dialect."""
from alembic import context

from pipeline_engine.migrate import VERSION_TABLE
from pipeline_engine.models import Base

config = context.config

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata,
                      literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=Base.metadata,
                      version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
