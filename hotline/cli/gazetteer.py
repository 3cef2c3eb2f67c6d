"""`hotline gazetteer …`: import a city's standard address registry (标准地址库) into its gazetteer.
The reading, checking and writing is `knowledge_base.address_registry`; this module is only the command."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hotline.cli.common import fail, out, progress_bar
from hotline.core.config import get_settings
from knowledge_base.address_registry import import_registry
from knowledge_base.loaders import DataFileError

cli = typer.Typer(help="The city's gazetteer: import the standard address registry (标准地址库).", no_args_is_help=True)


@cli.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV or .xlsx: name, aliases, street_code, community, type, lng, lat, datum")],
    city_dir: Annotated[Path | None, typer.Option(help="the city's data folder (default: the configured city)")] = None,
) -> None:
    """Import a registry file into <city>/geo/address_registry.csv: the whole file or (any bad row) nothing;
    re-importing it changes nothing."""
    settings = get_settings()
    directory = city_dir or settings.city_dir
    try:
        with progress_bar() as bar:
            task = bar.add_task(f"reading and checking {file.name}", total=None)
            result = import_registry(file, directory, city_name=settings.city_name,
                                     rows_read=lambda n: bar.update(task, total=n),
                                     progress=lambda n: bar.advance(task, n))
    except DataFileError as exc:
        fail(f"{exc}\nnothing was imported")
    out.print(f"{file.name}: {result.rows} places — {result.inserted} new, {result.updated} updated, "
              f"{result.unchanged} unchanged; {result.kept} from earlier imports kept", markup=False, highlight=False,
              soft_wrap=True)
    if result.written:
        out.print(f"written to {result.target}; the knowledge base hash changed: run `hotline index build`",
                  markup=False, highlight=False, soft_wrap=True)
