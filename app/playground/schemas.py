"""Request and response shapes of /api/v1/playground."""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from app.core.tables import BatchRun, BatchStatus, Vote

Winner = Literal["a", "b", "tie"]
MAX_PROMPTS = 100


class VoteCreate(BaseModel):
    """POST /api/v1/playground/votes: which of two blind answers was better."""

    model_a: str = Field(min_length=1, max_length=300, description="The served model shown as A")
    model_b: str = Field(min_length=1, max_length=300, description="The served model shown as B")
    winner: Winner = Field(description="a, b or tie")
    prompt: str = Field("", max_length=100_000, description="The prompt; stored cut to 2000 characters")

    @model_validator(mode="after")
    def _two_models(self) -> Self:
        if self.model_a == self.model_b:
            raise ValueError("model_a and model_b must be two different models")
        return self


class VotePublic(BaseModel):
    id: str
    object: Literal["playground.vote"] = "playground.vote"
    model_a: str
    model_b: str
    winner: str
    prompt: str
    created_at: int

    @classmethod
    def of(cls, vote: Vote) -> "VotePublic":
        return cls(
            id=vote.id,
            model_a=vote.model_a,
            model_b=vote.model_b,
            winner=vote.winner,
            prompt=vote.prompt,
            created_at=int(vote.created_at.timestamp()),
        )


class Record(BaseModel):
    wins: int = 0
    losses: int = 0
    ties: int = 0
    games: int = 0
    win_rate: float | None = Field(None, description="(wins + ties / 2) / games")


class HeadToHead(Record):
    opponent: str


class ModelScore(Record):
    model: str
    vs_base: HeadToHead | None = Field(None, description="Games against its base model, if any")


class VoteSummary(BaseModel):
    object: Literal["list"] = "list"
    votes: int
    data: list[ModelScore]


class BatchSource(BaseModel):
    job_id: str = Field(max_length=64, description="Use this job's validation split as the prompts")


class BatchCreate(BaseModel):
    """POST /api/v1/playground/batches: the same prompts to 2–4 models, answered in the background."""

    models: Annotated[list[str], Field(min_length=2, max_length=4, description="2–4 served model names")]
    prompts: list[Annotated[str, Field(max_length=8000)]] | None = Field(
        None, max_length=MAX_PROMPTS, description="The prompts (blank ones are skipped)"
    )
    source: BatchSource | None = Field(None, description="Or: a job whose validation split holds the prompts")
    limit: int = Field(MAX_PROMPTS, ge=1, le=MAX_PROMPTS, description="Use at most this many prompts")
    max_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.prompts is None) == (self.source is None):
            raise ValueError("give either prompts or source, not both")
        if len(set(self.models)) != len(self.models):
            raise ValueError("models must be different from each other")
        return self


class BatchCell(BaseModel):
    output: str | None
    latency_s: float | None


class BatchRow(BaseModel):
    prompt_index: int
    prompt: str
    outputs: dict[str, BatchCell]


class JudgeRequest(BaseModel):
    model: str = Field(max_length=300, description="a served model that judges which answer is better")


class BatchPublic(BaseModel):
    id: str
    object: Literal["playground.batch"] = "playground.batch"
    models: list[str]
    status: BatchStatus
    progress: int
    total: int
    max_tokens: int
    temperature: float
    source_job: str | None
    created_at: int
    finished_at: int | None
    error: str | None
    judge: str | None = Field(None, description="tunedeck's: the model judging the answers pairwise")
    judge_status: str | None = Field(None, description="queued, running, succeeded or failed")
    judge_error: str | None = None
    rows: list[BatchRow] = Field(default_factory=list)

    @classmethod
    def of(cls, batch: BatchRun, rows: list[BatchRow]) -> "BatchPublic":
        return cls(
            id=batch.id,
            models=batch.models,
            status=batch.status,
            progress=batch.progress,
            total=batch.total,
            max_tokens=batch.max_tokens,
            temperature=batch.temperature,
            source_job=batch.source_job,
            created_at=int(batch.created_at.timestamp()),
            finished_at=int(batch.finished_at.timestamp()) if batch.finished_at else None,
            error=batch.error,
            judge=batch.judge,
            judge_status=batch.judge_status,
            judge_error=batch.judge_error,
            rows=rows,
        )
