"""The Celery application the worker process runs (`celery -A worker.celery_app worker`)."""

from celery import Celery

from app.config import get_settings
from app.queue import celery_config

celery = Celery("tunedeck", include=["worker.tasks"])
celery.conf.update(celery_config(get_settings()))
