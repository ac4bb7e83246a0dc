"""Built-in YAML presets, one folder per kind (data, model, augment, optim, schedule, experiment)."""
