"""``python -m portway`` runs the CLI."""

from portway.cli.main import run

run()
