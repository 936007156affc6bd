"""HTML page listing base models and finished adapters."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.api.deps import SessionDep
from app.basemodels import service
from app.web import templates

router = APIRouter(include_in_schema=False)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep) -> Response:
    context = {
        "models": service.list_models(session=session),
        "adapters": service.list_adapters(session=session),
    }
    return templates.TemplateResponse(request, "pages/models.html", context)
