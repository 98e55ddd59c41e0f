"""Page routes of the browser UI and the mount of its static files.

Each page is a server-rendered shell: the project, its classes and the choices a form needs are
rendered into the page (and into a JSON "boot" block for the page's ES module), and everything
live after that (counts, the queue, jobs) the module fetches from the JSON API.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from labella.api.auth import OptionalUserDep
from labella.api.deps import MAX_ID, DbDep, SettingsDep
from labella.api.policy import role_actions
from labella.errors import NotFound
from labella.services import accounts, browse
from labella.services import projects as project_service
from labella.storage.db import Database
from labella.storage.models import ItemStatus, Project, ProjectKind

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=HERE / "templates")

KIND_NAMES = {
    ProjectKind.TEXT_CLASSIFICATION.value: "Text classification",
    ProjectKind.IMAGE_CLASSIFICATION.value: "Image classification",
    ProjectKind.OBJECT_DETECTION.value: "Object detection (bounding boxes)",
}

router = APIRouter(include_in_schema=False)


class _RevalidatedStaticFiles(StaticFiles):
    """Static files that browsers revalidate on every load (a cheap 304 when unchanged), so that
    the ES modules of an upgraded server are never mixed with cached ones of the old."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Add the pages and ``/static`` to the app."""
    app.include_router(router)
    app.mount("/static", _RevalidatedStaticFiles(directory=STATIC_DIR), name="static")


def _page(
    request: Request, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    # the signed-in user (set by the auth dependency) and the CSRF token api.js sends back
    user = getattr(request.state, "principal", None)
    context.setdefault("user", user)
    context.setdefault("csrf_token", (user.csrf_token or "") if user is not None else "")
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def login_redirect(request: Request) -> RedirectResponse:
    """Send a signed-out visitor to the sign-in page, to come back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


def _project_page(
    request: Request,
    db: Database,
    project_id: int,
    template: str,
    page: str,
    user: accounts.Principal | None,
) -> Response:
    if user is None:
        return login_redirect(request)
    # an id no row can have (the drivers raise on integers that do not fit) names no project
    role = accounts.project_role(db, project_id, user) if 1 <= project_id <= MAX_ID else None
    try:
        if role is None:  # not a member reads exactly like a missing project
            raise NotFound(f"project {project_id} does not exist")
        project = project_service.get_project(db, project_id)
    except NotFound as exc:
        return _page(request, "not_found.html", status_code=404, message=exc.message)
    permissions = role_actions(role)
    return _page(
        request,
        template,
        project=project,
        page=page,
        role=role,
        permissions=permissions,
        kind_name=KIND_NAMES.get(project.kind, project.kind),
        boot={
            "project": project_boot(project),
            "strategies": strategy_catalogue(),
            "statuses": [s.value for s in ItemStatus],
            "role": role,
            "permissions": permissions,
            "username": user.username,
        },
    )


def _is_local_path(target: str) -> bool:
    """Whether ``target`` is a path on this site, so that the sign-in page is no open redirect.

    Browsers read a backslash as a slash and drop tabs and newlines from a URL, so ``/\\host`` and
    ``/<tab>/host`` lead off-site as ``//host`` does: refuse them all.
    """
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: OptionalUserDep, next: str = "/") -> Response:
    target = next if _is_local_path(next) else "/"
    if user is not None:
        return RedirectResponse(target, status_code=303)
    return _page(request, "login.html", page="login", boot={"next": target})


@router.get("/", response_class=HTMLResponse)
def projects_page(
    request: Request, db: DbDep, settings: SettingsDep, user: OptionalUserDep
) -> Response:
    if user is None:
        return login_redirect(request)
    visible = accounts.visible_project_ids(db, user)
    roles = accounts.project_roles(db, user)
    return _page(
        request,
        "projects.html",
        page="projects",
        roles=roles,
        summaries=[
            s for s in browse.project_summaries(db) if visible is None or s.project.id in visible
        ],
        kinds=[
            {"value": kind, "name": name, "available": kind in project_service.SUPPORTED_KINDS}
            for kind, name in KIND_NAMES.items()
        ],
        strategies=strategy_catalogue(),
        default_strategy=project_service.default_strategy(multi_label=False),
        auto_finetune_at=settings.auto_finetune_at,
        palette=project_service.PALETTE,
        boot={
            "strategies": strategy_catalogue(),
            "palette": project_service.PALETTE,
            "default_strategies": {
                "single": project_service.default_strategy(multi_label=False),
                "multi": project_service.default_strategy(multi_label=True),
            },
        },
    )


@router.get("/projects/{project_id}", response_class=HTMLResponse)
def dashboard_page(request: Request, project_id: int, db: DbDep, user: OptionalUserDep) -> Response:
    return _project_page(request, db, project_id, "dashboard.html", "dashboard", user)


@router.get("/projects/{project_id}/label", response_class=HTMLResponse)
def label_page(request: Request, project_id: int, db: DbDep, user: OptionalUserDep) -> Response:
    # an object-detection project labels with the box editor, not with class buttons
    detection = user is not None and _is_detection(db, project_id, user)
    template = "label_boxes.html" if detection else "label.html"
    return _project_page(request, db, project_id, template, "label", user)


def _is_detection(db: Database, project_id: int, user: accounts.Principal) -> bool:
    if not 1 <= project_id <= MAX_ID or accounts.project_role(db, project_id, user) is None:
        return False  # a non-member gets the plain "does not exist" page
    try:
        return project_service.get_project(db, project_id).kind == ProjectKind.OBJECT_DETECTION
    except NotFound:
        return False


@router.get("/projects/{project_id}/items", response_class=HTMLResponse)
def items_page(request: Request, project_id: int, db: DbDep, user: OptionalUserDep) -> Response:
    return _project_page(request, db, project_id, "items.html", "items", user)


@router.get("/projects/{project_id}/members", response_class=HTMLResponse)
def members_page(request: Request, project_id: int, db: DbDep, user: OptionalUserDep) -> Response:
    return _project_page(request, db, project_id, "members.html", "members", user)


@router.get("/projects/{project_id}/review", response_class=HTMLResponse)
def review_page(request: Request, project_id: int, db: DbDep, user: OptionalUserDep) -> Response:
    return _project_page(request, db, project_id, "review.html", "review", user)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, user: OptionalUserDep) -> Response:
    if user is None:
        return login_redirect(request)
    return _page(request, "account.html", page="account", boot={"username": user.username})


def project_boot(project: Project) -> dict[str, Any]:
    """What the page modules need to know about the project before their first request."""
    return {
        "id": project.id,
        "name": project.name,
        "kind": project.kind,
        "multi_label": project.multi_label,
        "strategy": project.strategy,
        "strategy_params": project.strategy_params,
        "retrain_every": project.retrain_every,
        "classes": [
            {
                "id": cls.id,
                "name": cls.name,
                "color": cls.color,
                "shortcut": cls.shortcut,
                "position": cls.position,
            }
            for cls in sorted(project.classes, key=lambda c: c.position)
        ],
    }


def strategy_catalogue() -> list[dict[str, Any]]:
    """Every registered query strategy with its settings and their defaults, for the forms."""
    from labella.strategies import available_strategies
    from labella.strategies.registry import strategy_class

    catalogue = []
    for name in available_strategies():
        cls = strategy_class(name)
        signature = inspect.signature(cls.__init__)
        params = []
        for param_name in cls.param_names():
            default = signature.parameters[param_name].default
            # the form edits plain values; nested settings (base_params) stay API-only
            if not isinstance(default, bool | int | float | str):
                continue
            params.append({"name": param_name, "default": default})
        doc = inspect.getdoc(cls) or ""
        catalogue.append(
            {
                "name": name,
                "summary": doc.split("\n\n", 1)[0].replace("\n", " ").replace("``", ""),
                "label_mode": getattr(cls, "_label_mode", "any"),
                "params": params,
            }
        )
    return catalogue
