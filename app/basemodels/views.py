"""HTML page listing base models and finished adapters with their lineage."""

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.access import can_see
from app.auth.deps import CurrentUser
from app.basemodels import service
from app.http.deps import SessionDep
from app.http.templates import templates

router = APIRouter(include_in_schema=False)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    lineages = [
        replace(
            item,
            dataset=item.dataset if item.dataset and can_see(item.dataset, user) else None,
            parent=item.parent if item.parent and can_see(item.parent, user) else None,
        )
        for item in service.adapter_lineages(session=session)
        if can_see(item.job, user)
    ]
    context = {
        "models": service.list_models(session=session),
        "lineages": lineages,
        "adapter_counts": service.adapter_counts(lineages),
    }
    return templates.TemplateResponse(request, "pages/models.html", context)
