"""Alembic environment: the URL is the service's own setting (or `-x url=…`), the metadata the models'."""
from alembic import context

import api.auth.models  # noqa: F401  (registers the tables on Base.metadata)
import api.channels.wechat.models  # noqa: F401
import orders.models  # noqa: F401
import orders.vitals.models  # noqa: F401
from hotline.core.config import get_settings
from hotline.core.db import Base, make_engine

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables when a migration needs it.
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
