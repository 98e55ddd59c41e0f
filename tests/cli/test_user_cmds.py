"""`labella user|token|member` and the site owner of a server's first start."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from labella.cli.user_cmds import ensure_site_owner
from labella.config import Settings
from labella.services import accounts, audit
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database

PASSWORD = "a long enough password"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LABELLA_DATA_DIR", str(data))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.delenv("LABELLA_OWNER_USERNAME", raising=False)
    monkeypatch.delenv("LABELLA_OWNER_PASSWORD", raising=False)
    return data


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def open_db(data_dir: Path) -> Database:
    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    db = Database.from_settings(settings)
    upgrade_database(db.engine)
    return db


def test_users_tokens_and_members(data_dir: Path) -> None:
    code, out = run("user", "create", "alice", "--admin", "--password-stdin", stdin=PASSWORD)
    assert code == 0 and "Created site administrator 'alice'" in out
    code, out = run("user", "create", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0, out
    code, out = run("user", "list")
    assert "alice  (admin)" in out and "bob" in out

    code, out = run("token", "create", "bob", "--name", "nightly")
    assert code == 0, out
    secret = out.splitlines()[0]
    assert secret.startswith("lbl_") and "not shown again" in out
    db = open_db(data_dir)
    try:
        assert accounts.authenticate_token(db, secret) is not None
        code, out = run("token", "list", "bob")
        token_id = out.split()[0]
        assert "nightly" in out and "active" in out and secret not in out
        code, out = run("token", "revoke", token_id)
        assert code == 0 and "revoked" in out
        assert accounts.authenticate_token(db, secret) is None

        code, out = run("project", "create", "reviews", "--classes", "neg,pos")
        assert code == 0, out
        code, out = run("member", "add", "reviews", "bob", "--role", "reviewer")
        assert code == 0 and "bob added as reviewer" in out
        code, out = run("member", "add", "reviews", "bob", "--role", "manager")
        assert code == 0 and "bob is now manager" in out
        assert [(m.username, m.role) for m in accounts.list_members(db, 1)] == [("bob", "manager")]
        events = [e.action for e in audit.list_events(db, 1)]
        assert events[:2] == ["member.role", "member.add"]
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("user", "create", "carol", "--password-stdin"),
            "",
            "error: the password must not be empty",
        ),
        (
            ("user", "create", "carol", "--password-stdin"),
            "short",
            "error: the password is too short",
        ),
        (("user", "create", "carol", "--password-stdin"), "password123", "too easy to guess"),
        (("user", "create", "carol"), None, "error: no password given: use --password-stdin"),
        (("user", "create", "bad name", "--password-stdin"), PASSWORD, "not allowed"),
        (("token", "create", "nobody", "--name", "x"), None, "error: no user named 'nobody'"),
        (("token", "revoke", "999"), None, "error: token 999 does not exist"),
        # ids no row can have: the database drivers raise on them if asked
        (("token", "revoke", "9" * 30), None, f"error: token {'9' * 30} does not exist"),
        (("member", "list", "9" * 30), None, f"error: no project named '{'9' * 30}'"),
        (
            ("project", "create", "big", "--classes", "a,b", "--retrain-every", "9" * 30),
            None,
            "error: retrain_every must be between 1 and 2147483647 labels",
        ),
        (("member", "add", "nowhere", "x"), None, "error: no project named 'nowhere'"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    data_dir: Path, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    code, out = run(*args, stdin=stdin)
    assert code == 1 and message in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_first_start_creates_the_owner_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABELLA_OWNER_USERNAME", "boss")
    monkeypatch.setenv("LABELLA_OWNER_PASSWORD", PASSWORD)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    db = open_db(data_dir)
    try:
        ensure_site_owner(settings, db)
        (user,) = accounts.list_users(db)
        assert (user.username, user.is_admin) == ("boss", True)
        assert PASSWORD not in capsys.readouterr().out
        accounts.login(db, "boss", PASSWORD, client="test")
        ensure_site_owner(settings, db)  # users exist: nothing happens
        assert len(accounts.list_users(db)) == 1
    finally:
        db.dispose()


def test_first_start_without_a_terminal_prints_a_random_password_once(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    db = open_db(data_dir)
    try:
        ensure_site_owner(settings, db)
        out = capsys.readouterr().out
        password = out.split("with the password ")[1].split()[0]
        assert len(password) >= 16
        assert accounts.login(db, "owner", password, client="test").user.is_admin
        other = open_db(data_dir.parent / "second")
        try:
            ensure_site_owner(settings, other)
            again = capsys.readouterr().out.split("with the password ")[1].split()[0]
        finally:
            other.dispose()
        assert again != password  # never a built-in default
    finally:
        db.dispose()


def test_demo_makes_a_demo_owner_with_a_printed_password(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELLA_EMBEDDING_CACHE_DIR", str(tmp_path / "embeddings"))
    data = tmp_path / "tickets.csv"
    data.write_text("text,label\nwrong invoice,billing\napp crashes,bug\n", encoding="utf-8")
    passwords = []
    for _ in range(2):
        code, out = run("demo", "--no-serve", "--data", str(data))
        assert code == 0, out
        passwords.append(out.split("Sign in as 'demo' with the password ")[1].split()[0])
    assert passwords[0] != passwords[1]  # a new one each run, never a fixed default
    db = open_db(data_dir)
    try:
        signed_in = accounts.login(db, "demo", passwords[1], client="test")
        assert signed_in.user.is_admin  # the installation's first user
        (member,) = accounts.list_members(db, 1)
        assert (member.username, member.role) == ("demo", "owner")
    finally:
        db.dispose()
