"""Signing in: browser sessions (cookie + CSRF), API tokens, the failed-login limit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from labella.api.app import create_app
from labella.config import Settings
from labella.services import accounts
from labella.storage.db import Database
from labella.storage.models import ApiToken, AuditEvent, AuthSession, utcnow
from tests.conftest import TEST_PASSWORD


def login(client: TestClient, username: str, password: str = TEST_PASSWORD) -> Any:
    return client.post("/api/auth/login", json={"username": username, "password": password})


def browser(client: TestClient) -> TestClient:
    """A client with no credentials, like a browser that has not signed in."""
    return TestClient(client.app)


def test_a_session_signs_in_and_out(client: TestClient, make_user: Callable[..., Any]) -> None:
    make_user(username="maria")
    web = browser(client)
    assert web.get("/api/auth/me").status_code == 401
    response = login(web, "maria")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["username"] == "maria" and body["via"] == "session"
    assert body["csrf_token"] and body["permissions"]["annotator"]
    cookie = response.headers["set-cookie"]
    assert "labella_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    # plain http to the test host counts as local: not Secure, or the browser would drop it
    assert "Secure" not in cookie
    me = web.get("/api/auth/me").json()
    assert me["user"]["username"] == "maria" and me["csrf_token"] == body["csrf_token"]

    out = web.post("/api/auth/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert out.status_code == 204
    assert web.get("/api/auth/me").status_code == 401


def test_the_cookie_is_secure_off_localhost(settings: Settings, db: Database) -> None:
    accounts.create_user(db, "remote", password=TEST_PASSWORD + "!", actor="test")
    app = create_app(settings, db=db)
    with TestClient(app, base_url="https://labella.example.org") as remote:
        response = login(remote, "remote", TEST_PASSWORD + "!")
    assert response.status_code == 200 and "Secure" in response.headers["set-cookie"]
    forced = settings.model_copy(update={"cookie_secure": True})
    with TestClient(create_app(forced, db=db)) as local:
        response = login(local, "remote", TEST_PASSWORD + "!")
    assert "Secure" in response.headers["set-cookie"]


def test_state_changes_by_cookie_need_the_csrf_token(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    make_user(username="admin2", admin=True)
    web = browser(client)
    csrf = login(web, "admin2").json()["csrf_token"]
    body = {"name": "csrf", "classes": ["a", "b"]}
    missing = web.post("/api/projects", json=body)
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    wrong = web.post("/api/projects", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    assert client.get("/api/projects").json() == []  # nothing was created
    made = web.post("/api/projects", json=body, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # reading needs no token
    assert web.get(f"/api/projects/{made.json()['id']}").status_code == 200
    # the token of another session does not do
    other = browser(client)
    other_csrf = login(other, "admin2").json()["csrf_token"]
    assert other_csrf != csrf
    crossed = web.patch(
        f"/api/projects/{made.json()['id']}",
        json={"description": "x"},
        headers={"X-CSRF-Token": other_csrf},
    )
    assert crossed.status_code == 403


def test_bearer_tokens_need_no_csrf_and_can_be_revoked(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    make_user(username="scripter", admin=True)
    web = browser(client)
    csrf = login(web, "scripter").json()["csrf_token"]
    made = web.post("/api/auth/tokens", json={"name": "nightly"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    token = made.json()
    secret = token["secret"]
    assert secret.startswith("lbl_") and token["prefix"] == secret[:10]
    # shown once: listed without the secret, and stored only as its hash
    listed = web.get("/api/auth/tokens").json()
    assert [t["name"] for t in listed] == ["nightly", "tests"] and "secret" not in listed[0]
    with db.reader() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert secret not in stored and all(len(h) == 64 for h in stored)

    script = TestClient(client.app, headers={"Authorization": f"Bearer {secret}"})
    created = script.post("/api/projects", json={"name": "by script", "classes": ["a", "b"]})
    assert created.status_code == 201  # no CSRF header: bearer requests are exempt
    assert script.get("/api/auth/me").json()["via"] == "token"

    revoked = web.delete(f"/api/auth/tokens/{token['id']}", headers={"X-CSRF-Token": csrf})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = script.get("/api/projects")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    bogus = TestClient(client.app, headers={"Authorization": "Bearer lbl_not-a-token"})
    assert bogus.get("/api/projects").status_code == 401
    # a user cannot revoke (or even see) someone else's token
    other = make_user()
    assert other.delete(f"/api/auth/tokens/{token['id']}").status_code == 404


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    make_user(username="known")
    web = browser(client)
    wrong = login(web, "known", "not the password")
    unknown = login(web, "nobody-here", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "detail": "wrong username or password",
            "code": "unauthorized",
        }
    )
    assert "set-cookie" not in wrong.headers


def test_failed_logins_are_rate_limited(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    make_user(username="target")
    web = browser(client)
    for _ in range(5):
        assert login(web, "target", "guess guess guess").status_code == 401
    limited = login(web, "target", TEST_PASSWORD)  # even the right password is refused now
    assert limited.status_code == 429, limited.text
    retry = int(limited.headers["retry-after"])
    assert 0 < retry <= 900 and f"{retry} seconds" in limited.json()["detail"]
    # an unknown username is limited the same way (the limit does not tell who exists)
    for _ in range(5):
        login(web, "ghost", "guess guess guess")
    assert login(web, "ghost", "guess guess guess").status_code == 429
    # once the failures are older than the window, the user may sign in again
    from labella.storage.models import LoginAttempt

    with db.transaction() as session:
        session.execute(update(LoginAttempt).values(created_at=utcnow() - timedelta(seconds=901)))
    assert login(web, "target").status_code == 200


def test_failures_from_one_address_are_limited_across_usernames(
    settings: Settings, db: Database
) -> None:
    tight = settings.model_copy(update={"login_failures_per_client": 3})
    for name in ("u1", "u2", "u3", "u4"):
        accounts.create_user(db, name, password_hash=accounts.hash_password("x" * 12), actor="t")
    with TestClient(create_app(tight, db=db)) as web:
        for name in ("u1", "u2", "u3"):
            assert login(web, name, "wrong password!").status_code == 401
        assert login(web, "u4", "x" * 12).status_code == 429


def test_a_success_clears_the_users_failures(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    make_user(username="typo")
    web = browser(client)
    for _ in range(4):
        login(web, "typo", "oops oops oops")
    assert login(web, "typo").status_code == 200
    for _ in range(4):
        assert login(web, "typo", "oops oops oops").status_code == 401
    assert login(web, "typo").status_code == 200


def test_expired_revoked_and_deactivated_sessions_end(
    client: TestClient, db: Database, make_user: Callable[..., Any]
) -> None:
    user = make_user(username="leaving")
    web = browser(client)
    assert login(web, "leaving").status_code == 200
    with db.transaction() as session:
        session.execute(update(AuthSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = web.get("/api/auth/me")
    assert expired.status_code == 401 and "sign in again" in expired.json()["detail"]

    assert login(web, "leaving").status_code == 200
    assert user.get("/api/auth/me").status_code == 200
    assert client.patch("/api/users/leaving", json={"is_active": False}).status_code == 200
    assert web.get("/api/auth/me").status_code == 401
    assert user.get("/api/auth/me").status_code == 401  # the token stops too
    assert login(web, "leaving").status_code == 401  # and signing in again is refused
    assert client.patch("/api/users/leaving", json={"is_active": True}).status_code == 200
    assert login(web, "leaving").status_code == 200
    # an administrator cannot lock themselves out
    assert client.patch("/api/users/admin", json={"is_active": False}).status_code == 409


def test_changing_the_password_signs_out_everywhere(
    client: TestClient, make_user: Callable[..., Any]
) -> None:
    make_user(username="changer")
    web = browser(client)
    csrf = login(web, "changer").json()["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    wrong = web.post(
        "/api/auth/password",
        json={"current_password": "nope nope nope", "new_password": "a new long password"},
        headers=headers,
    )
    assert wrong.status_code == 403 and "current password" in wrong.json()["detail"]
    weak = web.post(
        "/api/auth/password",
        json={"current_password": TEST_PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert weak.status_code == 422 and "at least 10 characters" in weak.json()["detail"]
    done = web.post(
        "/api/auth/password",
        json={"current_password": TEST_PASSWORD, "new_password": "a new long password"},
        headers=headers,
    )
    assert done.status_code == 204
    assert web.get("/api/auth/me").status_code == 401
    assert login(web, "changer").status_code == 401
    assert login(web, "changer", "a new long password").status_code == 200


def test_administrators_manage_users(client: TestClient, db: Database) -> None:
    made = client.post("/api/users", json={"username": "newbie", "password": "a long password!"})
    assert made.status_code == 201 and made.json()["is_admin"] is False
    assert (
        client.post(
            "/api/users", json={"username": "newbie", "password": "a long password!"}
        ).status_code
        == 409
    )
    for body, message in (
        ({"username": "weak", "password": "abc"}, "too short"),
        ({"username": "weak", "password": "password123"}, "too easy"),
        ({"username": "bad name", "password": "a long password!"}, "not allowed"),
    ):
        response = client.post("/api/users", json=body)
        assert response.status_code == 422 and message in response.json()["detail"], body
    assert "newbie" in [u["username"] for u in client.get("/api/users").json()]
    with db.reader() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "user.create" in actions and "token.create" in actions


def test_logins_are_audited(client: TestClient, make_user: Callable[..., Any]) -> None:
    make_user(username="auditee")
    login(browser(client), "auditee")
    events = client.get("/api/audit", params={"action": "auth"}).json()["events"]
    assert events[0]["actor"] == "auditee" and events[0]["action"] == "auth.login"
