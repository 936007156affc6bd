"""HTML pages for jobs: the list, the new-job form, the job page."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from app.auth.access import (
    can_manage,
    can_see,
    check_job_files,
    check_priority,
    job_for,
    log_action,
    max_priority,
)
from app.auth.deps import CurrentUser, Principal
from app.auth.service import list_users
from app.basemodels.service import list_models
from app.core.errors import NotFound
from app.core.presence import online_workers, supervised_processes
from app.core.tables import Eval, JobStatus, Role
from app.core.usage import job_usage
from app.datasets.service import dataset_filenames, list_datasets
from app.evals import service as evals
from app.evals.api import visible_runs
from app.evals.schemas import EvalInvalid
from app.http.deps import DB_INT_MAX, SessionDep, StoreDep, commit
from app.http.templates import templates
from app.jobs import merges, service
from app.jobs.api import launch_job
from app.jobs.capacity import waiting_reasons
from app.jobs.form import form_fields, parse_spec_form, spec_errors
from app.jobs.schemas import JobCreate, JobPublic
from app.presets.schemas import PresetCreate, PresetPublic
from app.presets.service import PresetConflict, create_preset, get_preset, list_presets, preset_values

# Fields of "what to train" that survive switching presets or saving one.
KEPT_FIELDS = ("model", "training_file", "validation_file", "suffix", "seed")
# The save-as-preset inputs, named apart from the spec's fields.
_PRESET_INPUTS = {"name": "preset_name", "description": "preset_description"}

router = APIRouter(include_in_schema=False)


PER_PAGE = 25


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Running jobs, the queue with positions, workers online, recent results; refreshed live."""
    running = [j for j in service.active_jobs(session=session) if can_see(j, user)]
    queue = service.queue(session=session)
    # positions count every waiting job, also the private ones this user does not see
    positions = {job.id: number for number, job in enumerate(queue, 1)}
    waiting = [j for j in queue if can_see(j, user)]
    recent = [j for j in service.recent_results(session=session, limit=30) if can_see(j, user)][:10]
    shown = running + waiting + recent
    context = {
        "reasons": waiting_reasons(session=session, jobs=waiting),
        "usage": job_usage,
        "running": running,
        "waiting": waiting,
        "positions": positions,
        "recent": recent,
        "processes": supervised_processes(session=session),
        "workers": [  # a worker's job is named only to those who may see it
            (w, w.job is None or can_see(w.job, user)) for w in online_workers(session=session)
        ],
        "progress": service.progress,
        "filenames": dataset_filenames(
            session=session, ids={j.training_file for j in shown}, viewer_id=user.viewer_id
        ),
    }
    template = "partials/overview.html" if request.headers.get("HX-Request") else "pages/overview.html"
    return templates.TemplateResponse(request, template, context)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    status: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    page: Annotated[int, Query(ge=1, le=DB_INT_MAX // PER_PAGE)] = 1,
) -> Response:
    filters = service.JobFilter(
        status=JobStatus(status) if status and status in JobStatus.__members__ else None,
        model=model or None,
        dataset=dataset or None,
        search=(q or "").strip()[:100] or None,
        owner=(owner or "").strip()[:64] or None,
        viewer_id=user.viewer_id,
    )
    jobs, total = service.page_of_jobs(session=session, filters=filters, page=max(1, page), per_page=PER_PAGE)
    pages = max(1, -(-total // PER_PAGE))
    datasets, _ = list_datasets(session=session, limit=500, viewer_id=user.viewer_id)
    owners = [u.username for u in list_users(session=session)]
    query = {
        k: v
        for k, v in {
            "status": filters.status.value if filters.status else "",
            "model": filters.model or "",
            "dataset": filters.dataset or "",
            "owner": filters.owner or "",
            "q": filters.search or "",
        }.items()
        if v
    }
    context = {
        "jobs": jobs,
        "owners": owners,
        "total": total,
        "page": min(max(1, page), pages),
        "pages": pages,
        "query": query,
        "page_url": lambda n: "/jobs?" + urlencode({**query, "page": n}),
        "filters": filters,
        "statuses": [s.value for s in JobStatus],
        "models": list_models(session=session),
        "datasets": datasets,
        "progress": service.progress,
        "filenames": dataset_filenames(
            session=session, ids={j.training_file for j in jobs}, viewer_id=user.viewer_id
        ),
        "active": any(not j.status.is_terminal for j in jobs),
        "usage": job_usage,
    }
    template = "partials/jobs/table.html" if request.headers.get("HX-Request") else "pages/jobs.html"
    return templates.TemplateResponse(request, template, context)


def _form_page(
    request: Request,
    session: SessionDep,
    user: Principal,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    datasets, _ = list_datasets(session=session, limit=500, viewer_id=user.viewer_id)
    context = {
        "groups": form_fields(values.get("hyperparameters")),
        "presets": [PresetPublic.of(p) for p in list_presets(session=session)],
        "models": list_models(session=session),
        "datasets": datasets,
        "values": values,
        "errors": errors,
        "max_priority": max_priority(user),
        "evals": session.exec(select(Eval).order_by(col(Eval.created_at).desc()).limit(50)).all(),
    }
    return templates.TemplateResponse(request, "pages/job_new.html", context, status_code=status)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    model: str | None = None,
    training_file: str | None = None,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: str | None = None,
    preset: str | None = None,
    clone: str | None = None,
) -> Response:
    """The new-job form; ``preset`` fills the hyperparameters, ``clone`` everything from a job."""
    values: dict[str, Any] = {
        "model": model,
        "training_file": training_file,
        "validation_file": validation_file,
        "suffix": suffix,
        "seed": seed,
    }
    if preset:
        chosen = get_preset(session=session, preset_id=preset)
        values |= {"preset": chosen.id, "hyperparameters": preset_values(chosen)}
    if clone:  # clone-and-edit: the form filled with that job's choices
        source = job_for(session, clone, user)
        values |= {
            "model": source.model,
            "training_file": source.training_file,
            "validation_file": source.validation_file,
            "suffix": source.suffix,
            "seed": str(source.seed),
            "hyperparameters": dict(source.hyperparameters),
            "cloned_from": source.id,
            "private": source.private,
            "priority": min(source.priority, max_priority(user)),
        }
    return _form_page(request, session, user, values, {})


async def _read_form(request: Request) -> tuple[dict[str, list[str]], dict[str, str]]:
    form = await request.form()
    fields = {key: [str(v) for v in form.getlist(key)] for key in form}
    return fields, {key: values[-1] for key, values in fields.items() if values}


@router.post("/jobs/new/advice", response_class=HTMLResponse)
async def form_advice(request: Request, session: SessionDep, store: StoreDep, user: CurrentUser) -> Response:
    """The live advisor beside the form: checks and estimates for what is filled in now."""
    fields, first = await _read_form(request)  # the model's headers and the rows are read off the loop
    return await run_in_threadpool(_advice, request, session, store, user, fields, first)


def _advice(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: Principal,
    fields: dict[str, list[str]],
    first: dict[str, str],
) -> Response:
    context: dict[str, Any] = {"checks": [], "estimates": None, "problem": None}
    try:
        check_job_files(session, user, first.get("training_file"), first.get("validation_file"))
        spec = parse_spec_form(fields)
        checks, estimates = service.advise_job(
            session=session,
            store=store,
            model=first.get("model", ""),
            training_file=first.get("training_file", ""),
            validation_file=first.get("validation_file") or None,
            spec=spec,
        )
        context.update(checks=checks, estimates=estimates)
    except ValidationError as exc:
        context["problem"] = "; ".join(f"{k}: {v}" for k, v in spec_errors(exc).items())
    except (service.InvalidJobRequest, NotFound) as exc:
        context["problem"] = str(exc)
    return templates.TemplateResponse(request, "partials/jobs/advice.html", context)


def job_body(fields: dict[str, list[str]], first: dict[str, str]) -> JobCreate:
    """The form as the API's request body, so the two are validated alike (ValidationError)."""
    body = {
        "model": first.get("model", ""),
        "training_file": first.get("training_file", ""),
        "validation_file": first.get("validation_file") or None,
        "suffix": first.get("suffix") or None,
        "seed": first.get("seed") or None,
        "hyperparameters": parse_spec_form(fields),
        "private": "private" in first,
        "priority": first.get("priority") or 5,
        "evals": fields.get("evals", []),
    }
    return JobCreate.model_validate(body)


@router.post("/jobs", response_class=HTMLResponse)
async def submit_job(request: Request, session: SessionDep, store: StoreDep, user: CurrentUser) -> Response:
    fields, first = await _read_form(request)  # the advisor's checks run off the event loop
    return await run_in_threadpool(_submit, request, session, store, user, fields, first)


def _submit(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: Principal,
    fields: dict[str, list[str]],
    first: dict[str, str],
) -> Response:
    values: dict[str, Any] = {**first, "hyperparameters": first, "private": "private" in first}
    values["evals"] = fields.get("evals", [])
    try:
        body = job_body(fields, first)
    except ValidationError as exc:
        return _form_page(request, session, user, values, spec_errors(exc), status=422)
    try:
        job = launch_job(session=session, store=store, request=request, user=user, body=body)
    except service.InvalidJobRequest as exc:
        return _form_page(request, session, user, values, {exc.param or "form": str(exc)}, status=400)
    except service.AdviceBlocked as exc:
        errors = {check.field or "form": check.message for check in exc.checks}
        return _form_page(request, session, user, values, errors, status=422)
    except EvalInvalid as exc:
        return _form_page(request, session, user, values, {"evals": str(exc)}, status=422)
    commit(session)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/presets", response_class=HTMLResponse)
async def save_preset_form(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Save the form's hyperparameters as a preset, then show the form with it chosen."""
    fields, first = await _read_form(request)
    return await run_in_threadpool(_save_preset, request, session, user, fields, first)


def _save_preset(
    request: Request,
    session: SessionDep,
    user: Principal,
    fields: dict[str, list[str]],
    first: dict[str, str],
) -> Response:
    values: dict[str, Any] = {**first, "hyperparameters": first}
    try:
        body = PresetCreate(
            name=first.get("preset_name", ""),
            description=first.get("preset_description", ""),
            hyperparameters=parse_spec_form(fields),
        )
    except ValidationError as exc:
        errors = {_PRESET_INPUTS.get(k, k): message for k, message in spec_errors(exc).items()}
        return _form_page(request, session, user, values, errors, status=422)
    try:
        preset = create_preset(
            session=session, name=body.name, description=body.description, spec=body.hyperparameters
        )
    except PresetConflict as exc:
        return _form_page(request, session, user, values, {"preset_name": str(exc)}, status=409)
    commit(session)
    kept = {key: first[key] for key in KEPT_FIELDS if first.get(key)}
    return RedirectResponse(f"/jobs/new?{urlencode({'preset': preset.id, **kept})}", status_code=303)


def sample_steps(events: list[Any], keep: int = 4) -> dict[str, Any] | None:
    """The last ``keep`` evaluations' sample generations: each prompt with its reference and what
    the adapter said at each of those steps."""
    found = [e.data for e in events if e.data and e.data.get("kind") == "samples"][-keep:]
    if not found:
        return None
    prompts = found[-1]["samples"]
    rows = []
    for i, sample in enumerate(prompts):
        said = [(f["step"], f["samples"][i]["output"]) for f in found if i < len(f["samples"])]
        rows.append({"prompt": sample["prompt"], "reference": sample["reference"], "said": said})
    return {"steps": [f["step"] for f in found], "rows": rows}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, session: SessionDep, user: CurrentUser, job_id: str) -> Response:
    job = job_for(session, job_id, user)
    events, _ = service.list_events(session=session, job_id=job_id, limit=200)
    context = {
        "job": job,
        "public": JobPublic.of(job),
        "progress": service.progress(job),
        "events": list(reversed(events)),
        "alerts": service.list_alerts(session=session, job_id=job_id),
        "merge": merges.latest_merge(session=session, job_id=job_id),
        "checkpoints": service.list_checkpoints(session=session, job_id=job_id),
        "filenames": dataset_filenames(
            session=session, ids={job.training_file, job.validation_file or ""}, viewer_id=user.viewer_id
        ),
        "may_manage": can_manage(job, user),
        "waiting_reason": waiting_reasons(session=session, jobs=[job]).get(job.id),
        "usage": job_usage(job),
        "max_priority": max_priority(user),
        "evaluation": evals.job_matrix(session, job, visible_runs(user)),
        "samples": sample_steps(events),
        "evals": session.exec(select(Eval).order_by(col(Eval.created_at).desc()).limit(50)).all(),
        "may_evaluate": user.role != Role.viewer,
    }
    return templates.TemplateResponse(request, "pages/job.html", context)


@router.post("/jobs/{job_id}/delete")
def delete_job_form(
    request: Request, session: SessionDep, store: StoreDep, user: CurrentUser, job_id: str
) -> Response:
    job_for(session, job_id, user, manage="delete")
    service.delete_job(session=session, store=store, job_id=job_id)
    log_action(session, request, user, "job_deleted", "job", job_id)
    commit(session)
    return RedirectResponse("/jobs", status_code=303)


@router.post("/jobs/{job_id}/resume")
def resume_job_form(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    job_id: str,
    checkpoint: Annotated[str, Form()],
) -> Response:
    job_for(session, job_id, user, manage="resume")
    service.resume_job(session=session, store=store, job_id=job_id, checkpoint_id=checkpoint)
    log_action(session, request, user, "job_resumed", "job", job_id, checkpoint=checkpoint)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


COLORS = ("#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#db2777", "#0891b2")


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request, session: SessionDep, user: CurrentUser, ids: Annotated[list[str] | None, Query()] = None
) -> Response:
    """2–6 jobs: curves overlaid, the config diff, final metrics side by side."""
    wanted = list(dict.fromkeys(ids or []))
    problem = None
    if wanted and not 2 <= len(wanted) <= 6:
        problem = f"Pick between 2 and 6 jobs to compare (you picked {len(wanted)})."
    jobs = []
    for job_id in wanted[:6]:
        try:
            jobs.append(job_for(session, job_id, user))
        except NotFound:
            problem = f"There is no job {job_id}."
    recent, _ = service.list_jobs(
        session=session, limit=50, filters=service.JobFilter(viewer_id=user.viewer_id)
    )
    context = {
        "jobs": jobs,
        "colors": dict(zip([j.id for j in jobs], COLORS, strict=False)),
        "diff": config_diff(jobs),
        "finals": {j.id: service.final_metrics(session=session, job=j) for j in jobs},
        "scores": evals.job_scores(session, jobs, visible_runs(user)),
        "recent": recent,
        "chosen": set(wanted),
        "problem": problem,
        "filenames": dataset_filenames(
            session=session, ids={j.training_file for j in jobs + recent}, viewer_id=user.viewer_id
        ),
    }
    return templates.TemplateResponse(
        request, "pages/compare.html", context, status_code=400 if problem else 200
    )


def config_diff(jobs: list[Any]) -> list[tuple[str, list[Any], bool]]:
    """(setting, value per job, differs?) for the model, data, seed and every hyperparameter."""
    rows: list[tuple[str, list[Any], bool]] = []
    names = ["model", "training_file", "validation_file", "seed"]
    keys = list(dict.fromkeys(k for j in jobs for k in j.hyperparameters))
    for name in names:
        values = [getattr(j, name) for j in jobs]
        rows.append((name, values, len({repr(v) for v in values}) > 1))
    for key in keys:
        values = [j.hyperparameters.get(key) for j in jobs]
        rows.append((key, values, len({repr(v) for v in values}) > 1))
    return rows


@router.post("/jobs/{job_id}/priority")
def priority_form(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    job_id: str,
    priority: Annotated[int, Form(ge=0, le=9)],
) -> Response:
    before = job_for(session, job_id, user, manage="change the priority of").priority
    check_priority(priority, user)
    service.set_priority(session=session, job_id=job_id, priority=priority)
    log_action(session, request, user, "job_priority_changed", "job", job_id, before=before, after=priority)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
def cancel_job_form(request: Request, session: SessionDep, user: CurrentUser, job_id: str) -> Response:
    job_for(session, job_id, user, manage="cancel")
    service.cancel_job(session=session, job_id=job_id)
    log_action(session, request, user, "job_cancelled", "job", job_id)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/checkpoints", response_class=HTMLResponse)
def checkpoints_partial(request: Request, session: SessionDep, user: CurrentUser, job_id: str) -> Response:
    job = job_for(session, job_id, user)
    context = {
        "job": job,
        "checkpoints": service.list_checkpoints(session=session, job_id=job_id),
        "may_manage": can_manage(job, user),
    }
    return templates.TemplateResponse(request, "partials/jobs/checkpoints.html", context)


@router.post("/jobs/{job_id}/merge")
def merge_job_form(request: Request, session: SessionDep, user: CurrentUser, job_id: str) -> Response:
    job_for(session, job_id, user, manage="merge")
    merge = merges.request_merge(session=session, job_id=job_id)
    log_action(session, request, user, "job_merged", "job", job_id, merge=merge.id)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}#merge", status_code=303)


@router.get("/jobs/{job_id}/merge", response_class=HTMLResponse)
def merge_partial(request: Request, session: SessionDep, user: CurrentUser, job_id: str) -> Response:
    job = job_for(session, job_id, user)
    context = {
        "job": job,
        "merge": merges.latest_merge(session=session, job_id=job_id),
        "may_manage": can_manage(job, user),
    }
    return templates.TemplateResponse(request, "partials/jobs/merge.html", context)


@router.post("/jobs/{job_id}/adapter")
def choose_adapter_form(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    job_id: str,
    checkpoint: Annotated[str, Form()] = "",
) -> Response:
    """Make one checkpoint the job's adapter (an empty value: the adapter trained to the end)."""
    job = job_for(session, job_id, user, manage="choose the adapter of")
    service.use_checkpoint(session=session, job=job, checkpoint_id=checkpoint or None, by=user.username)
    log_action(session, request, user, "job_adapter_chosen", "job", job_id, checkpoint=checkpoint or None)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}#evaluations", status_code=303)
