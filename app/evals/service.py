"""Evals and their runs: checked and stored here, answered and graded by a short-lane worker
(worker/evals/). No HTTP here.

A run takes a snapshot of its items when it is made (``evals/<run id>/items.jsonl`` in the
artifact store), so a file or job deleted later does not change a run that used it. Every item is
checked against the eval's ``item_schema`` and every ``{{item.…}}`` the templates name must be
in every item: a run that could not be graded as asked is refused before it starts.
"""

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError
from sqlmodel import Session, col, select

from app.core.catalog import served_models
from app.core.config import get_settings
from app.core.db import after_commit
from app.core.errors import Conflict, NotFound
from app.core.evalruns import checkpoint_source, queue_run, validation_items
from app.core.evaltemplates import REFERENCE, lookup
from app.core.ids import new_underscored_id
from app.core.storage import ArtifactStore
from app.core.tables import DatasetFile, Eval, EvalOutputItem, EvalRun, EvalRunStatus, Job
from app.core.timeutil import utcnow
from app.core.visibility import visible_to
from app.evals.schemas import (
    MAX_ITEMS,
    CustomConfig,
    EvalCreate,
    EvalInvalid,
    EvalUpdate,
    Message,
    RunCreate,
    SamplingParams,
    parse_criterion,
)

EVALS_PURPOSE = "evals"
SAMPLE_SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "choices": {"type": "array"},
        "output_text": {"type": "string"},
    },
    "required": ["model", "choices", "output_text"],
}


# --- evals ----------------------------------------------------------------------------------------


def create_eval(*, session: Session, body: EvalCreate, owner_id: int | None, owner: str | None) -> Eval:
    config = _data_source_config(body.data_source_config)
    criteria = [parse_criterion(raw, i) for i, raw in enumerate(body.testing_criteria)]
    names = [c.name for c in criteria]
    if len(set(names)) != len(names):
        raise EvalInvalid("each testing criterion needs its own name", param="testing_criteria")
    stored = [
        {**c.model_dump(mode="json", exclude_none=True), "id": f"{c.name}-{new_underscored_id('c')[2:14]}"}
        for c in criteria
    ]
    row = Eval(
        id=new_underscored_id("eval"),
        name=body.name or "",
        data_source_config=config.model_dump(mode="json"),
        testing_criteria=stored,
        meta=body.metadata,
        owner_id=owner_id,
        owner=owner,
    )
    session.add(row)
    session.flush()
    return row


def _data_source_config(raw: dict[str, Any]) -> CustomConfig:
    kind = raw.get("type")
    if kind in ("logs", "stored_completions"):
        raise EvalInvalid(
            f"data_source_config type {kind!r} reads stored completions, and tunedeck keeps none; "
            "use type 'custom' with an item_schema",
            param="data_source_config.type",
        )
    try:
        config = CustomConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise EvalInvalid(
            f"data_source_config.{where}: {error['msg']}", param=f"data_source_config.{where}"
        ) from None
    try:
        Draft202012Validator.check_schema(config.item_schema)
    except SchemaError as exc:
        raise EvalInvalid(
            f"data_source_config.item_schema is not a JSON schema: {exc.message}",
            param="data_source_config.item_schema",
        ) from None
    return config


def public_config(row: Eval) -> dict[str, Any]:
    """The data source config as OpenAI answers it: the schema of what templates can name."""
    config = row.data_source_config
    properties: dict[str, Any] = {"item": config.get("item_schema", {})}
    required = ["item"]
    if config.get("include_sample_schema"):
        properties["sample"] = SAMPLE_SCHEMA
        required.append("sample")
    return {"type": "custom", "schema": {"type": "object", "properties": properties, "required": required}}


def get_eval(*, session: Session, eval_id: str) -> Eval:
    row = session.get(Eval, eval_id)
    if row is None:
        raise NotFound(f"no eval with id {eval_id!r}")
    return row


def update_eval(*, session: Session, row: Eval, body: EvalUpdate) -> Eval:
    sent = body.model_fields_set
    if "name" in sent and body.name is not None:
        row.name = body.name
    if "metadata" in sent:
        row.meta = body.metadata
    row.updated_at = utcnow()
    session.add(row)
    return row


def delete_eval(*, session: Session, store: ArtifactStore, row: Eval) -> None:
    runs = session.exec(select(EvalRun).where(EvalRun.eval_id == row.id)).all()
    for run in runs:
        _forget_items(session, store, run)
    session.delete(row)


def page(
    query: Any, model: Any, *, session: Session, after: str | None, limit: int, order: str, key: Any
) -> tuple[list[Any], bool]:
    """One page of ``query`` in ``order`` of ``key``, starting after the row with id ``after``."""
    if after is not None:
        anchor = session.get(model, after)
        if anchor is None:
            raise EvalInvalid(f"after: no such id {after!r}", param="after")
        mark = getattr(anchor, key.key)
        query = query.where((key > mark) if order == "asc" else (key < mark))
    query = query.order_by(key.asc() if order == "asc" else key.desc()).limit(limit + 1)
    rows = list(session.exec(query).all())
    return rows[:limit], len(rows) > limit


# --- runs -----------------------------------------------------------------------------------------


def create_run(
    *,
    session: Session,
    store: ArtifactStore,
    row: Eval,
    body: RunCreate,
    viewer_id: int | None,
    owner_id: int | None,
    owner: str | None,
) -> EvalRun:
    """Check the run against its eval, snapshot its items and queue it for the short lane."""
    source = body.data_source
    kind = source.get("type")
    if kind == "responses":
        raise EvalInvalid(
            "tunedeck's models answer chat completions; use data_source type 'completions'",
            param="data_source.type",
        )
    if kind not in ("completions", "jsonl"):
        raise EvalInvalid("data_source.type must be 'completions' or 'jsonl'", param="data_source.type")
    items, private = _items(session, store, source.get("source"), viewer_id)
    model = ""
    if kind == "completions":
        model = str(source.get("model") or "")
        if not model:
            raise EvalInvalid(
                "data_source.model names the served model to evaluate", param="data_source.model"
            )
        _check_sampling(source.get("sampling_params"))
        if any(c["type"] == "classification" for c in row.testing_criteria):
            _check_classifier(session, store, row, model, viewer_id)
            template = []  # the classifier reads each criterion's input; nothing is generated
        else:
            _check_served(session, store, [model], "data_source.model", viewer_id)
            template = _template(source, items)
    else:
        template = []
        if any(c["type"] == "multiple_choice" for c in row.testing_criteria):
            raise EvalInvalid(
                "multiple_choice criteria ask the run's model how likely each choice is; "
                "use a completions data source with a model",
                param="data_source.type",
            )
        missing = [i for i, item in enumerate(items) if "output_text" not in (item.get("sample") or {})]
        if missing:
            raise EvalInvalid(
                "a jsonl run grades the answers its items carry: "
                f"item {missing[0]} has no sample.output_text",
                param="data_source.source",
            )
    judges = [c["model"] for c in row.testing_criteria if c["type"] in ("score_model", "label_model")]
    if judges and not get_settings().judge_base_url:  # with one, judges tunedeck does not serve go there
        _check_served(session, store, sorted(set(judges)), "testing_criteria.model", viewer_id)
    _check_items(row, items, template)
    private = private or _private_models(session, [model, *judges])  # its outputs are theirs
    return queue_run(
        session,
        store,
        row=row,
        model=model,
        source=source,
        items=items,
        name=body.name or (f"{model} on {row.name}" if row.name else model),
        private=private,
        owner_id=owner_id,
        owner=owner,
        meta=body.metadata,
    )


def _private_models(session: Session, names: list[str]) -> bool:
    """Whether any of ``names`` is an adapter, checkpoint or merge of a private job."""
    job_ids = {name.split(":")[1] for name in names if name.count(":") >= 1}
    return any((job := session.get(Job, job_id)) is not None and job.private for job_id in job_ids)


def _check_served(
    session: Session, store: ArtifactStore, names: list[str], param: str, viewer_id: int | None
) -> None:
    known = {m.id for m in served_models(session, store, viewer_id=viewer_id)}
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise EvalInvalid(
            f"not a served model: {listed}; GET /v1/models lists them", param=param, code="model_not_found"
        )


def _check_classifier(
    session: Session, store: ArtifactStore, row: Eval, model: str, viewer_id: int | None
) -> None:
    """Classification criteria grade a SEQ_CLS job's labels, and nothing else can share its run."""
    others = sorted({c["type"] for c in row.testing_criteria if c["type"] != "classification"})
    if others:
        raise EvalInvalid(
            f"a classifier gives labels, not replies for {', '.join(others)} criteria: "
            "put classification criteria in an eval of their own",
            param="testing_criteria",
        )
    known = {m.id for m in served_models(session, store, viewer_id=viewer_id, task="SEQ_CLS")}
    if model not in known:
        raise EvalInvalid(
            f"classification criteria grade a SEQ_CLS job's classifier: {model!r} is not the adapter "
            "(<base>:<job>) or a checkpoint (<base>:<job>:ckpt-<step>) of a SEQ_CLS job",
            param="data_source.model",
            code="model_not_found",
        )


def _check_sampling(raw: Any) -> None:
    if raw is None:
        return
    try:
        SamplingParams.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise EvalInvalid(
            f"data_source.sampling_params.{where}: {error['msg']}", param="data_source.sampling_params"
        ) from None


def _items(
    session: Session, store: ArtifactStore, source: Any, viewer_id: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """The run's items as ``{"item": …, "sample"?: …}``, and whether they come from private data."""
    if not isinstance(source, dict):
        raise EvalInvalid("data_source.source is an object with a type", param="data_source.source")
    kind = source.get("type")
    if kind == "file_content":
        content = source.get("content")
        if not isinstance(content, list) or not content:
            raise EvalInvalid(
                "data_source.source.content is a non-empty list of items", param="data_source.source"
            )
        items = [_item(entry, f"data_source.source.content[{i}]") for i, entry in enumerate(content)]
        private = False
    elif kind == "file_id":
        file_id = str(source.get("id") or "")
        dataset = session.get(DatasetFile, file_id)
        if dataset is None or not visible_to(dataset, viewer_id):
            raise NotFound(f"no file with id {file_id!r}")
        if dataset.purpose != EVALS_PURPOSE:
            raise EvalInvalid(
                f"file {file_id} was uploaded for fine-tuning; upload eval items with purpose 'evals'",
                param="data_source.source.id",
            )
        items = [
            _item(entry, f"file {file_id} line {i + 1}") for i, entry in enumerate(read_items(store, file_id))
        ]
        private = dataset.private
    elif kind == "job_validation":  # tunedeck's own: a job's validation rows
        items, private = _job_items(session, store, str(source.get("job_id") or ""), viewer_id)
    elif kind == "stored_completions":
        raise EvalInvalid(
            "tunedeck keeps no stored completions; use file_content, file_id or job_validation",
            param="data_source.source.type",
        )
    else:
        raise EvalInvalid(
            "data_source.source.type must be file_content, file_id or job_validation (tunedeck's)",
            param="data_source.source.type",
        )
    if len(items) > MAX_ITEMS:
        raise EvalInvalid(
            f"a run has at most {MAX_ITEMS} items (this one {len(items)})", param="data_source.source"
        )
    return items, private


def _item(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("item"), dict):
        raise EvalInvalid(f"{where}: each item is an object {{'item': {{…}}}}", param="data_source.source")
    out: dict[str, Any] = {"item": entry["item"]}
    if entry.get("sample") is not None:
        if not isinstance(entry["sample"], dict):
            raise EvalInvalid(f"{where}: sample is an object", param="data_source.source")
        out["sample"] = entry["sample"]
    return out


def read_items(store: ArtifactStore, file_id: str) -> list[Any]:
    text = store.read_bytes(f"files/{file_id}/items.jsonl").decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def _job_items(
    session: Session, store: ArtifactStore, job_id: str, viewer_id: int | None
) -> tuple[list[dict[str, Any]], bool]:
    """A job's validation rows as items: ``input`` (the last user turn), ``reference`` (the
    answer), ``messages`` (the conversation up to the answer, for ``item_reference``)."""
    job = session.get(Job, job_id)
    if job is None or not visible_to(job, viewer_id):
        raise NotFound(f"no fine-tuning job with id {job_id!r}")
    files = [session.get(DatasetFile, f) for f in (job.training_file, job.validation_file) if f]
    if any(f is not None and not visible_to(f, viewer_id) for f in files):
        raise NotFound(f"no fine-tuning job with id {job_id!r}")
    try:
        items = validation_items(store, job.training_file, job.validation_file)
    except FileNotFoundError:
        raise EvalInvalid(
            f"the dataset files of job {job_id} are missing from the artifact store",
            param="data_source.source.job_id",
        ) from None
    if not items:
        raise EvalInvalid(f"job {job_id} has no validation rows to use", param="data_source.source.job_id")
    return items, job.private or any(f is not None and f.private for f in files)


def _template(source: dict[str, Any], items: list[dict[str, Any]]) -> list[Message]:
    """The run's input messages: a template, or an item field holding the messages."""
    raw = source.get("input_messages")
    if raw is None:
        if source.get("source", {}).get("type") == "job_validation":
            return []  # each item's own messages
        raise EvalInvalid(
            "data_source.input_messages is needed: a template of messages that name {{item.…}} fields",
            param="data_source.input_messages",
        )
    if not isinstance(raw, dict):
        raise EvalInvalid(
            "data_source.input_messages is an object with a type", param="data_source.input_messages"
        )
    if raw.get("type") == "item_reference":
        path = str(raw.get("item_reference") or "")
        if not path.startswith("item."):
            raise EvalInvalid(
                "item_reference names an item field, e.g. 'item.messages'", param="data_source.input_messages"
            )
        for i, entry in enumerate(items):
            value = lookup(entry, path)
            if not isinstance(value, list) or not value:
                raise EvalInvalid(
                    f"item {i}: {path} is not a list of messages",
                    param="data_source.input_messages.item_reference",
                )
        return []
    if raw.get("type") != "template":
        raise EvalInvalid(
            "data_source.input_messages.type must be 'template' or 'item_reference'",
            param="data_source.input_messages.type",
        )
    try:
        messages = [Message.model_validate(m) for m in raw.get("template") or []]
    except ValidationError as exc:
        raise EvalInvalid(
            f"data_source.input_messages.template: {exc.errors()[0]['msg']}",
            param="data_source.input_messages",
        ) from None
    if not messages:
        raise EvalInvalid(
            "the template holds at least one message", param="data_source.input_messages.template"
        )
    for m in messages:
        text_of(m.content, param="data_source.input_messages.template")
    return messages


def text_of(content: Any, *, param: str) -> str:
    """A message's text: a string, an ``input_text`` / ``output_text`` part, or a list of them."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text", "")))
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise EvalInvalid(f"{param}: tunedeck's models read text only (not {kind!r})", param=param)
    return "".join(texts)


def _check_items(row: Eval, items: list[dict[str, Any]], template: list[Message]) -> None:
    """Every item fits the eval's item_schema and has every field the templates name."""
    validator = Draft202012Validator(row.data_source_config.get("item_schema", {}))
    for i, entry in enumerate(items):
        problem = next(iter(validator.iter_errors(entry["item"])), None)
        if problem is not None:
            where = "/".join(str(p) for p in problem.absolute_path)
            at = f" at {where}" if where else ""
            raise EvalInvalid(
                f"item {i} does not match the eval's item_schema{at}: {problem.message}",
                param="data_source.source",
            )
    texts = [text_of(m.content, param="template") for m in template]
    for criterion in row.testing_criteria:
        texts += [str(criterion.get(k, "")) for k in ("input", "reference", "choices", "answer")]
        texts += [
            text_of(m["content"], param="testing_criteria")
            for m in criterion.get("input", [])
            if isinstance(m, dict)
        ]
    fields = sorted({m.group(2) for text in texts for m in REFERENCE.finditer(text) if m.group(1) == "item"})
    for criterion in row.testing_criteria:
        if criterion["type"] != "multiple_choice":
            continue
        path = REFERENCE.search(criterion["choices"])
        assert path is not None  # checked when the eval was made
        for i, entry in enumerate(items):
            value = lookup(entry["item"], path.group(2))
            if (
                not isinstance(value, list)
                or len(value) < 2
                or not all(isinstance(c, str | int | float) for c in value)
            ):
                raise EvalInvalid(
                    f"item {i}: {path.group(2)} is not a list of at least two choices",
                    param="data_source.source",
                )
    for i, entry in enumerate(items):
        for field in fields:
            if lookup(entry["item"], field) is None:
                raise EvalInvalid(
                    f"item {i} has no field {field!r}, which {{{{item.{field}}}}} names",
                    param="data_source.source",
                )


def cancel_run(*, session: Session, run: EvalRun) -> EvalRun:
    if run.status.is_terminal:
        raise Conflict(f"run {run.id} is already {run.status.value}")
    run.status, run.cancel_requested, run.finished_at = EvalRunStatus.canceled, True, utcnow()
    session.add(run)
    return run


def delete_run(*, session: Session, store: ArtifactStore, run: EvalRun) -> None:
    _forget_items(session, store, run)
    session.delete(run)


def _forget_items(session: Session, store: ArtifactStore, run: EvalRun) -> None:
    folder = f"evals/{run.id}"
    after_commit(session, lambda: store.delete(folder))


def output_items(*, session: Session, run_id: str, status: str | None) -> Any:
    query = select(EvalOutputItem).where(EvalOutputItem.run_id == run_id)
    if status is not None:
        query = query.where(col(EvalOutputItem.status) == status)
    return query


# --- a job's checkpoints, evaluated -------------------------------------------------------------


MAX_JOB_EVALS = 5


def check_job_evals(
    *,
    session: Session,
    store: ArtifactStore,
    eval_ids: list[str],
    training_file: str,
    validation_file: str | None,
    viewer_id: int | None,
) -> list[str]:
    """The evals a new job names (``evals`` in its body), checked now against the validation rows
    its checkpoints will answer, so a run on a checkpoint is never refused mid-training."""
    wanted = list(dict.fromkeys(eval_ids))
    if not wanted:
        return []
    if len(wanted) > MAX_JOB_EVALS:
        raise EvalInvalid(f"evals: a job names at most {MAX_JOB_EVALS} evals", param="evals")
    try:
        items = validation_items(store, training_file, validation_file)
    except FileNotFoundError:
        raise EvalInvalid(
            "evals: the job's dataset files are missing from the artifact store", param="evals"
        ) from None
    if not items:
        raise EvalInvalid(
            "evals: the job has no validation rows (prompt and answer) for its checkpoints to answer; "
            "give it a validation_file",
            param="evals",
        )
    for eval_id in wanted:
        row = session.get(Eval, eval_id)
        if row is None:
            raise EvalInvalid(
                f"evals: no eval with id {eval_id!r}; GET /api/v1/evals lists them", param="evals"
            )
        judges = sorted(
            {c["model"] for c in row.testing_criteria if c["type"] in ("score_model", "label_model")}
        )
        try:
            if judges and not get_settings().judge_base_url:
                _check_served(session, store, judges, "testing_criteria.model", viewer_id)
            _check_items(row, items, [])
        except EvalInvalid as exc:
            raise EvalInvalid(
                f"evals: eval {eval_id} cannot grade this job's validation rows (fields input, "
                f"reference, messages): {exc}",
                param="evals",
            ) from None
    return wanted


def job_models(session: Session, job: Job) -> list[tuple[str, str, str | None]]:
    """(served name, label, checkpoint id) of a job's checkpoints by step, then its adapter."""
    from app.core.tables import Checkpoint

    checkpoints = session.exec(
        select(Checkpoint).where(Checkpoint.job_id == job.id).order_by(col(Checkpoint.step))
    ).all()
    names: list[tuple[str, str, str | None]] = [
        (f"{job.model}:{job.id}:ckpt-{c.step}", f"step {c.step}", c.id) for c in checkpoints
    ]
    if job.adapter_key:
        chosen = next((c for c in checkpoints if c.artifact_key == job.adapter_key), None)
        label = f"the job's adapter (step {chosen.step})" if chosen else "final adapter"
        names.append((f"{job.model}:{job.id}", label, None))
    return names


def evaluate_job(
    *,
    session: Session,
    store: ArtifactStore,
    row: Eval,
    job: Job,
    viewer_id: int | None,
    owner_id: int | None,
    owner: str | None,
) -> list[EvalRun]:
    """A run of ``row`` on the job's validation rows for each checkpoint and the final adapter."""
    models = job_models(session, job)
    if not models:
        raise EvalInvalid(f"job {job.id} has no checkpoint or adapter to evaluate yet", param="job_id")
    runs = []
    for model, label, _ in models:
        body = RunCreate(name=f"{label} of {job.suffix or job.id}", data_source=checkpoint_source(job, model))
        runs.append(
            create_run(
                session=session,
                store=store,
                row=row,
                body=body,
                viewer_id=viewer_id,
                owner_id=owner_id,
                owner=owner,
            )
        )
    return runs


def job_matrix(session: Session, job: Job, visible: Any) -> dict[str, Any] | None:
    """The latest eval run on the job's checkpoints: one row per checkpoint (and the final adapter),
    each criterion's pass rate, and which row is best (the highest share of items passing)."""
    models = job_models(session, job)
    names = [m for m, _, _ in models]
    if not names:
        return None
    runs = list(
        session.exec(
            select(EvalRun)
            .where(col(EvalRun.model).in_(names), visible)
            .order_by(col(EvalRun.created_at).desc())
        ).all()
    )
    if not runs:
        return None
    row = session.get(Eval, runs[0].eval_id)
    if row is None:
        return None
    latest: dict[str, EvalRun] = {}
    for each in runs:
        if each.eval_id == row.id:
            latest.setdefault(each.model, each)
    rows: list[dict[str, Any]] = []
    for model, label, checkpoint_id in models:
        run = latest.get(model)
        rates = {}
        if run is not None:
            for criterion in row.testing_criteria:
                counts = run.per_criterion.get(criterion["id"], {})
                graded = counts.get("passed", 0) + counts.get("failed", 0)
                rates[criterion["id"]] = counts.get("passed", 0) / graded if graded else None
        share = run.passed / run.total if run is not None and run.total and run.status.is_terminal else None
        rows.append(
            {
                "model": model,
                "label": label,
                "checkpoint": checkpoint_id,
                "run": run,
                "rates": rates,
                "share": share,
            }
        )
    scored = [(float(r["share"]), str(r["model"])) for r in rows if r["share"] is not None]
    best = max(scored)[1] if scored else None
    return {"eval": row, "rows": rows, "best": best}


def job_scores(session: Session, jobs: list[Job], visible: Any, limit: int = 5) -> list[dict[str, Any]]:
    """For the compare page: each eval run on these jobs' adapters (newest evals first), with the
    share of items passing and each criterion's pass rate per job (its latest finished run)."""
    names = {f"{j.model}:{j.id}": j.id for j in jobs}
    if not names:
        return []
    runs = session.exec(
        select(EvalRun)
        .where(col(EvalRun.model).in_(list(names)), col(EvalRun.status) == EvalRunStatus.completed, visible)
        .order_by(col(EvalRun.created_at).desc())
    ).all()
    latest: dict[str, dict[str, EvalRun]] = {}
    for run in runs:
        latest.setdefault(run.eval_id, {}).setdefault(names[run.model], run)
    out = []
    for eval_id, by_job in list(latest.items())[:limit]:
        row = session.get(Eval, eval_id)
        if row is None:
            continue
        shares = {job: run.passed / run.total for job, run in by_job.items() if run.total}
        criteria = []
        for criterion in row.testing_criteria:
            rates = {}
            for job, run in by_job.items():
                counts = run.per_criterion.get(criterion["id"], {})
                graded = counts.get("passed", 0) + counts.get("failed", 0)
                if graded:
                    rates[job] = counts.get("passed", 0) / graded
            criteria.append({"name": criterion["name"], "rates": rates})
        best = max(shares, key=lambda job: shares[job]) if len(shares) > 1 else None
        out.append({"eval": row, "runs": by_job, "shares": shares, "criteria": criteria, "best": best})
    return out


def model_scores(
    session: Session, visible: Any, limit: int = 3
) -> tuple[list[Eval], dict[str, dict[str, float]]]:
    """For the leaderboard: the ``limit`` evals run most recently, and per served model the share
    of items its latest finished run of each passed."""
    runs = session.exec(
        select(EvalRun)
        .where(col(EvalRun.status) == EvalRunStatus.completed, col(EvalRun.model) != "", visible)
        .order_by(col(EvalRun.created_at).desc())
        .limit(2000)
    ).all()
    order: list[str] = []
    scores: dict[str, dict[str, float]] = {}
    for run in runs:
        if run.eval_id not in order:
            if len(order) == limit:
                continue
            order.append(run.eval_id)
        if run.total:
            scores.setdefault(run.model, {}).setdefault(run.eval_id, run.passed / run.total)
    evals = [e for e in (session.get(Eval, i) for i in order) if e is not None]
    return evals, scores
