"""HTML pages for jobs: the list, the new-job form, the job page."""

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.api.deps import SessionDep, StoreDep, commit
from app.basemodels.service import list_models
from app.datasets.service import NotFound, dataset_filenames, list_datasets
from app.jobs import merging, service
from app.jobs.form import form_fields, parse_spec_form, spec_errors
from app.jobs.schemas import JobPublic
from app.models import JobStatus
from app.presets.schemas import PresetCreate, PresetPublic
from app.presets.service import PresetConflict, create_preset, get_preset, list_presets, preset_values
from app.web import templates

# Fields of "what to train" that survive switching presets or saving one.
KEPT_FIELDS = ("model", "training_file", "validation_file", "suffix", "seed")
# The save-as-preset inputs, named apart from the spec's fields.
_PRESET_INPUTS = {"name": "preset_name", "description": "preset_description"}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request, session: SessionDep, after: str | None = None, status: str | None = None
) -> Response:
    wanted = JobStatus(status) if status and status in JobStatus.__members__ else None
    jobs, has_more = service.list_jobs(session=session, after=after, limit=25, status=wanted)
    context = {
        "jobs": jobs,
        "has_more": has_more,
        "status": wanted.value if wanted else "",
        "statuses": [s.value for s in JobStatus],
        "progress": service.progress,
        "filenames": dataset_filenames(session=session, ids={j.training_file for j in jobs}),
        "active": any(not j.status.is_terminal for j in jobs),
    }
    return templates.TemplateResponse(request, "pages/jobs.html", context)


def _form_page(
    request: Request,
    session: SessionDep,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    datasets, _ = list_datasets(session=session, limit=500)
    context = {
        "groups": form_fields(values.get("hyperparameters")),
        "presets": [PresetPublic.of(p) for p in list_presets(session=session)],
        "models": list_models(session=session),
        "datasets": datasets,
        "values": values,
        "errors": errors,
    }
    return templates.TemplateResponse(request, "pages/job_new.html", context, status_code=status)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(
    request: Request,
    session: SessionDep,
    model: str | None = None,
    training_file: str | None = None,
    validation_file: str | None = None,
    suffix: str | None = None,
    seed: str | None = None,
    preset: str | None = None,
) -> Response:
    """The new-job form; ``preset`` fills the hyperparameters, the other fields pass through."""
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
    return _form_page(request, session, values, {})


async def _read_form(request: Request) -> tuple[dict[str, list[str]], dict[str, str]]:
    form = await request.form()
    fields = {key: [str(v) for v in form.getlist(key)] for key in form}
    return fields, {key: values[-1] for key, values in fields.items() if values}


@router.post("/jobs/new/advice", response_class=HTMLResponse)
async def form_advice(request: Request, session: SessionDep, store: StoreDep) -> Response:
    """The live advisor beside the form: checks and estimates for what is filled in now."""
    fields, first = await _read_form(request)
    context: dict[str, Any] = {"checks": [], "estimates": None, "problem": None}
    try:
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


@router.post("/jobs", response_class=HTMLResponse)
async def submit_job(request: Request, session: SessionDep, store: StoreDep) -> Response:
    fields, first = await _read_form(request)
    values: dict[str, Any] = {**first, "hyperparameters": first}
    try:
        spec = parse_spec_form(fields)
    except ValidationError as exc:
        return _form_page(request, session, values, spec_errors(exc), status=422)
    try:
        job = service.create_job(
            session=session,
            store=store,
            model=first.get("model", ""),
            training_file=first.get("training_file", ""),
            validation_file=first.get("validation_file") or None,
            suffix=first.get("suffix") or None,
            seed=int(first["seed"]) if first.get("seed", "").isdigit() else None,
            spec=spec,
        )
    except service.InvalidJobRequest as exc:
        return _form_page(request, session, values, {exc.param: str(exc)}, status=400)
    except service.AdviceBlocked as exc:
        errors = {check.field or "form": check.message for check in exc.checks}
        return _form_page(request, session, values, errors, status=422)
    commit(session)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.post("/presets", response_class=HTMLResponse)
async def save_preset_form(request: Request, session: SessionDep) -> Response:
    """Save the form's hyperparameters as a preset, then show the form with it chosen."""
    fields, first = await _read_form(request)
    values: dict[str, Any] = {**first, "hyperparameters": first}
    try:
        body = PresetCreate(
            name=first.get("preset_name", ""),
            description=first.get("preset_description", ""),
            hyperparameters=parse_spec_form(fields),
        )
    except ValidationError as exc:
        errors = {_PRESET_INPUTS.get(k, k): message for k, message in spec_errors(exc).items()}
        return _form_page(request, session, values, errors, status=422)
    try:
        preset = create_preset(
            session=session, name=body.name, description=body.description, spec=body.hyperparameters
        )
    except PresetConflict as exc:
        return _form_page(request, session, values, {"preset_name": str(exc)}, status=409)
    commit(session)
    kept = {key: first[key] for key in KEPT_FIELDS if first.get(key)}
    return RedirectResponse(f"/jobs/new?{urlencode({'preset': preset.id, **kept})}", status_code=303)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, session: SessionDep, job_id: str) -> Response:
    job = service.get_job(session=session, job_id=job_id)
    events, _ = service.list_events(session=session, job_id=job_id, limit=200)
    context = {
        "job": job,
        "public": JobPublic.of(job),
        "progress": service.progress(job),
        "events": list(reversed(events)),
        "alerts": service.list_alerts(session=session, job_id=job_id),
        "merge": merging.latest_merge(session=session, job_id=job_id),
        "checkpoints": service.list_checkpoints(session=session, job_id=job_id),
        "filenames": dataset_filenames(session=session, ids={job.training_file, job.validation_file or ""}),
    }
    return templates.TemplateResponse(request, "pages/job.html", context)


@router.post("/jobs/{job_id}/cancel")
def cancel_job_form(session: SessionDep, job_id: str) -> Response:
    service.cancel_job(session=session, job_id=job_id)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/checkpoints", response_class=HTMLResponse)
def checkpoints_partial(request: Request, session: SessionDep, job_id: str) -> Response:
    job = service.get_job(session=session, job_id=job_id)
    context = {"job": job, "checkpoints": service.list_checkpoints(session=session, job_id=job_id)}
    return templates.TemplateResponse(request, "partials/jobs/checkpoints.html", context)


@router.post("/jobs/{job_id}/merge")
def merge_job_form(session: SessionDep, job_id: str) -> Response:
    merging.request_merge(session=session, job_id=job_id)
    commit(session)
    return RedirectResponse(f"/jobs/{job_id}#merge", status_code=303)


@router.get("/jobs/{job_id}/merge", response_class=HTMLResponse)
def merge_partial(request: Request, session: SessionDep, job_id: str) -> Response:
    job = service.get_job(session=session, job_id=job_id)
    context = {"job": job, "merge": merging.latest_merge(session=session, job_id=job_id)}
    return templates.TemplateResponse(request, "partials/jobs/merge.html", context)
