"""What the model server serves, under stable names (torch-free: the web app lists them too)."""
