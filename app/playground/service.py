"""Playground votes and the model lists its pages show; shared by the JSON API and the pages."""

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.catalog import ServedModel, served_models
from app.core.errors import Unprocessable
from app.core.ids import new_id
from app.core.storage import ArtifactStore
from app.core.tables import Job, Vote
from app.core.tables.playground import PROMPT_CHARS
from app.core.visibility import hidden_clause
from app.playground.schemas import HeadToHead, ModelScore, Record, VoteSummary, Winner

KIND_TITLES = {"base": "Base models", "adapter": "Adapters", "checkpoint": "Checkpoints", "merged": "Merged"}


class PlaygroundInvalid(Unprocessable):
    """A request names models that are not served, or asks for something impossible (a 422)."""

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message, param=param, code=code)


def model_groups(models: list[ServedModel]) -> list[tuple[str, list[ServedModel]]]:
    """Served models grouped by kind for pickers: bases, adapters, checkpoints, merged."""
    return [(title, [m for m in models if m.kind == kind]) for kind, title in KIND_TITLES.items()]


def default_models(models: list[ServedModel]) -> list[str]:
    """The two panes a fresh playground opens with: the base and the newest adapter."""
    if not models:
        return []
    base = models[0]
    adapters = [m for m in models if m.kind == "adapter" and m.base == base.id] or models[1:2] or [base]
    return [base.id, adapters[0].id]


def check_served(
    *, session: Session, store: ArtifactStore, names: list[str], param: str, viewer_id: int | None = None
) -> None:
    """Raise PlaygroundInvalid naming every one of ``names`` that is not a model this user may use."""
    known = {m.id for m in served_models(session, store, viewer_id=viewer_id)}
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise PlaygroundInvalid(
            f"not a served model: {listed}; GET /v1/models lists them", param=param, code="model_not_found"
        )


def record_vote(
    *,
    session: Session,
    store: ArtifactStore,
    model_a: str,
    model_b: str,
    winner: Winner,
    prompt: str,
    viewer_id: int | None = None,
) -> Vote:
    """Store one blind verdict between two served models."""
    check_served(session=session, store=store, names=[model_a, model_b], param="model", viewer_id=viewer_id)
    vote = Vote(
        id=new_id("vote"), model_a=model_a, model_b=model_b, winner=winner, prompt=prompt[:PROMPT_CHARS]
    )
    session.add(vote)
    session.flush()
    return vote


@dataclass
class _Tally:
    wins: int = 0
    losses: int = 0
    ties: int = 0

    def add(self, outcome: str, count: int) -> None:
        setattr(self, outcome, getattr(self, outcome) + count)

    def record(self) -> Record:
        games = self.wins + self.losses + self.ties
        rate = (self.wins + self.ties / 2) / games if games else None
        return Record(wins=self.wins, losses=self.losses, ties=self.ties, games=games, win_rate=rate)


_OUTCOMES = {"a": ("wins", "losses"), "b": ("losses", "wins"), "tie": ("ties", "ties")}


def base_of(model: str) -> str:
    """A served name's base model: the part before the first ':' (names are ``<base>:<job>…``)."""
    return model.split(":", 1)[0]


def hidden_models(*, session: Session, names: set[str], viewer_id: int | None) -> set[str]:
    """Which of the served ``names`` are adapters, checkpoints or merges of jobs ``viewer_id`` may
    not see (other users' private jobs); None is an admin, who sees every one."""
    if viewer_id is None:
        return set()
    job_ids = {name.split(":")[1] for name in names if name.count(":") >= 1}
    if not job_ids:
        return set()
    query = select(Job.id).where(col(Job.id).in_(job_ids), hidden_clause(Job, viewer_id))
    private = set(session.exec(query).all())
    return {name for name in names if name.count(":") >= 1 and name.split(":")[1] in private}


def vote_summary(*, session: Session, viewer_id: int | None, judged: bool = False) -> VoteSummary:
    """Per model: wins, losses, ties, games, win rate and the record against its base model.
    People's blind votes, or with ``judged`` a judge model's pairwise verdicts on batch compares.
    Models of jobs ``viewer_id`` may not see are left out (their games still count for the other
    side: a model's record does not depend on who reads it)."""
    query = (
        select(Vote.model_a, Vote.model_b, Vote.winner, func.count())
        .where(col(Vote.judge).is_not(None) if judged else col(Vote.judge).is_(None))
        .group_by(col(Vote.model_a), col(Vote.model_b), col(Vote.winner))
    )
    overall: dict[str, _Tally] = defaultdict(_Tally)
    pairs: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    votes = 0
    for model_a, model_b, winner, count in session.exec(query).all():
        outcome_a, outcome_b = _OUTCOMES[winner]
        overall[model_a].add(outcome_a, count)
        overall[model_b].add(outcome_b, count)
        pairs[model_a, model_b].add(outcome_a, count)
        pairs[model_b, model_a].add(outcome_b, count)
        votes += count
    hidden = hidden_models(session=session, names=set(overall), viewer_id=viewer_id)
    scores = []
    for model, tally in overall.items():
        if model in hidden:
            continue
        base = base_of(model)
        versus = pairs.get((model, base))
        vs_base = HeadToHead(opponent=base, **versus.record().model_dump()) if versus else None
        scores.append(ModelScore(model=model, vs_base=vs_base, **tally.record().model_dump()))
    scores.sort(key=lambda s: (-(s.win_rate or 0), -s.games, s.model))
    return VoteSummary(votes=votes, data=scores)


def recent_jobs(*, session: Session, limit: int = 50) -> list[Job]:
    """Jobs whose validation split can feed a batch comparison, newest first."""
    return list(session.exec(select(Job).order_by(col(Job.created_at).desc()).limit(limit)).all())
