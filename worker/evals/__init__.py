"""Evaluation runs: generate each item's answer on the model server, then grade it."""
