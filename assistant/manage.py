"""Commands for the Rasa assistant (its own Python 3.10 venv): generate lookups, train, serve. (Being built.)"""
import typer

cli = typer.Typer(help="The Rasa assistant: generate its dictionaries from the KB, train, serve, evaluate.", no_args_is_help=True)
