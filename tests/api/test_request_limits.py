"""Request bodies read whole (JSON, plain forms) are bounded by ``max_request_bytes``: a larger one
gets a 413 that names the limit before anything is parsed or stored, whether its size is declared
or it arrives in chunks. Multipart uploads keep their own limits."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from labella.api.app import create_app
from labella.config import Settings
from labella.storage.db import Database
from tests.conftest import signed_in_client

LIMIT = 4096


@pytest.fixture
def limited(settings: Settings, db: Database, test_password_hash: str) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"max_request_bytes": LIMIT}), db=db)
    with TestClient(app):
        yield signed_in_client(app, db, "admin", test_password_hash, is_admin=True)


def project_body(n_classes: int, name: str = "big") -> dict[str, object]:
    return {"name": name, "classes": [f"class {i:05d}" for i in range(n_classes)]}


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_refused(response: object) -> None:
    assert response.status_code == 413, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["code"] == "payload_too_large"
    assert "over the limit of 4.0 KiB" in body["detail"]
    assert body["details"] == {"limit_bytes": LIMIT}


def test_a_body_over_the_limit_is_refused_before_it_is_stored(limited: TestClient) -> None:
    oversize = json.dumps(project_body(400)).encode()
    assert len(oversize) > LIMIT
    declared = limited.post(
        "/api/projects", content=oversize, headers={"Content-Type": "application/json"}
    )
    assert_refused(declared)
    assert f"the request body is 5.9 KiB ({len(oversize):,} bytes)" in declared.json()["detail"]
    # no Content-Length: the body arrives in chunks and is cut off once it passes the limit
    streamed = limited.post(
        "/api/projects", content=chunks(oversize), headers={"Content-Type": "application/json"}
    )
    assert_refused(streamed)
    assert limited.get("/api/projects").json() == []

    declared_fit = json.dumps(project_body(20, "declared")).encode()
    streamed_fit = json.dumps(project_body(20, "streamed")).encode()
    assert max(len(declared_fit), len(streamed_fit)) < LIMIT
    for content in (declared_fit, chunks(streamed_fit, 100)):
        created = limited.post(
            "/api/projects", content=content, headers={"Content-Type": "application/json"}
        )
        assert created.status_code == 201, created.text
    assert len(limited.get("/api/projects").json()) == 2


def test_multipart_uploads_are_not_bound_by_it(limited: TestClient) -> None:
    project = limited.post("/api/projects", json=project_body(2)).json()
    rows = "".join(f"review number {i} of a film,class 00000\n" for i in range(400))
    upload = ("text,label\n" + rows).encode()
    assert len(upload) > LIMIT
    response = limited.post(
        f"/api/projects/{project['id']}/imports", files={"file": ("a.csv", upload)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["items_created"] == 400
