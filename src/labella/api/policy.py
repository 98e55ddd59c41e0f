"""The one place that decides who may do what in a project.

Every route under ``/api/projects/{project_id}/...`` declares exactly one permission through
:func:`require` (or one of the ``Annotated`` aliases below); the route then gets the caller's
:class:`Member` (user, project id, role). A caller who is not a member of the project gets the same
404 a missing project gives, so project ids reveal nothing; a member whose role lacks the
permission gets a 403 that names it.

Site administrators (``user_account.is_admin``, the installation's owner) act as owner of every
project. Routes that are not about one project use :data:`CurrentUserDep` (any signed-in user) or
:data:`AdminDep` (site administrators only).

``tests/api/test_policy.py`` walks ``app.routes`` and fails for any API route without one of these
dependencies, and checks every role against every endpoint.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from labella.api.auth import CurrentUserDep, current_user
from labella.api.deps import DbDep, PathId
from labella.errors import Forbidden, NotFound
from labella.services import accounts
from labella.services.accounts import Principal
from labella.storage.models import ProjectRole


class Action(enum.StrEnum):
    """A permission within a project."""

    VIEW_PROJECT = "view_project"  # the project, its classes, counts, models, jobs, stopping
    BROWSE_ITEMS = "browse_items"  # the items table, any item's history, the queue preview
    LABEL = "label"  # take the next batch, label or skip the items served to oneself
    VIEW_OWN_WORK = "view_own_work"  # one's own labels and statistics
    CHANGE_LABELS = "change_labels"  # label any item, including ones others labeled
    REVIEW = "review"  # the review queue and its decisions
    MANAGE_PROJECT = "manage_project"  # settings, classes, evaluation sample, re-ranking, jobs
    IMPORT_EXPORT = "import_export"  # imports and exports of items and labels
    TRAIN = "train"  # train a model on demand
    AUTOLABEL = "autolabel"  # preview and apply auto-labeling
    MANAGE_MEMBERS = "manage_members"  # add, remove members and change their roles
    VIEW_AUDIT = "view_audit"  # the project's audit log and its export
    DELETE_PROJECT = "delete_project"  # delete the project, hand ownership over


_ANNOTATOR = frozenset({Action.VIEW_PROJECT, Action.LABEL, Action.VIEW_OWN_WORK})
_REVIEWER = _ANNOTATOR | {Action.BROWSE_ITEMS, Action.CHANGE_LABELS, Action.REVIEW}
_MANAGER = frozenset(Action) - {Action.DELETE_PROJECT}
_OWNER = frozenset(Action)

#: role -> the permissions it grants. The single source of truth; the web UI asks the API.
ROLE_ACTIONS: dict[ProjectRole, frozenset[Action]] = {
    ProjectRole.OWNER: _OWNER,
    ProjectRole.MANAGER: _MANAGER,
    ProjectRole.REVIEWER: frozenset(_REVIEWER),
    ProjectRole.ANNOTATOR: _ANNOTATOR,
}


def allows(role: str | ProjectRole, action: Action) -> bool:
    try:
        return action in ROLE_ACTIONS[ProjectRole(role)]
    except ValueError:  # a role this version does not know grants nothing
        return False


def role_actions(role: str | ProjectRole) -> list[str]:
    """The permissions of a role, sorted, for API answers (the UI shows what it may use)."""
    try:
        return sorted(a.value for a in ROLE_ACTIONS[ProjectRole(role)])
    except ValueError:
        return []


@dataclass(frozen=True)
class Member:
    """The caller as a member of one project."""

    user: Principal
    project_id: int
    role: ProjectRole

    @property
    def username(self) -> str:
        return self.user.username

    def may(self, action: Action) -> bool:
        return allows(self.role, action)


def project_not_found(project_id: int) -> NotFound:
    # Word for word what repositories.get_project says for a missing project, so that a project
    # one is not a member of cannot be told apart from one that does not exist.
    return NotFound(f"project {project_id} does not exist")


def resolve_member(db: DbDep, user: Principal, project_id: int, action: Action) -> Member:
    """The caller's membership of ``project_id`` if their role allows ``action``."""
    role = accounts.project_role(db, project_id, user)
    if role is None:
        raise project_not_found(project_id)
    member = Member(user=user, project_id=project_id, role=ProjectRole(role))
    if not member.may(action):
        raise Forbidden(
            f"your role in project {project_id} ({member.role.value}) does not allow "
            f"{action.value.replace('_', ' ')} (permission {action.value!r})",
            details={"permission": action.value, "role": member.role.value},
        )
    return member


def require(action: Action) -> Callable[..., Member]:
    """A dependency for routes with ``{project_id}`` in their path: the caller must be a member
    whose role allows ``action``."""

    def dependency(
        db: DbDep,
        user: Annotated[Principal, Depends(current_user)],
        project_id: PathId,
    ) -> Member:
        return resolve_member(db, user, project_id, action)

    dependency.__name__ = f"require_{action.value}"
    dependency.policy_action = action  # type: ignore[attr-defined]  # read by the route audit test
    return dependency


def require_for_job(action: Action) -> Callable[..., Member]:
    """Like :func:`require` for routes that name a job (``{job_id}``): the job's project decides.
    A job of a project one is not a member of is reported missing, like the project."""

    def dependency(
        db: DbDep,
        user: Annotated[Principal, Depends(current_user)],
        job_id: PathId,
    ) -> Member:
        project_id = accounts.job_project_id(db, job_id)
        if project_id is None:
            if user.is_admin:  # a job outside any project (none today) is the site's business
                return Member(user=user, project_id=0, role=ProjectRole.OWNER)
            raise NotFound(f"job {job_id} does not exist")
        try:
            return resolve_member(db, user, project_id, action)
        except NotFound:
            raise NotFound(f"job {job_id} does not exist") from None

    dependency.__name__ = f"require_job_{action.value}"
    dependency.policy_action = action  # type: ignore[attr-defined]
    return dependency


def require_admin(user: CurrentUserDep) -> Principal:
    """Site administrators only (creating users, creating projects, the site audit log)."""
    if not user.is_admin:
        raise Forbidden("only a site administrator may do this (permission 'site_admin')")
    return user


# -- aliases routes declare ------------------------------------------------------------------------
ViewProject = Annotated[Member, Depends(require(Action.VIEW_PROJECT))]
BrowseItems = Annotated[Member, Depends(require(Action.BROWSE_ITEMS))]
Label = Annotated[Member, Depends(require(Action.LABEL))]
ViewOwnWork = Annotated[Member, Depends(require(Action.VIEW_OWN_WORK))]
ChangeLabels = Annotated[Member, Depends(require(Action.CHANGE_LABELS))]
Review = Annotated[Member, Depends(require(Action.REVIEW))]
ManageProject = Annotated[Member, Depends(require(Action.MANAGE_PROJECT))]
ImportExport = Annotated[Member, Depends(require(Action.IMPORT_EXPORT))]
Train = Annotated[Member, Depends(require(Action.TRAIN))]
Autolabel = Annotated[Member, Depends(require(Action.AUTOLABEL))]
ManageMembers = Annotated[Member, Depends(require(Action.MANAGE_MEMBERS))]
ViewAudit = Annotated[Member, Depends(require(Action.VIEW_AUDIT))]
DeleteProject = Annotated[Member, Depends(require(Action.DELETE_PROJECT))]
AdminDep = Annotated[Principal, Depends(require_admin)]

__all__ = [
    "ROLE_ACTIONS",
    "Action",
    "AdminDep",
    "CurrentUserDep",
    "Member",
    "allows",
    "require",
    "require_admin",
    "require_for_job",
    "resolve_member",
    "role_actions",
]
