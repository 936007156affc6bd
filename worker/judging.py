"""A judge model comparing a batch compare's answers pairwise: short-lane work.

For every prompt and every pair of models in the batch, the judge is asked twice, the answers
shown in both orders; a model wins only when the judge picks it both times (otherwise it is a
tie), which cancels the judge's leaning towards the first or second answer. Each verdict is a
vote with ``judge`` set, counted on the leaderboard apart from people's blind votes. A batch
judged again replaces its earlier judge votes.
"""

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlmodel import col, delete, select, update

from app.core.db import read_session, session_scope
from app.core.ids import new_id
from app.core.tables import BatchOutput, BatchRun, Vote
from app.core.tables.playground import PROMPT_CHARS
from app.core.timeutil import utcnow
from worker.batches import CONCURRENCY, TIMEOUT
from worker.evals.run import ModelCallFailed, chat

log = logging.getLogger(__name__)
RULES = (
    "You compare two answers to the same request. Reply with exactly one letter: A if answer A is "
    "better, B if answer B is better, T if they are equally good."
)


def verdict(text: str) -> str | None:
    """ "a", "b" or "tie" from the judge's reply (None when it said neither)."""
    said = text.strip().lstrip("*\"'([ ").upper()
    if said.startswith("A"):
        return "a"
    if said.startswith("B"):
        return "b"
    if said.startswith("T"):
        return "tie"
    return None


def ask(http: httpx.Client, judge: str, prompt: str, first: str, second: str) -> str | None:
    content = f"Request:\n{prompt}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"
    messages = [{"role": "system", "content": RULES}, {"role": "user", "content": content}]
    answer = chat(http, judge, messages, {"temperature": 0.0, "max_tokens": 4}, {judge})
    return verdict(answer.text)


def both_orders(http: httpx.Client, judge: str, prompt: str, x: str, y: str) -> str:
    """ "a" (x is better), "b" (y is better) or "tie", asked with x first and then with y first."""
    one = ask(http, judge, prompt, x, y)
    two = ask(http, judge, prompt, y, x)
    swapped = {"a": "b", "b": "a", "tie": "tie", None: None}[two]
    return one if one in ("a", "b") and one == swapped else "tie"


def judge_batch(batch_id: str) -> str:
    """Judge the batch's answers; returns the judging's final status ("skipped": not queued)."""
    with session_scope() as session:
        taken = session.exec(
            update(BatchRun)
            .where(col(BatchRun.id) == batch_id, col(BatchRun.judge_status) == "queued")
            .values(judge_status="running", heartbeat_at=utcnow())
        )
        if taken.rowcount != 1:
            return "skipped"
    with read_session() as session:
        batch = session.get(BatchRun, batch_id)
        assert batch is not None and batch.judge is not None
        judge, models = batch.judge, list(batch.models)
        cells = session.exec(select(BatchOutput).where(BatchOutput.batch_id == batch_id)).all()
    answers: dict[int, dict[str, str]] = {}
    prompts: dict[int, str] = {}
    for cell in cells:
        answers.setdefault(cell.prompt_index, {})[cell.model] = cell.output or ""
        prompts[cell.prompt_index] = cell.prompt
    status, error = "succeeded", None
    votes: list[Vote] = []
    pairs = [(index, a, b) for index in sorted(prompts) for a, b in itertools.combinations(models, 2)]

    def judge_pair(http: httpx.Client, index: int, a: str, b: str) -> Vote:
        winner = both_orders(
            http, judge, prompts[index], answers[index].get(a, ""), answers[index].get(b, "")
        )
        with session_scope() as session:
            session.exec(update(BatchRun).where(col(BatchRun.id) == batch_id).values(heartbeat_at=utcnow()))
        prompt = prompts[index][:PROMPT_CHARS]
        return Vote(
            id=new_id("vote"),
            model_a=a,
            model_b=b,
            winner=winner,
            prompt=prompt,
            judge=judge,
            batch_id=batch_id,
        )

    try:  # several pairs at once, so the model server's batch fills
        with httpx.Client(timeout=TIMEOUT) as http, ThreadPoolExecutor(CONCURRENCY) as pool:
            votes = list(pool.map(lambda pair: judge_pair(http, *pair), pairs))
    except ModelCallFailed as exc:
        status, error = "failed", str(exc)[:2000]
    with session_scope() as session:
        if status == "succeeded":  # the batch's earlier judge votes give way to these, in one go
            session.exec(delete(Vote).where(col(Vote.batch_id) == batch_id, col(Vote.judge).is_not(None)))
            session.add_all(votes)
        session.exec(
            update(BatchRun)
            .where(col(BatchRun.id) == batch_id)
            .values(judge_status=status, judge_error=error)
        )
    log.info("batch %s judged by %s: %s (%d verdicts)", batch_id, judge, status, len(votes))
    return status
