"""Answering and grading an eval run: short-lane work.

A run is queued as a ``tunedeck.eval`` task when it is made (app/evals/service.py). The worker
that takes it claims it with one conditional UPDATE (queued → in_progress, or in_progress with a
heartbeat older than ``stale_after()``: its worker died), then answers the items not graded yet —
several at once, so the model server batches them — and grades each answer as it comes. Each
graded item is committed with the run's counts and heartbeat, so a restarted run goes on from
the last graded item. A cancelled run stops at its next item. A short-lane worker sweeps for
runs whose task never came or whose worker died.
"""

import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, or_, select, update

from app.core.catalog import ServedModel, served_models
from app.core.config import get_settings
from app.core.db import read_session, session_scope
from app.core.evalruns import items_key
from app.core.evaltemplates import REFERENCE, lookup
from app.core.faults import pause
from app.core.ids import new_underscored_id
from app.core.queue import EVAL_TASK
from app.core.storage import get_store
from app.core.tables import Eval, EvalOutputItem, EvalRun, EvalRunStatus
from app.core.timeutil import utcnow
from worker.batches import chat_url
from worker.evals.classify import BATCH, Classifier, accuracy_and_macro_f1
from worker.evals.similarity import similarity
from worker.sweep import Sweep

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(10.0, read=600.0)
QUEUED_TOO_LONG = timedelta(seconds=30)
SWEEP_SECONDS = 15.0
CONCURRENCY = 8  # items asked at once: the model server batches concurrent replies in one pass
DEFAULT_MAX_TOKENS = 256
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def stale_after() -> timedelta:
    """An in-progress run not heard of for this long lost its worker: 1.5 leases (90 s by default)."""
    return timedelta(seconds=1.5 * get_settings().lease_seconds)


class ModelCallFailed(RuntimeError):
    """The model server (or the judge's endpoint) did not answer; the message says why."""


# --- templates ----------------------------------------------------------------------------------


def render(text: str, namespace: dict[str, Any]) -> str:
    """``{{item.field}}`` and ``{{sample.output_text}}`` filled in (objects as JSON)."""

    def fill(match: re.Match[str]) -> str:
        value = lookup(namespace, f"{match.group(1)}.{match.group(2)}")
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return REFERENCE.sub(fill, text)


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p if isinstance(p, str) else str(p.get("text", "")) for p in parts)


def messages_of(template: list[dict[str, Any]], namespace: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages from a template; OpenAI's ``developer`` role is sent as ``system``."""
    out = []
    for message in template:
        role = "system" if message["role"] == "developer" else str(message["role"])
        out.append({"role": role, "content": render(text_of(message["content"]), namespace)})
    return out


# --- calling models -------------------------------------------------------------------------------


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    model: str


def _endpoint(model: str, served: set[str]) -> tuple[str, dict[str, str]]:
    """Where to ask ``model``: tunedeck's model server, or the judge endpoint an admin configured."""
    settings = get_settings()
    if model not in served and settings.judge_base_url:
        headers = {"authorization": f"Bearer {settings.judge_api_key}"} if settings.judge_api_key else {}
        return settings.judge_base_url.rstrip("/") + "/chat/completions", headers
    return chat_url()


def chat(
    http: httpx.Client, model: str, messages: list[dict[str, str]], params: dict[str, Any], served: set[str]
) -> Answer:
    url, headers = _endpoint(model, served)
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": False}
    body.update({k: v for k, v in params.items() if v is not None})
    try:
        reply = http.post(url, json=body, headers=headers)
    except httpx.TransportError as exc:
        raise ModelCallFailed(f"{url} is not reachable ({exc})") from None
    if reply.status_code != 200:
        try:
            message = reply.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:300]
        raise ModelCallFailed(f"{model}: {url} answered {reply.status_code}: {message}")
    data = reply.json()
    usage = data.get("usage") or {}
    choice = data["choices"][0]
    return Answer(
        text=str(choice["message"].get("content") or ""),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=str(choice.get("finish_reason") or "stop"),
        model=model,
    )


def choice_logprobs(
    http: httpx.Client, model: str, messages: list[dict[str, str]], choices: list[str]
) -> list[float]:
    """Each choice's log-probability as ``model``'s reply (tunedeck's model server only)."""
    url, headers = _endpoint(model, {model})
    url = url.removesuffix("/v1/chat/completions") + "/v1/tunedeck/choices"
    try:
        reply = http.post(
            url, json={"model": model, "messages": messages, "choices": choices}, headers=headers
        )
    except httpx.TransportError as exc:
        raise ModelCallFailed(f"{url} is not reachable ({exc})") from None
    if reply.status_code != 200:
        raise ModelCallFailed(f"{model}: {url} answered {reply.status_code}: {reply.text[:300]}")
    return [float(c["logprob"]) for c in reply.json()["choices"]]


def _right_choice(answer: str, choices: list[str]) -> int | None:
    """The index ``answer`` names: a 0-based index, a letter (A, B, …) or a choice's text."""
    said = answer.strip()
    if said.isdigit() and int(said) < len(choices):
        return int(said)
    if len(said) == 1 and said.isalpha() and ord(said.upper()) - 65 < len(choices):
        return ord(said.upper()) - 65
    matches = [i for i, choice in enumerate(choices) if choice.strip().lower() == said.lower()]
    return matches[0] if matches else None


def _multiple_choice(
    criterion: dict[str, Any], namespace: dict[str, Any], http: httpx.Client
) -> tuple[float, bool, dict[str, Any]]:
    path = REFERENCE.search(criterion["choices"])
    assert path is not None
    choices = [str(c) for c in lookup(namespace, f"item.{path.group(2)}") or []]
    right = _right_choice(render(criterion["answer"], namespace), choices)
    logprobs = choice_logprobs(
        http, namespace["sample"]["model"], messages_of(criterion["input"], namespace), choices
    )
    picked = max(range(len(choices)), key=lambda i: logprobs[i])
    passed = right is not None and picked == right
    return (1.0 if passed else 0.0), passed, {"picked": picked, "right": right, "logprobs": logprobs}


# --- graders --------------------------------------------------------------------------------------


@dataclass
class Graded:
    results: list[dict[str, Any]]
    judged: list[Answer] = field(default_factory=list)


def _string_check(criterion: dict[str, Any], namespace: dict[str, Any]) -> tuple[float, bool]:
    given, reference = render(criterion["input"], namespace), render(criterion["reference"], namespace)
    operation = criterion["operation"]
    if operation == "eq":
        ok = given == reference
    elif operation == "ne":
        ok = given != reference
    elif operation == "like":
        ok = reference in given
    else:  # ilike
        ok = reference.lower() in given.lower()
    return (1.0 if ok else 0.0), ok


def _judge_prompt(criterion: dict[str, Any], namespace: dict[str, Any]) -> list[dict[str, str]]:
    messages = messages_of(criterion["input"], namespace)
    if criterion["type"] == "score_model":
        low, high = criterion.get("range") or [0.0, 1.0]
        rule = f"Reply with only a number from {low:g} to {high:g}, nothing else."
    else:
        rule = "Reply with exactly one of these labels, nothing else: " + ", ".join(criterion["labels"]) + "."
    return [*messages, {"role": "user", "content": rule}]


def _read_score(text: str, low: float, high: float) -> float | None:
    found = NUMBER.search(text)
    if found is None:
        return None
    return max(low, min(high, float(found.group())))


def _read_label(text: str, labels: list[str]) -> str | None:
    said = text.strip().strip(".\"'").lower()
    for label in labels:
        if said == label.lower():
            return label
    present = [label for label in labels if re.search(rf"\b{re.escape(label.lower())}\b", said)]
    return present[0] if len(present) == 1 else None


def grade(
    criteria: list[dict[str, Any]], namespace: dict[str, Any], http: httpx.Client, served: set[str]
) -> Graded:
    """Each criterion's result for one answer: name, type, score, passed (and a judge's sample)."""
    graded = Graded(results=[])
    for criterion in criteria:
        kind, sample = criterion["type"], None
        if kind == "string_check":
            score, passed = _string_check(criterion, namespace)
        elif kind == "multiple_choice":
            score, passed, sample = _multiple_choice(criterion, namespace, http)
        elif kind == "classification":  # the classifier's label (a jsonl run: the answer given)
            predicted = (namespace["sample"].get("labels") or {}).get(criterion["id"])
            predicted = namespace["sample"]["output_text"] if predicted is None else predicted
            reference = render(criterion["reference"], namespace)
            passed = predicted.strip() == reference.strip()
            score, sample = (1.0 if passed else 0.0), {"predicted": predicted, "reference": reference}
        elif kind == "text_similarity":
            score = similarity(
                criterion["evaluation_metric"],
                render(criterion["input"], namespace),
                render(criterion["reference"], namespace),
            )
            passed = score >= float(criterion["pass_threshold"])
        else:  # score_model, label_model: a served model (or the configured judge endpoint) decides
            params = criterion.get("sampling_params") or {}
            call = {
                "temperature": params.get("temperature", 0.0),
                "top_p": params.get("top_p"),
                "seed": params.get("seed"),
                "max_tokens": params.get("max_completions_tokens") or 16,
            }
            answer = chat(http, criterion["model"], _judge_prompt(criterion, namespace), call, served)
            graded.judged.append(answer)
            sample = {"output": [{"role": "assistant", "content": answer.text}], "model": answer.model}
            if kind == "score_model":
                low, high = criterion.get("range") or [0.0, 1.0]
                value = _read_score(answer.text, low, high)
                score = low if value is None else value
                threshold = criterion.get("pass_threshold")
                passed = value is not None and score >= (
                    threshold if threshold is not None else (low + high) / 2
                )
            else:
                label = _read_label(answer.text, criterion["labels"])
                passed = label is not None and label in criterion["passing_labels"]
                score = 1.0 if passed else 0.0
                sample["label"] = label
        graded.results.append(
            {"name": criterion["name"], "type": kind, "score": score, "passed": passed, "sample": sample}
        )
    return graded


# --- the run --------------------------------------------------------------------------------------


def _claim(run_id: str) -> bool:
    now = utcnow()
    takeable = or_(
        col(EvalRun.status) == EvalRunStatus.queued,
        (col(EvalRun.status) == EvalRunStatus.in_progress)
        & (col(EvalRun.heartbeat_at) < now - stale_after()),
    )
    with session_scope() as session:
        claimed = session.exec(
            update(EvalRun)
            .where(col(EvalRun.id) == run_id, takeable)
            .values(
                status=EvalRunStatus.in_progress,
                heartbeat_at=now,
                started_at=func.coalesce(EvalRun.started_at, now),
            )
        )
        return claimed.rowcount == 1


@dataclass
class _Plan:
    run: EvalRun
    criteria: list[dict[str, Any]]
    items: list[dict[str, Any]]
    done: set[int]
    served: set[str]
    classifier: ServedModel | None = None  # classification criteria: the SEQ_CLS job's model

    @property
    def classifying(self) -> bool:
        return self.run.data_source.get("type") == "completions" and any(
            c["type"] == "classification" for c in self.criteria
        )


def _plan(run_id: str) -> _Plan:
    store = get_store()
    with read_session() as session:
        run = session.get(EvalRun, run_id)
        assert run is not None
        row = session.get(Eval, run.eval_id)
        assert row is not None
        done = set(
            session.exec(
                select(EvalOutputItem.datasource_item_id).where(EvalOutputItem.run_id == run_id)
            ).all()
        )
        criteria = list(row.testing_criteria)
        classifying = any(c["type"] == "classification" for c in criteria)
        models = served_models(session, store, task="SEQ_CLS" if classifying else "CAUSAL_LM")
        served = {m.id for m in models}
        classifier = next((m for m in models if m.id == run.model), None) if classifying else None
        session.expunge(run)
    text = store.read_bytes(items_key(run_id)).decode("utf-8")
    items = [json.loads(line) for line in text.splitlines() if line]
    return _Plan(run, criteria, items, done, served, classifier)


def _sample(
    run: EvalRun, entry: dict[str, Any], http: httpx.Client, served: set[str]
) -> tuple[dict[str, Any], Answer | None]:
    """What the model answered to one item (a jsonl run: the answer the item carries)."""
    source = run.data_source
    if source.get("type") == "jsonl":
        given = entry.get("sample") or {}
        output = str(given.get("output_text", ""))
        return _sample_dict([], output, run.model or str(given.get("model", "")), {}, None), None
    namespace = {"item": entry["item"]}
    template = source.get("input_messages")
    if template is None:  # a job's validation rows: each item's own conversation
        messages = [dict(m) for m in entry["item"]["messages"]]
    elif template.get("type") == "item_reference":
        messages = [
            {"role": str(m["role"]), "content": text_of(m["content"])}
            for m in lookup(namespace, template["item_reference"])
        ]
    else:
        messages = messages_of(template["template"], namespace)
    params = source.get("sampling_params") or {}
    call = {
        "temperature": params.get("temperature", 1.0),
        "top_p": params.get("top_p", 1.0),
        "seed": params.get("seed", 42),
        "max_tokens": params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
    }
    answer = chat(http, run.model, messages, call, served)
    return _sample_dict(messages, answer.text, run.model, call, answer), answer


def _sample_dict(
    messages: list[dict[str, str]], output: str, model: str, call: dict[str, Any], answer: Answer | None
) -> dict[str, Any]:
    prompt, completion = (answer.prompt_tokens, answer.completion_tokens) if answer else (0, 0)
    return {
        "input": messages,
        "output": [{"role": "assistant", "content": output}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cached_tokens": 0,
        },
        "finish_reason": answer.finish_reason if answer else "stop",
        "model": model,
        "seed": int(call.get("seed") or 0),
        "temperature": float(call.get("temperature") if call.get("temperature") is not None else 1.0),
        "top_p": float(call.get("top_p") if call.get("top_p") is not None else 1.0),
        "max_completion_tokens": int(call.get("max_tokens") or 0),
        "error": None,
    }


def _output_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Recorder:
    """Commits one graded item with the run's counts; one lock, as the counts are read-modify-write."""

    def __init__(self, run_id: str, criteria: list[dict[str, Any]]) -> None:
        self.run_id, self.criteria = run_id, criteria
        self._lock = threading.Lock()
        self.stopped = False

    def record(
        self,
        index: int,
        entry: dict[str, Any],
        sample: dict[str, Any],
        graded: Graded | None,
        answers: list[Answer],
    ) -> None:
        results = graded.results if graded else []
        status = "error" if graded is None else ("pass" if all(r["passed"] for r in results) else "fail")
        score = sum(r["score"] for r in results) / len(results) if results else None
        with self._lock, session_scope() as session:
            run = session.get(EvalRun, self.run_id, with_for_update=True)
            if run is None or run.status != EvalRunStatus.in_progress:
                self.stopped = True  # cancelled or deleted meanwhile: nothing more is written
                return
            session.add(
                EvalOutputItem(
                    id=new_underscored_id("outputitem"),
                    run_id=self.run_id,
                    eval_id=run.eval_id,
                    datasource_item_id=index,
                    datasource_item=entry["item"],
                    sample=sample,
                    results=results,
                    status=status,
                    score=score,
                )
            )
            counts = {k: dict(v) for k, v in run.per_criterion.items()}
            for criterion, result in zip(self.criteria, results, strict=True):
                slot = counts.setdefault(criterion["id"], {"passed": 0, "failed": 0})
                slot["passed" if result["passed"] else "failed"] += 1
            usage = {k: dict(v) for k, v in run.usage.items()}
            for answer in answers:
                slot = usage.setdefault(
                    answer.model, {"invocations": 0, "prompt_tokens": 0, "completion_tokens": 0}
                )
                slot["invocations"] += 1
                slot["prompt_tokens"] += answer.prompt_tokens
                slot["completion_tokens"] += answer.completion_tokens
            run.per_criterion, run.usage, run.heartbeat_at = counts, usage, utcnow()
            run.passed += status == "pass"
            run.failed += status == "fail"
            run.errored += status == "error"
            session.add(run)
            try:
                session.flush()
            except IntegrityError:  # this item was graded already (two workers on a stale run)
                session.rollback()


def _one(plan: _Plan, recorder: _Recorder, http: httpx.Client, index: int) -> None:
    if recorder.stopped or _stopped(plan.run.id):
        recorder.stopped = True
        return
    entry = plan.items[index]
    try:
        if all(c["type"] == "multiple_choice" for c in plan.criteria):  # likelihoods only, no reply
            sample, answer = _sample_dict([], "", plan.run.model, {}, None), None
            sample["finish_reason"] = "no_generation"
        else:
            sample, answer = _sample(plan.run, entry, http, plan.served)
    except ModelCallFailed as exc:
        failed = _sample_dict([], "", plan.run.model, {}, None)
        failed["error"] = {"code": "model_call_failed", "message": str(exc)[:1000]}
        recorder.record(index, entry, failed, None, [])
        return
    namespace = {
        "item": entry["item"],
        "sample": {
            "output_text": sample["output"][0]["content"],
            "output_json": _output_json(sample["output"][0]["content"]),
            "choices": [{"message": sample["output"][0]}],
            "model": sample["model"],
        },
    }
    try:
        graded = grade(plan.criteria, namespace, http, plan.served)
    except ModelCallFailed as exc:
        sample["error"] = {"code": "grader_call_failed", "message": str(exc)[:1000]}
        recorder.record(index, entry, sample, None, [answer] if answer else [])
        return
    pause("eval_item_delay")  # fault injection: a slow item, so a test can kill the worker mid-run
    recorder.record(index, entry, sample, graded, ([answer] if answer else []) + graded.judged)


def _classify(plan: _Plan, recorder: _Recorder, todo: list[int]) -> None:
    """Label the items with the job's classifier, a batch at a time, and grade each label."""
    model = plan.classifier
    assert model is not None and model.artifact_key is not None
    classifier = Classifier(
        model.base_path,
        str(get_store().local_path(model.artifact_key)),
        trust_remote_code=model.trust_remote_code,
    )
    criteria = [c for c in plan.criteria if c["type"] == "classification"]
    with httpx.Client(timeout=TIMEOUT) as http:
        for start in range(0, len(todo), BATCH):
            if not _classify_batch(plan, recorder, classifier, criteria, todo[start : start + BATCH], http):
                return


def _classify_batch(
    plan: _Plan,
    recorder: _Recorder,
    classifier: Classifier,
    criteria: list[dict[str, Any]],
    chunk: list[int],
    http: httpx.Client,
) -> bool:
    """One batch labelled and graded; False when the run was stopped meanwhile."""
    if recorder.stopped or _stopped(plan.run.id):
        return False
    namespaces = [{"item": plan.items[i]["item"]} for i in chunk]
    labels = {
        c["id"]: classifier.labels([render(c["input"], namespace) for namespace in namespaces])
        for c in criteria
    }
    first = criteria[0]  # its input is what the sample shows
    for n, index in enumerate(chunk):
        text = render(first["input"], namespaces[n])
        label, tokens = labels[first["id"]][n]
        sample = _sample_dict([{"role": "user", "content": text}], label, plan.run.model, {}, None)
        sample["finish_reason"] = "classified"
        sample["usage"].update(prompt_tokens=tokens, total_tokens=tokens)
        namespace = {
            "item": namespaces[n]["item"],
            "sample": {
                "output_text": label,
                "output_json": None,
                "choices": [{"message": sample["output"][0]}],
                "model": plan.run.model,
                "labels": {c["id"]: labels[c["id"]][n][0] for c in criteria},
            },
        }
        graded = grade(plan.criteria, namespace, http, plan.served)
        pause("eval_item_delay")
        recorder.record(index, plan.items[index], sample, graded, [])
    return not recorder.stopped


def _classification_metrics(run_id: str, criteria: list[dict[str, Any]]) -> None:
    """Accuracy and macro-F1 of each classification criterion over all the run's items, on the run."""
    wanted = {c["name"]: c["id"] for c in criteria if c["type"] == "classification"}
    if not wanted:
        return
    with session_scope() as session:
        results = session.exec(select(EvalOutputItem.results).where(EvalOutputItem.run_id == run_id)).all()
        pairs: dict[str, list[tuple[str, str]]] = {cid: [] for cid in wanted.values()}
        for item_results in results:
            for result in item_results or []:
                if result.get("type") == "classification" and result.get("name") in wanted:
                    verdict = result.get("sample") or {}
                    pairs[wanted[result["name"]]].append((verdict.get("predicted"), verdict.get("reference")))
        run = session.get(EvalRun, run_id, with_for_update=True)
        if run is None:
            return
        counts = {k: dict(v) for k, v in run.per_criterion.items()}
        for cid, graded in pairs.items():
            accuracy, macro_f1 = accuracy_and_macro_f1(graded)
            counts.setdefault(cid, {"passed": 0, "failed": 0}).update(accuracy=accuracy, macro_f1=macro_f1)
        run.per_criterion = counts
        session.add(run)


def _stopped(run_id: str) -> bool:
    with read_session() as session:
        status = session.exec(select(EvalRun.status).where(EvalRun.id == run_id)).first()
    return status != EvalRunStatus.in_progress


def run_eval(run_id: str) -> str:
    """Answer and grade the items of ``run_id`` not graded yet, if this worker may take it.
    Returns the run's final status ("skipped" when it was not ours to run)."""
    if not _claim(run_id):
        return "skipped"
    plan = _plan(run_id)
    recorder = _Recorder(run_id, plan.criteria)
    todo = [i for i in range(len(plan.items)) if i not in plan.done]
    log.info("eval run %s: %d of %d items to answer", run_id, len(todo), len(plan.items))
    error = None
    if plan.run.model and plan.run.model not in plan.served:  # e.g. a checkpoint removed since
        todo, error = (
            [],
            {
                "code": "model_not_found",
                "message": f"{plan.run.model} is no longer served "
                "(a checkpoint past save_total_limit is removed)",
            },
        )
    try:
        if plan.classifying and todo:
            _classify(plan, recorder, todo)
        else:
            with httpx.Client(timeout=TIMEOUT) as http, ThreadPoolExecutor(CONCURRENCY) as pool:
                for done in [pool.submit(_one, plan, recorder, http, i) for i in todo]:
                    done.result()
        _classification_metrics(run_id, plan.criteria)
    except Exception as exc:  # recorded on the run: the API and the page show it
        log.exception("eval run %s failed", run_id)
        error = {"code": "run_failed", "message": str(exc)[:1000]}
    with session_scope() as session:
        run = session.get(EvalRun, run_id)
        if run is None:
            return "deleted"
        if run.status == EvalRunStatus.in_progress:
            everything_failed = run.total > 0 and run.errored == run.total
            if error is None and everything_failed:
                error = {
                    "code": "all_items_errored",
                    "message": "every item failed: see the output items' errors",
                }
            run.status = EvalRunStatus.failed if error else EvalRunStatus.completed
            run.error, run.finished_at = error, utcnow()
            session.add(run)
        return run.status.value


def lost_runs() -> list[str]:
    """Runs whose task never came or whose worker died; each is marked as sent again now."""
    now = utcnow()
    last_heard = func.coalesce(col(EvalRun.heartbeat_at), col(EvalRun.created_at))
    query = select(EvalRun).where(
        or_(
            (col(EvalRun.status) == EvalRunStatus.queued) & (last_heard < now - QUEUED_TOO_LONG),
            (col(EvalRun.status) == EvalRunStatus.in_progress) & (last_heard < now - stale_after()),
        )
    )
    with session_scope() as session:
        lost = list(session.exec(query).all())
        for run in lost:
            if run.status == EvalRunStatus.queued:
                run.heartbeat_at = now
                session.add(run)
        return [run.id for run in lost]


def eval_sweep() -> Sweep:
    """The short-lane thread that queues lost eval runs again (as often as leases are renewed, at most
    every ``SWEEP_SECONDS``)."""
    return Sweep("eval run", lost_runs, EVAL_TASK, min(SWEEP_SECONDS, get_settings().lease_seconds))
