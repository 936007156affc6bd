"""HTML page listing base models and finished adapters with their lineage."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.api.deps import SessionDep
from app.basemodels import service
from app.web import templates

router = APIRouter(include_in_schema=False)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep) -> Response:
    lineages = service.adapter_lineages(session=session)
    context = {
        "models": service.list_models(session=session),
        "lineages": lineages,
        "adapter_counts": service.adapter_counts(lineages),
    }
    return templates.TemplateResponse(request, "pages/models.html", context)
