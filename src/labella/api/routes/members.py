"""Project members and their roles, and the project's audit log (history and export)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse

from labella.api.deps import MAX_ID, DbDep, PathId
from labella.api.policy import BrowseItems, ManageMembers, ViewAudit, ViewProject
from labella.api.schemas import AuditEventOut, AuditPageOut, MemberIn, MemberOut, MemberPatch
from labella.services import accounts, audit

router = APIRouter(prefix="/api/projects/{project_id}", tags=["members"])


@router.get("/members", response_model=list[MemberOut])
def list_members(project_id: PathId, db: DbDep, member: ViewProject) -> list[MemberOut]:
    """Who works on the project, with their roles."""
    return [MemberOut.model_validate(m) for m in accounts.list_members(db, project_id)]


@router.post("/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
def add_member(project_id: PathId, body: MemberIn, db: DbDep, member: ManageMembers) -> MemberOut:
    """Add an existing user with a role (only owners may make owners)."""
    added = accounts.add_member(
        db, project_id, body.username, body.role, actor=member.username, actor_role=member.role
    )
    return MemberOut.model_validate(added)


@router.patch("/members/{username}", response_model=MemberOut)
def change_role(
    project_id: PathId, username: str, body: MemberPatch, db: DbDep, member: ManageMembers
) -> MemberOut:
    changed = accounts.change_role(
        db, project_id, username, body.role, actor=member.username, actor_role=member.role
    )
    return MemberOut.model_validate(changed)


@router.delete("/members/{username}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(project_id: PathId, username: str, db: DbDep, member: ManageMembers) -> Response:
    accounts.remove_member(db, project_id, username, actor=member.username, actor_role=member.role)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- audit -----------------------------------------------------------------------------------------
@router.get("/audit", response_model=AuditPageOut)
def project_audit(
    project_id: PathId,
    db: DbDep,
    member: ViewAudit,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    action: Annotated[
        str | None, Query(max_length=60, description="e.g. import, member, autolabel.run")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> AuditPageOut:
    """The project's audit events (imports, exports, auto-label runs, training requests,
    settings, classes, members, reviews), newest first. Labels are in the export and in each
    item's history."""
    events = audit.list_events(db, project_id, before_id=before_id, action=action, limit=limit)
    return AuditPageOut(
        events=[AuditEventOut.model_validate(e) for e in events],
        next_before_id=events[-1].event_id if len(events) == limit else None,
    )


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    summary="The project's whole history (labels and audit events), oldest first",
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
def export_audit(
    project_id: PathId,
    db: DbDep,
    member: ViewAudit,
    fmt: Annotated[str, Query(alias="format", description="csv or jsonl")] = "csv",
) -> StreamingResponse:
    stream = audit.iter_export(db, project_id, fmt=fmt, actor=member.username)
    return StreamingResponse(
        iter(stream),
        media_type=stream.media_type,
        headers={"Content-Disposition": f'attachment; filename="{stream.filename}"'},
    )


@router.get("/items/{item_id}/audit", response_model=list[AuditEventOut])
def item_audit(
    project_id: PathId, item_id: PathId, db: DbDep, member: BrowseItems
) -> list[AuditEventOut]:
    """Everything that happened to one item, oldest first: every answer, change, skip and
    auto-label with who and when, and review decisions."""
    return [AuditEventOut.model_validate(e) for e in audit.item_timeline(db, project_id, item_id)]
