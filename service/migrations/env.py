"""Alembic environment: runs on the connection the service hands over (see Store.migrate)."""

from alembic import context

from service.store import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through service.store.Store.migrate() or `consensus db upgrade`")
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
