"""Thin Celery tasks: they take ids and hand over to the pipeline."""

import socket

from app.core.queue import BATCH_TASK, DELIVER_TASK, EVAL_TASK, JUDGE_TASK, MERGE_TASK, TRAIN_TASK
from worker.celery_app import celery


@celery.task(name=TRAIN_TASK, bind=True)
def train(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    """Woken for job ``job_id``: run the best waiting job this worker can hold; return its final status."""
    from worker.training.runner import run_next

    return run_next(job_id, worker_name=self.request.hostname or socket.gethostname())


@celery.task(name=MERGE_TASK)
def merge(merge_id: str) -> str:
    """Merge an adapter into its full-precision base; return the merge's final status."""
    from worker.export.merge import run_merge

    return run_merge(merge_id)


@celery.task(name=DELIVER_TASK)
def deliver(delivery_id: str) -> bool:
    """POST one webhook delivery (its next attempt); False when it was not due or already taken."""
    from worker.deliveries import deliver as post_delivery

    return post_delivery(delivery_id)


@celery.task(name=BATCH_TASK)
def batch(batch_id: str) -> str:
    """Answer a playground batch compare's open cells; return its final status."""
    from worker.batches import run_batch

    return run_batch(batch_id)


@celery.task(name=EVAL_TASK)
def evaluate(run_id: str) -> str:
    """Answer and grade an eval run's open items; return the run's final status."""
    from worker.evals.run import run_eval

    return run_eval(run_id)


@celery.task(name=JUDGE_TASK)
def judge(batch_id: str) -> str:
    """A judge model compares a finished batch's answers pairwise; return how it went."""
    from worker.judging import judge_batch

    return judge_batch(batch_id)
