"""What the worker makes from a finished job for use elsewhere: merged models (merge.py)."""
