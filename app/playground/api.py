"""REST: /api/v1/playground — blind votes with their leaderboard, and batch comparisons."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from app.auth.deps import CurrentUser
from app.http.deps import SessionDep, StoreDep, commit
from app.playground import batch as batches
from app.playground import exports, service
from app.playground.schemas import BatchCreate, BatchPublic, JudgeRequest, VoteCreate, VotePublic, VoteSummary

router = APIRouter(prefix="/api/v1/playground", tags=["playground"])


@router.post("/votes", response_model=VotePublic, summary="Record a blind A/B vote between two served models")
def create_vote(session: SessionDep, store: StoreDep, user: CurrentUser, body: VoteCreate) -> Response:
    vote = service.record_vote(session=session, store=store, viewer_id=user.viewer_id, **body.model_dump())
    commit(session)
    return JSONResponse(VotePublic.of(vote).model_dump())


@router.get("/votes/summary", response_model=VoteSummary, summary="Wins, losses, ties and win rate per model")
def vote_summary(session: SessionDep, user: CurrentUser, judged: bool = False) -> VoteSummary:
    """People's blind votes; with ``judged=true`` (tunedeck's) a judge model's pairwise verdicts."""
    return service.vote_summary(session=session, viewer_id=user.viewer_id, judged=judged)


@router.post(
    "/batches", response_model=BatchPublic, summary="Answer prompts with 2–4 models, in the background"
)
def create_batch(session: SessionDep, store: StoreDep, user: CurrentUser, body: BatchCreate) -> Response:
    batch = batches.create_batch(
        session=session, store=store, body=body, viewer_id=user.viewer_id, owner_id=user.user_id
    )
    commit(session)
    return JSONResponse(BatchPublic.of(batch, []).model_dump(mode="json"))


@router.get(
    "/batches/{batch_id}", response_model=BatchPublic, summary="Status, progress and the answers so far"
)
def get_batch(session: SessionDep, user: CurrentUser, batch_id: str) -> BatchPublic:
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    return BatchPublic.of(batch, batches.batch_rows(session=session, batch=batch))


@router.get("/batches/{batch_id}/export.csv", summary="The answers as CSV: prompt, then one column per model")
def export_csv(session: SessionDep, user: CurrentUser, batch_id: str) -> Response:
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    text = exports.to_csv(batch.models, batches.batch_rows(session=session, batch=batch))
    disposition = f'attachment; filename="{batch.id}.csv"'
    return Response(text, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": disposition})


@router.get("/batches/{batch_id}/export.jsonl", summary="The answers as JSON lines, one object per prompt")
def export_jsonl(session: SessionDep, user: CurrentUser, batch_id: str) -> Response:
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    text = exports.to_jsonl(batch.models, batches.batch_rows(session=session, batch=batch))
    disposition = f'attachment; filename="{batch.id}.jsonl"'
    return Response(text, media_type="application/x-ndjson", headers={"Content-Disposition": disposition})


@router.post(
    "/batches/{batch_id}/judge",
    response_model=BatchPublic,
    summary="Have a served model judge the batch's answers pairwise (both orders), as judge votes",
)
def judge_batch(
    session: SessionDep, store: StoreDep, user: CurrentUser, batch_id: str, body: JudgeRequest
) -> BatchPublic:
    batch = batches.get_batch(session=session, batch_id=batch_id, viewer_id=user.viewer_id)
    batches.request_judge(
        session=session, store=store, batch=batch, judge=body.model, viewer_id=user.viewer_id
    )
    commit(session)
    return BatchPublic.of(batch, batches.batch_rows(session=session, batch=batch))
