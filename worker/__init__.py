"""tunedeck's GPU side: Celery tasks, the training pipeline, model conversion."""
