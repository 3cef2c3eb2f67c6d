"""A fresh SQLite database seeded with the demo history by the real router, as the screen, cockpit and report
benchmarks measure on (`orders.seed.seed_history`, what `hotline seed` makes)."""
from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from hotline.core.config import Settings, get_settings
from hotline.core.db import make_engine, session_factory
from hotline.core.migrate import upgrade
from orders.seed import seed_history
from routing.service import build_router


@dataclass
class Seeded:
    folder: Path            # the database file and the state folder
    settings: Settings
    router: Any
    sessions: sessionmaker[Session]


def open_database(path: Path) -> tuple[Settings, sessionmaker[Session]]:
    """Settings and sessions for a SQLite file (migrated), its folder as the state folder, no outbox worker."""
    url = f"sqlite:///{path}"
    settings = get_settings().model_copy(update={"database_url": url, "state_dir": path.parent, "outbox_poll_s": 0})
    upgrade(url)
    return settings, session_factory(make_engine(url))


def seeded_database(*, orders: int, prefix: str, console: Console, until: dt.datetime | None = None,
                    existing: Path | None = None) -> Seeded:
    """The router (configured embedders) and a database: `existing` as it is, else a new one with `orders` seeded
    orders over the 30 days before `until` (default now)."""
    path = existing or Path(tempfile.mkdtemp(prefix=prefix)) / "hotline.db"
    settings, sessions = open_database(path)
    console.print("building the router …")
    router = build_router(settings, progress=lambda message: None)
    if existing is None:
        console.print(f"seeding {orders} orders …")
        seed_history(router, sessions, orders=orders, now=until)
    return Seeded(path.parent, settings, router, sessions)
