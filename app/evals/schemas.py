"""Request and response shapes of /api/v1/evals, as OpenAI's Evals API has them (so its official
client works unchanged), plus tunedeck's additions, named as such: the ``job_validation`` source
(a job's validation split as items) and ``report_url`` pointing at our own run page.

Requests are checked here, before anything is stored: a criterion or data source tunedeck cannot
run is a 422 that says why and what to use instead.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.errors import Unprocessable
from app.core.evaltemplates import METRICS

Metadata = dict[str, str]
OPERATIONS = ("eq", "ne", "like", "ilike")
MAX_ITEMS = 5000  # items in one run
MAX_CRITERIA = 20


class EvalInvalid(Unprocessable):
    """An eval or run that cannot be run as asked (a 422 naming the field)."""

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message, param=param, code=code)


def check_metadata(value: Metadata | None) -> Metadata | None:
    """OpenAI's limits: at most 16 pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if len(value) > 16:
        raise ValueError("metadata holds at most 16 key-value pairs")
    for key, item in value.items():
        if len(key) > 64 or len(item) > 512:
            raise ValueError("metadata keys are at most 64 characters and values at most 512")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- testing criteria ---------------------------------------------------------------------------


class Message(_Body):
    """A message of a judge's prompt or a run's template: ``content`` is text or OpenAI's parts."""

    role: str = Field(min_length=1, max_length=32)
    content: str | dict[str, Any] | list[Any]
    type: Literal["message"] | None = None


class StringCheck(_Body):
    type: Literal["string_check"]
    name: str = Field(min_length=1, max_length=256)
    input: str = Field(max_length=20_000)
    reference: str = Field(max_length=20_000)
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarity(_Body):
    type: Literal["text_similarity"]
    name: str = Field(min_length=1, max_length=256)
    input: str = Field(max_length=20_000)
    reference: str = Field(max_length=20_000)
    evaluation_metric: str
    pass_threshold: float = Field(ge=0, le=1)

    @field_validator("evaluation_metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric == "cosine":
            raise ValueError(
                "cosine similarity needs an embedding model, and this tunedeck has none configured; "
                f"use one of {', '.join(METRICS)}"
            )
        if metric not in METRICS:
            raise ValueError(f"evaluation_metric must be one of {', '.join(METRICS)}")
        return metric


class JudgeSampling(_Body):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    max_completions_tokens: int | None = Field(default=None, ge=1, le=4096)  # OpenAI's spelling here


class ScoreModel(_Body):
    type: Literal["score_model"]
    name: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=300)
    input: list[Message] = Field(min_length=1, max_length=20)
    range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    sampling_params: JudgeSampling | None = None
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _threshold_in_range(self) -> "ScoreModel":
        low, high = self.range or (0.0, 1.0)
        if low >= high:
            raise ValueError("range is [low, high] with low below high")
        if self.pass_threshold is not None and not low <= self.pass_threshold <= high:
            raise ValueError(f"pass_threshold must lie within range [{low}, {high}]")
        return self


class LabelModel(_Body):
    type: Literal["label_model"]
    name: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=300)
    input: list[Message] = Field(min_length=1, max_length=20)
    labels: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=2, max_length=50)
    passing_labels: list[str] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _passing_are_labels(self) -> "LabelModel":
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels must be among labels; not a label: {', '.join(unknown)}")
        return self


class MultipleChoice(_Body):
    """tunedeck's (not OpenAI's): the run's model picks the choice it finds likeliest as its reply
    to ``input`` (the summed log-probability of each choice's tokens; no generation), and passes
    when that is ``answer``: MMLU-style items (question, choices, answer) graded by accuracy."""

    type: Literal["multiple_choice"]
    name: str = Field(min_length=1, max_length=256)
    input: list[Message] = Field(min_length=1, max_length=20)
    choices: str = Field(description="an item field holding the list of choices, e.g. {{item.choices}}")
    answer: str = Field(description="the right choice: its 0-based index, its letter (A, B, …) or its text")

    @field_validator("choices")
    @classmethod
    def _one_field(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"\s*\{\{\s*item\.[A-Za-z0-9_.\-]+\s*\}\}\s*", value):
            raise ValueError("choices names one item field that holds a list, e.g. {{item.choices}}")
        return value


class Classification(_Body):
    """tunedeck's (not OpenAI's): the run's model is a SEQ_CLS job's classifier (its adapter or a
    checkpoint); it labels ``input`` and passes when the label is ``reference``. The run reports
    the criterion's accuracy and macro-F1 over all items beside the pass counts."""

    type: Literal["classification"]
    name: str = Field(min_length=1, max_length=256)
    input: str = Field(description="the text to classify, e.g. {{item.text}}")
    reference: str = Field(description="the right label, e.g. {{item.label}}")


Criterion = StringCheck | TextSimilarity | ScoreModel | LabelModel | MultipleChoice | Classification
CRITERIA: dict[str, type[BaseModel]] = {
    "string_check": StringCheck,
    "text_similarity": TextSimilarity,
    "score_model": ScoreModel,
    "label_model": LabelModel,
    "multiple_choice": MultipleChoice,
    "classification": Classification,
}
REFUSED = {
    "python": "python graders run the code they are given, and tunedeck runs no user code on its "
    "servers; use string_check, text_similarity, score_model or label_model",
    "multi": "multi graders are not supported; list each grader as its own testing criterion",
}


def parse_criterion(raw: Any, index: int) -> Criterion:
    """One testing criterion, or an EvalInvalid naming it and what is wrong."""
    from pydantic import ValidationError

    param = f"testing_criteria[{index}]"
    if not isinstance(raw, dict):
        raise EvalInvalid("each testing criterion is an object with a type", param=param)
    kind = raw.get("type")
    if kind in REFUSED:
        raise EvalInvalid(f"{param}: {REFUSED[kind]}", param=f"{param}.type", code="unsupported_grader")
    model = CRITERIA.get(str(kind))
    if model is None:
        raise EvalInvalid(
            f"{param}.type must be one of {', '.join(CRITERIA)} (got {kind!r})", param=f"{param}.type"
        )
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        raise EvalInvalid(
            f"{param}.{where}: {message}" if where else f"{param}: {message}", param=param
        ) from None


# --- evals ----------------------------------------------------------------------------------------


class CustomConfig(_Body):
    type: Literal["custom"]
    item_schema: dict[str, Any]
    include_sample_schema: bool = False


class EvalCreate(_Body):
    name: str | None = Field(default=None, max_length=256)
    metadata: Metadata | None = None
    data_source_config: dict[str, Any]
    testing_criteria: list[Any] = Field(min_length=1, max_length=MAX_CRITERIA)

    _check_metadata = field_validator("metadata")(check_metadata)


class EvalUpdate(_Body):
    name: str | None = Field(default=None, max_length=256)
    metadata: Metadata | None = None

    _check_metadata = field_validator("metadata")(check_metadata)


class EvalPublic(BaseModel):
    id: str
    object: Literal["eval"] = "eval"
    created_at: int
    name: str
    metadata: Metadata | None
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]


class EvalList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EvalPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class EvalDeleted(BaseModel):
    object: Literal["eval.deleted"] = "eval.deleted"
    deleted: bool = True
    eval_id: str


# --- runs -----------------------------------------------------------------------------------------


class SamplingParams(_Body):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)


class RunCreate(_Body):
    name: str | None = Field(default=None, max_length=256)
    metadata: Metadata | None = None
    data_source: dict[str, Any]

    _check_metadata = field_validator("metadata")(check_metadata)


class ResultCounts(BaseModel):
    total: int
    errored: int
    failed: int
    passed: int


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class CriterionResult(BaseModel):
    testing_criteria: str
    passed: int
    failed: int
    accuracy: float | None = Field(None, description="tunedeck's: classification criteria, over all items")
    macro_f1: float | None = Field(None, description="tunedeck's: classification criteria, over all items")


class RunPublic(BaseModel):
    id: str
    object: Literal["eval.run"] = "eval.run"
    eval_id: str
    name: str
    created_at: int
    status: str
    model: str
    data_source: dict[str, Any]
    error: dict[str, str] | None
    metadata: Metadata | None
    report_url: str
    result_counts: ResultCounts
    per_model_usage: list[ModelUsage]
    per_testing_criteria_results: list[CriterionResult]


class RunList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RunPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class RunDeleted(BaseModel):
    object: Literal["eval.run.deleted"] = "eval.run.deleted"
    deleted: bool = True
    run_id: str


class OutputItemPublic(BaseModel):
    id: str
    object: Literal["eval.run.output_item"] = "eval.run.output_item"
    created_at: int
    eval_id: str
    run_id: str
    status: str
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    sample: dict[str, Any]


class OutputItemList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OutputItemPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool
