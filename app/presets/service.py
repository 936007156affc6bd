"""Presets: list the built-ins and the saved ones, save new ones, delete saved ones."""

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.core.errors import Conflict, NotFound
from app.core.ids import new_id
from app.core.spec import TrainingSpec
from app.core.tables import Preset
from app.presets.builtins import BUILTIN_PRESETS, BUILTINS_BY_ID, BuiltinPreset

AnyPreset = BuiltinPreset | Preset


class PresetConflict(Conflict):
    """The name is taken, or the preset is built-in and cannot change; ``param`` says which field."""


def preset_values(preset: AnyPreset) -> dict[str, Any]:
    """Every spec field's value: the preset's own, and the seed's default for fields it predates."""
    if isinstance(preset, BuiltinPreset):
        return preset.spec().model_dump(mode="json")
    defaults = TrainingSpec().model_dump(mode="json")
    return defaults | {key: value for key, value in preset.values.items() if key in defaults}


def list_presets(*, session: Session) -> list[AnyPreset]:
    """The built-ins first, then the saved presets by name."""
    saved = session.exec(select(Preset).order_by(col(Preset.name_key), col(Preset.id))).all()
    return [*BUILTIN_PRESETS, *saved]


def get_preset(*, session: Session, preset_id: str) -> AnyPreset:
    """A built-in (by its name) or a saved preset (by its ``preset-…`` id), or NotFound."""
    preset = BUILTINS_BY_ID.get(preset_id) or session.get(Preset, preset_id)
    if preset is None:
        raise NotFound(f"no preset with id {preset_id!r}")
    return preset


def create_preset(*, session: Session, name: str, description: str, spec: TrainingSpec) -> Preset:
    """Save ``spec`` under ``name``, which no other preset (built-ins included) has in any case."""
    key = name.lower()
    taken = (
        key in {b.name.lower() for b in BUILTIN_PRESETS}
        or session.exec(select(Preset.id).where(Preset.name_key == key)).first()
    )
    if taken:
        raise PresetConflict(f"a preset named {name!r} already exists", code="duplicate_name", param="name")
    preset = Preset(
        id=new_id("preset"),
        name=name,
        name_key=key,
        description=description,
        values=spec.model_dump(mode="json"),
    )
    session.add(preset)
    try:
        session.flush()
    except IntegrityError:  # saved by a concurrent request since the check above
        raise PresetConflict(
            f"a preset named {name!r} already exists", code="duplicate_name", param="name"
        ) from None
    return preset


def delete_preset(*, session: Session, preset_id: str) -> None:
    """Delete a saved preset; built-ins cannot be deleted."""
    preset = get_preset(session=session, preset_id=preset_id)
    if isinstance(preset, BuiltinPreset):
        raise PresetConflict("built-in presets cannot be deleted", code="builtin_preset")
    session.delete(preset)
    session.flush()
