"""City vitals (城市体征): imported time series with warning thresholds. (Being built.)"""
import typer

cli = typer.Typer(help="City vitals (城市体征): import time series and check them against thresholds.", no_args_is_help=True)
