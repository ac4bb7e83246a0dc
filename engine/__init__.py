"""The training, evaluation and storage engine. Never imports textual, rich or typer."""
