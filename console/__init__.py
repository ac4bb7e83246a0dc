"""The Typer CLI (and, later, the Textual app) on top of the engine."""
