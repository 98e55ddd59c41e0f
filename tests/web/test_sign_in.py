"""Signing in through the browser, the members screen, the account page and signing out."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.web.conftest import OWNER, OWNER_PASSWORD, LiveServer, sign_in

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_sign_in_page_redirects_back_and_reports_a_wrong_password(
    anonymous_page: Page, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    project = live_server.create_project("Sign-in check", ["yes", "no"])
    page = anonymous_page
    page.goto(f"{live_server.url}/projects/{project['id']}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Username").fill(OWNER)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("wrong username or password")
    page.get_by_label("Password").fill(OWNER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # back where the visitor was going, signed in
    expect(page).to_have_url(f"{live_server.url}/projects/{project['id']}")
    expect(page.locator(".topbar-user")).to_contain_text(OWNER)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/"))


def test_members_screen_adds_and_changes_a_member(
    page: Page, anonymous_page: Page, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    project = live_server.create_project("Team project", ["a", "b"])
    pid = project["id"]
    with live_server.client() as http:
        made = http.post(
            "/api/users", json={"username": "lena", "password": "a reviewer's long password"}
        )
        assert made.status_code == 201, made.text

    page.goto(f"{live_server.url}/projects/{pid}/members")
    page.get_by_label("Username").fill("lena")
    page.locator("#m-role").select_option("annotator")
    page.get_by_role("button", name="Add").click()  # the form's POST carries the CSRF token
    row = page.locator("#member-list tr[data-username=lena]")
    expect(row).to_contain_text("lena")
    row.get_by_label("Role of lena").select_option("reviewer")
    expect(page.locator("#toasts")).to_contain_text("lena is now reviewer")
    expect(page.locator("#audit-list")).to_contain_text("member.role")

    # lena, a reviewer, sees the project but not the controls for members
    sign_in(anonymous_page, live_server.url, "lena", "a reviewer's long password")
    anonymous_page.goto(f"{live_server.url}/projects/{pid}/members")
    expect(anonymous_page.locator("#member-list")).to_contain_text("reviewer")
    expect(anonymous_page.locator("#add-member")).to_have_count(0)
    anonymous_page.goto(f"{live_server.url}/")
    expect(anonymous_page.locator("#project-list")).to_contain_text("Team project")
    expect(anonymous_page.locator("#project-list")).not_to_contain_text("Sign-in check")


def test_account_page_makes_a_token_shown_once(page: Page, live_server: LiveServer) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/account")
    page.get_by_label("New token's name").fill("browser-made")
    page.get_by_role("button", name="Make a token").click()
    secret = page.locator("#token-secret-value")
    expect(secret).to_have_text(re.compile(r"^lbl_"))
    token = secret.inner_text()
    expect(page.locator("#token-list")).to_contain_text("browser-made")
    import httpx

    answer = httpx.get(
        f"{live_server.url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200 and answer.json()["user"]["username"] == OWNER
