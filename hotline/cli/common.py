"""What every `hotline` command shares: the consoles, a progress bar with an ETA, the user-error types, failing with
a literal message (file:row:field paths stay whole), and database sessions on the configured store. The imports inside the functions keep `hotline --help` fast
(no SQLAlchemy engine, no routing modules until a command needs them)."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hotline.core.config import get_settings

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> None:
    # No markup or wrapping in the message itself: file:row:field paths must stay whole and literal.
    err.print("[bold red]error:[/]", end=" ")
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


def user_errors():
    from knowledge_base.index_store import IndexMismatchError
    from knowledge_base.loaders import DataFileError
    from nlp.normalize import InputError
    from routing.history import InputFileError

    return (DataFileError, IndexMismatchError, InputError, InputFileError, FileNotFoundError, RuntimeError)


def database_sessions():
    """Sessions on HOTLINE_DATABASE_URL, migrated to the current schema first."""
    from hotline.core.db import make_engine, session_factory
    from hotline.core.migrate import upgrade

    url = get_settings().database_url
    upgrade(url)
    return session_factory(make_engine(url))
