"""Run the Alembic migrations programmatically (CLI, app start-up on the embedded SQLite default, tests)."""
from __future__ import annotations

from alembic import command
from alembic.config import Config

from hotline.core.config import REPO_ROOT
from hotline.core.db import make_engine


def upgrade(url: str, revision: str = "head") -> None:
    make_engine(url).dispose()   # creates the SQLite folder if needed
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    command.upgrade(config, revision)
