"""Who may call what: every API route is behind the policy layer, and every role is tried against
every project endpoint (a table of who may call it, written from the issue, independent of
``labella.api.policy``'s own table).

A route added later without a policy dependency fails ``test_every_api_route_is_behind_the_policy``;
a project route missing from ENDPOINTS fails ``test_the_table_covers_every_project_route``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from labella.api.auth import current_user, optional_user
from labella.jobs import queue
from labella.services import accounts
from labella.storage.db import Database
from tests.services.labeling_data import add_items

ROLES = ("owner", "manager", "reviewer", "annotator")
# who may call an endpoint, as the issue puts it
EVERYONE = frozenset(ROLES)
REVIEWERS = frozenset({"owner", "manager", "reviewer"})  # review queue, change labels, browse
MANAGERS = frozenset({"owner", "manager"})  # settings, import/export, training, members
OWNERS = frozenset({"owner"})

# API routes anyone may call without signing in
PUBLIC_API = {("POST", "/api/auth/login")}
# pages anyone may see without signing in (docs describe the API and hold no data)
PUBLIC_PAGES = {"/login", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static"}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # placeholders filled from the World for each caller
    who: frozenset[str]
    permission: str  # named in the 403 of a role that may not
    ok: tuple[int, ...]  # what a caller who may gets
    json: Callable[[str], Any] | None = None  # role -> body
    files: bool = False
    ok_detail: str | None = None  # for an allowed 4xx: the detail must say this

    @property
    def route(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: "{" + _ROUTE_NAMES.get(m[1], m[1]) + "}", self.path)


# placeholders of ENDPOINTS -> the route's own parameter names
_ROUTE_NAMES = {
    "pid": "project_id",
    "served": "item_id",
    "item": "item_id",
    "class_id": "class_id",
    "del_class": "class_id",
    "job": "job_id",
    "cancel_job": "job_id",
    "target": "username",
    "del_target": "username",
    "flag": "flag_id",
}

ENDPOINTS = [
    Endpoint("GET", "/api/projects/{pid}", EVERYONE, "view_project", (200,)),
    Endpoint(
        "PATCH",
        "/api/projects/{pid}",
        MANAGERS,
        "manage_project",
        (200,),
        json=lambda role: {"description": f"set by {role}"},
    ),
    Endpoint("GET", "/api/projects/{pid}/status", EVERYONE, "view_project", (200,)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/classes",
        MANAGERS,
        "manage_project",
        (201,),
        json=lambda role: {"name": f"class by {role}"},
    ),
    Endpoint(
        "PATCH",
        "/api/projects/{pid}/classes/{class_id}",
        MANAGERS,
        "manage_project",
        (200,),
        json=lambda role: {"color": "#123456"},
    ),
    Endpoint(
        "DELETE", "/api/projects/{pid}/classes/{del_class}", MANAGERS, "manage_project", (200,)
    ),
    Endpoint("GET", "/api/jobs/{job}", EVERYONE, "view_project", (200,)),
    Endpoint("POST", "/api/jobs/{cancel_job}/cancel", MANAGERS, "manage_project", (200,)),
    Endpoint("GET", "/api/projects/{pid}/jobs", EVERYONE, "view_project", (200,)),
    Endpoint("GET", "/api/projects/{pid}/next", EVERYONE, "label", (200,)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/items/{served}/label",
        EVERYONE,
        "label",
        (201,),
        json=lambda role: {"classes": ["negative"]},
    ),
    Endpoint("POST", "/api/projects/{pid}/items/{served}/skip", EVERYONE, "label", (201,)),
    Endpoint("GET", "/api/projects/{pid}/items/{served}", EVERYONE, "view_own_work", (200,)),
    Endpoint(
        "GET",
        "/api/projects/{pid}/autolabel/preview?threshold=0.9",
        MANAGERS,
        "autolabel",
        (409,),
        ok_detail="model",
    ),
    Endpoint(
        "POST",
        "/api/projects/{pid}/autolabel",
        MANAGERS,
        "autolabel",
        (409,),
        json=lambda role: {"threshold": 0.9},
        ok_detail="model",
    ),
    Endpoint("POST", "/api/projects/{pid}/train", MANAGERS, "train", (202, 409)),
    Endpoint("POST", "/api/projects/{pid}/finetune", MANAGERS, "train", (409,), ok_detail="labels"),
    Endpoint("GET", "/api/projects/{pid}/models", EVERYONE, "view_project", (200,)),
    Endpoint("POST", "/api/projects/{pid}/rank", MANAGERS, "manage_project", (202,)),
    Endpoint("POST", "/api/projects/{pid}/imports", MANAGERS, "import_export", (201,), files=True),
    Endpoint("GET", "/api/projects/{pid}/imports", MANAGERS, "import_export", (200,)),
    Endpoint("GET", "/api/projects/{pid}/export", MANAGERS, "import_export", (200,)),
    Endpoint("GET", "/api/projects/{pid}/items", REVIEWERS, "browse_items", (200,)),
    Endpoint("GET", "/api/projects/{pid}/queue", REVIEWERS, "browse_items", (200,)),
    Endpoint("GET", "/api/projects/{pid}/review", REVIEWERS, "review", (200,)),
    Endpoint("GET", "/api/projects/{pid}/review/items/{item}", REVIEWERS, "review", (200,)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/review/{flag}",
        REVIEWERS,
        "review",
        (404,),
        json=lambda role: {"action": "change", "classes": ["negative"]},
        ok_detail="flag 999999",
    ),
    Endpoint("GET", "/api/projects/{pid}/agreement", REVIEWERS, "review", (200,)),
    # annotators too, each seeing their own row only (tests/api/test_agreement.py)
    Endpoint("GET", "/api/projects/{pid}/annotators", EVERYONE, "view_own_work", (200,)),
    Endpoint("GET", "/api/projects/{pid}/evaluation-sample", EVERYONE, "view_project", (200,)),
    Endpoint(
        "POST", "/api/projects/{pid}/evaluation-sample?size=1", MANAGERS, "manage_project", (200,)
    ),
    Endpoint("GET", "/api/projects/{pid}/stopping", EVERYONE, "view_project", (200,)),
    Endpoint("GET", "/api/projects/{pid}/members", EVERYONE, "view_project", (200,)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/members",
        MANAGERS,
        "manage_members",
        (201,),
        json=lambda role: {"username": f"joiner-{role}", "role": "annotator"},
    ),
    Endpoint(
        "PATCH",
        "/api/projects/{pid}/members/{target}",
        MANAGERS,
        "manage_members",
        (200,),
        json=lambda role: {"role": "reviewer"},
    ),
    Endpoint(
        "DELETE", "/api/projects/{pid}/members/{del_target}", MANAGERS, "manage_members", (204,)
    ),
    Endpoint("GET", "/api/projects/{pid}/audit", MANAGERS, "view_audit", (200,)),
    Endpoint("GET", "/api/projects/{pid}/audit/export", MANAGERS, "view_audit", (200,)),
    Endpoint("GET", "/api/projects/{pid}/items/{item}/audit", REVIEWERS, "browse_items", (200,)),
    Endpoint("GET", "/api/projects/{pid}/autolabel/audit", EVERYONE, "view_project", (200,)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/autolabel/audit",
        MANAGERS,
        "autolabel",
        (422,),
        json=lambda role: {"size": 1},
        ok_detail="nothing to audit",
    ),
    # images (an item without an image is reported missing; a folder outside the import roots
    # is refused, which is not the policy's 403 since it names no permission)
    Endpoint("POST", "/api/projects/{pid}/images", MANAGERS, "import_export", (201, 422)),
    Endpoint(
        "POST",
        "/api/projects/{pid}/images/folder",
        MANAGERS,
        "import_export",
        (403, 404, 422),
        json=lambda role: {"path": "/no/such/folder"},
    ),
    Endpoint("GET", "/api/projects/{pid}/items/{item}/image", EVERYONE, "view_project", (404,)),
    Endpoint("GET", "/api/projects/{pid}/items/{item}/thumbnail", EVERYONE, "view_project", (404,)),
    # object detection (the world's project is a text project: its import/export is refused)
    Endpoint(
        "POST", "/api/projects/{pid}/detections/import", MANAGERS, "import_export", (201, 422)
    ),
    Endpoint(
        "POST",
        "/api/projects/{pid}/detections/import/folder",
        MANAGERS,
        "import_export",
        (403, 404, 422),
        json=lambda role: {"path": "/no/such/folder"},
    ),
    Endpoint("GET", "/api/projects/{pid}/detections/export", MANAGERS, "import_export", (200, 422)),
    # box auto-label (refused for the world's text project, naming the kind)
    Endpoint(
        "GET",
        "/api/projects/{pid}/detections/autolabel/preview?target_precision=0.9",
        MANAGERS,
        "autolabel",
        (422,),
        ok_detail="object-detection",
    ),
    Endpoint(
        "POST",
        "/api/projects/{pid}/detections/autolabel",
        MANAGERS,
        "autolabel",
        (422,),
        json=lambda role: {"target_precision": 0.9},
        ok_detail="object-detection",
    ),
    # the box editor's calls (refused for the world's text project, naming the kind)
    Endpoint(
        "PUT",
        "/api/projects/{pid}/items/{served}/boxes",
        EVERYONE,
        "label",
        (422,),
        json=lambda role: {"boxes": []},
        ok_detail="object-detection",
    ),
    Endpoint(
        "GET",
        "/api/projects/{pid}/items/{served}/boxes",
        EVERYONE,
        "view_own_work",
        (422,),
        ok_detail="object-detection",
    ),
]


@dataclass
class World:
    """One project with a member of each role, a user who belongs only to another project, and
    the objects the endpoints name (per caller where a call uses something up)."""

    pid: int
    other_pid: int
    clients: dict[str, Any]  # role (and "outsider", "anonymous") -> TestClient
    item: int
    class_id: int
    job: int
    served: dict[str, int] = field(default_factory=dict)  # role -> an item served to them
    per_role: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fill(self, path: str, role: str) -> str:
        values = {
            "pid": self.pid,
            "item": self.item,
            "class_id": self.class_id,
            "job": self.job,
            "flag": 999999,
            "served": self.served.get(role, self.item),
            **self.per_role.get(role, {}),
        }
        values.setdefault("del_class", self.class_id)
        values.setdefault("cancel_job", self.job)
        values.setdefault("target", "nobody")
        values.setdefault("del_target", "nobody")
        return path.format(**values)


def build_world(client: TestClient, db: Database, make_user: Callable[..., Any]) -> World:
    created = client.post(
        "/api/projects", json={"name": "guarded", "classes": ["negative", "positive"]}
    )
    assert created.status_code == 201, created.text
    project = created.json()
    pid = project["id"]
    other = client.post("/api/projects", json={"name": "elsewhere", "classes": ["a", "b"]}).json()
    items = add_items(db, pid, 12)
    with db.transaction() as session:
        job = queue.enqueue(session, kind="rank", project_id=pid).id
    clients: dict[str, Any] = {role: make_user(role, pid) for role in ROLES}
    clients["outsider"] = make_user("annotator", other["id"], username="outsider")
    clients["anonymous"] = TestClient(client.app)
    world = World(
        pid=pid,
        other_pid=other["id"],
        clients=clients,
        item=items[-1],
        class_id=project["classes"][0]["id"],
        job=job,
    )
    for role in ROLES:
        served = clients[role].get(f"/api/projects/{pid}/next", params={"n": 1}).json()["items"]
        world.served[role] = served[0]["item_id"]
        make_user(username=f"joiner-{role}")
        target = make_user("annotator", pid, username=f"target-{role}")
        gone = make_user("annotator", pid, username=f"leaver-{role}")
        extra = client.post(f"/api/projects/{pid}/classes", json={"name": f"spare {role}"})
        with db.transaction() as session:
            cancel_job = queue.enqueue(session, kind="rank", project_id=pid).id
        world.per_role[role] = {
            "target": target.username,
            "del_target": gone.username,
            "del_class": extra.json()["classes"][-1]["id"],
            "cancel_job": cancel_job,
        }
    return world


def call(client: Any, endpoint: Endpoint, path: str, role: str) -> Any:
    kwargs: dict[str, Any] = {}
    if endpoint.json is not None:
        kwargs["json"] = endpoint.json(role)
    if endpoint.files:
        kwargs["files"] = {"file": (f"{role}.txt", f"a text from {role}\nanother\n".encode())}
    return client.request(endpoint.method, path, **kwargs)


def test_every_role_against_every_project_endpoint(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    world = build_world(client, db, make_user)
    missing_body = client.get("/api/projects/999999").json()
    failures: list[str] = []
    for endpoint in ENDPOINTS:
        for role in ("anonymous", "outsider", *reversed(ROLES)):
            path = world.fill(endpoint.path, role)
            response = call(world.clients[role], endpoint, path, role)
            got = (
                f"{endpoint.method} {path} as {role}: {response.status_code} {response.text[:200]}"
            )
            body = response.json() if "json" in response.headers.get("content-type", "") else {}
            if role == "anonymous":
                if response.status_code != 401:
                    failures.append(f"{got} (expected 401)")
            elif role == "outsider":
                # a project one is not in reads exactly like one that does not exist
                expected = {**missing_body, "detail": f"project {world.pid} does not exist"}
                if "{job}" in endpoint.path or "{cancel_job}" in endpoint.path:
                    expected = {
                        **missing_body,
                        "detail": f"job {path.split('/')[3]} does not exist",
                    }
                if response.status_code != 404 or body != expected:
                    failures.append(f"{got} (expected the 404 of a missing project)")
            elif role in endpoint.who:
                if response.status_code == 403 and "permission '" in body.get("detail", ""):
                    failures.append(f"{got} (the policy refused a role that may)")
                elif response.status_code not in endpoint.ok:
                    failures.append(f"{got} (expected {endpoint.ok})")
                elif endpoint.ok_detail and endpoint.ok_detail not in body.get("detail", ""):
                    failures.append(f"{got} (expected a detail saying {endpoint.ok_detail!r})")
            elif response.status_code != 403 or endpoint.permission not in body.get("detail", ""):
                failures.append(f"{got} (expected 403 naming {endpoint.permission!r})")
    assert failures == [], "\n".join(failures)


def test_the_table_covers_every_project_route(client: TestClient) -> None:
    """Every route about one project (or one of its jobs) has a row in ENDPOINTS."""
    covered = {(e.method, e.route.split("?")[0]) for e in ENDPOINTS}
    missing = []
    for method, path, _route in _api_routes(client.app):
        scoped = "{project_id}" in path or "{job_id}" in path
        if path.startswith("/api/") and scoped and (method, path) not in covered:
            missing.append(f"{method} {path}")
    assert missing == [], f"add these routes to ENDPOINTS in {__file__}: {missing}"


def _api_routes(app: Any) -> Iterator[tuple[str, str, APIRoute]]:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(context.methods or ()):
            yield method, str(context.path), route


def _dependency_calls(route: APIRoute) -> set[Callable[..., Any]]:
    calls: set[Callable[..., Any]] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            calls.add(dependant.call)
        stack.extend(dependant.dependencies)
    return calls


def test_every_api_route_is_behind_the_policy(client: TestClient) -> None:
    """Each API route signs the caller in (current_user); a route naming a project or a job
    also declares its permission (policy.require / require_for_job)."""
    problems = []
    for method, path, route in _api_routes(client.app):
        if not route.include_in_schema and not path.startswith("/api/"):
            calls = _dependency_calls(route)
            if path not in PUBLIC_PAGES and optional_user not in calls:
                problems.append(f"page {method} {path} does not look at the signed-in user")
            continue
        if not path.startswith("/api/") or (method, path) in PUBLIC_API:
            continue
        calls = _dependency_calls(route)
        if current_user not in calls:
            problems.append(f"{method} {path} has no auth dependency")
        scoped = "{project_id}" in path or "{job_id}" in path
        if scoped and not any(hasattr(call, "policy_action") for call in calls):
            problems.append(f"{method} {path} declares no permission (policy.require)")
    assert problems == [], "\n".join(problems)


def test_the_audit_sees_a_route_without_policy(client: TestClient) -> None:
    """The route audit is not vacuous: a project route added without a dependency is caught."""
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/api/projects/{project_id}/leaky")
    def leaky(project_id: int) -> dict[str, int]:
        return {"project_id": project_id}

    client.app.include_router(router)
    with pytest.raises(AssertionError, match="leaky has no auth dependency"):
        test_every_api_route_is_behind_the_policy(client)
    assert inspect.isfunction(leaky)


def test_site_routes_need_the_right_user(client: TestClient, make_user: Callable[..., Any]) -> None:
    user = make_user()
    anonymous = TestClient(client.app)
    body = {"name": "by a user", "classes": ["a", "b"]}
    assert anonymous.post("/api/projects", json=body).status_code == 401
    refused = user.post("/api/projects", json=body)
    assert refused.status_code == 403 and "site administrator" in refused.json()["detail"]
    for path in ("/api/users", "/api/audit"):
        assert anonymous.get(path).status_code == 401
        assert user.get(path).status_code == 403, path
        assert client.get(path).status_code == 200, path
    for path in ("/api/projects", "/api/auth/me", "/api/auth/tokens"):
        assert anonymous.get(path).status_code == 401, path
        assert user.get(path).status_code == 200, path


def test_a_user_sees_only_their_projects(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    mine = client.post("/api/projects", json={"name": "mine", "classes": ["a", "b"]}).json()
    theirs = client.post("/api/projects", json={"name": "theirs", "classes": ["a", "b"]}).json()
    (their_item,) = add_items(db, theirs["id"], 1)
    with db.transaction() as session:
        their_job = queue.enqueue(session, kind="rank", project_id=theirs["id"]).id
    me = make_user("manager", mine["id"])
    assert [p["name"] for p in me.get("/api/projects").json()] == ["mine"]
    assert set(me.get("/api/auth/me").json()["roles"]) == {str(mine["id"])}
    # the other project's id, item, job and pages read as missing; nothing of theirs shows
    for path in (
        f"/api/projects/{theirs['id']}",
        f"/api/projects/{theirs['id']}/items/{their_item}",
        f"/api/jobs/{their_job}",
    ):
        response = me.get(path)
        assert response.status_code == 404, path
        assert "theirs" not in response.text and "text 0" not in response.text
    page = me.get(f"/projects/{theirs['id']}")
    assert page.status_code == 404 and "theirs" not in page.text
    assert "theirs" not in me.get("/").text and "mine" in me.get("/").text
    # an item of their project named through mine is missing too
    assert me.get(f"/api/projects/{mine['id']}/items/{their_item}").status_code == 404
    # the site administrator sees both
    assert {p["name"] for p in client.get("/api/projects").json()} >= {"mine", "theirs"}
    assert accounts.project_role(db, theirs["id"], me_principal(db, me.username)) is None


def me_principal(db: Database, username: str) -> accounts.Principal:
    return accounts.local_principal(db, username)


def test_pages_send_a_signed_out_visitor_to_sign_in(client: TestClient, db: Database) -> None:
    pid = client.post("/api/projects", json={"name": "p", "classes": ["a", "b"]}).json()["id"]
    anonymous = TestClient(client.app)
    for path in ("/", f"/projects/{pid}", f"/projects/{pid}/label", f"/projects/{pid}/members"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=/"), path
    login = anonymous.get("/login")
    assert login.status_code == 200 and 'id="login-form"' in login.text
    # the sign-in page only sends people on to this site
    assert anonymous.get("/login?next=https://evil.example/").status_code == 200
    # nor to another site by a path a browser reads as //host (backslash, tab, newline)
    for target in (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
    ):
        signed_in = client.get("/login", params={"next": target}, follow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/", target
    here = client.get("/login", params={"next": f"/projects/{pid}?tab=1"}, follow_redirects=False)
    assert here.headers["location"] == f"/projects/{pid}?tab=1"
