"""Request and response shapes of the presets API."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.core.spec import TrainingSpec
from app.presets.builtins import BuiltinPreset
from app.presets.service import AnyPreset, preset_values

PresetName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 ._-]+$"),
]


class PresetCreate(BaseModel):
    """POST /api/v1/presets: ``hyperparameters`` may be partial; the rest take the seed's defaults."""

    name: PresetName = Field(description="1–64 letters, digits, spaces, '-', '_' or '.'; unique in any case")
    description: str = Field("", max_length=200, description="One line on when to use it")
    hyperparameters: TrainingSpec = Field(default_factory=TrainingSpec)


class PresetPublic(BaseModel):
    id: str
    object: Literal["preset"] = "preset"
    name: str
    description: str
    builtin: bool
    created_at: int | None = Field(description="Unix seconds; null for built-ins")
    hyperparameters: dict[str, Any] = Field(description="Every training-spec field")

    @classmethod
    def of(cls, preset: AnyPreset) -> "PresetPublic":
        return cls(
            id=preset.id,
            name=preset.name,
            description=preset.description,
            builtin=isinstance(preset, BuiltinPreset),
            created_at=None if isinstance(preset, BuiltinPreset) else int(preset.created_at.timestamp()),
            hyperparameters=preset_values(preset),
        )


class PresetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PresetPublic]


class PresetDeleted(BaseModel):
    id: str
    object: Literal["preset"] = "preset"
    deleted: Literal[True] = True
