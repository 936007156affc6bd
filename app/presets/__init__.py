"""Training presets: built-in and user-saved sets of hyperparameters for new jobs."""
