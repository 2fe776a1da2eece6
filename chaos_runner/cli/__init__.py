"""The `chaoslab` command: thin verbs over the runner's packages."""

from chaos_runner.cli.main import main

__all__ = ["main"]
