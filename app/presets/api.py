"""REST: /api/v1/presets — named sets of hyperparameters to start jobs from."""

from fastapi import APIRouter

from app.http.deps import SessionDep, commit
from app.presets import service
from app.presets.schemas import PresetCreate, PresetDeleted, PresetList, PresetPublic

router = APIRouter(prefix="/api/v1/presets", tags=["presets"])


@router.get("", response_model=PresetList, summary="Built-in presets first, then saved ones")
def list_presets(session: SessionDep) -> PresetList:
    return PresetList(data=[PresetPublic.of(p) for p in service.list_presets(session=session)])


@router.get("/{preset_id}", response_model=PresetPublic)
def get_preset(session: SessionDep, preset_id: str) -> PresetPublic:
    return PresetPublic.of(service.get_preset(session=session, preset_id=preset_id))


@router.post("", response_model=PresetPublic, summary="Save hyperparameters as a named preset")
def create_preset(session: SessionDep, body: PresetCreate) -> PresetPublic:
    preset = service.create_preset(
        session=session, name=body.name, description=body.description, spec=body.hyperparameters
    )
    commit(session)
    return PresetPublic.of(preset)


@router.delete("/{preset_id}", response_model=PresetDeleted, summary="Delete a saved preset")
def delete_preset(session: SessionDep, preset_id: str) -> PresetDeleted:
    service.delete_preset(session=session, preset_id=preset_id)
    commit(session)
    return PresetDeleted(id=preset_id)
