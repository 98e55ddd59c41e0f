"""Every API operation, sent malformed input: wrong types, out-of-range and overflowing ids, broken
JSON, junk query values. The answer is always a 4xx with a message, never a 500 (the operations
are read from the app's own OpenAPI schema, so a new route is swept without being listed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.image_files import image_bytes

BAD_IDS = ("0", "-1", "abc", "1.5", "9" * 30)
BAD_QUERY_VALUES = ("abc", "-1", "9" * 30, "")
WRONG_TYPE = {"string": 12345, "integer": "x", "number": "x", "boolean": "maybe", "array": "x"}
# Operations that answer with a stream, not a response: swept for their ids only.
STREAMED = re.compile(r"/events$")


def operations(client: TestClient) -> Iterator[tuple[str, str, dict[str, Any]]]:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if path.startswith("/api/") and method in {"get", "post", "put", "patch", "delete"}:
                yield path, method, operation


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root["components"]["schemas"][name]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [resolve(s, root) for s in schema[key]]
            concrete = [s for s in options if s.get("type") != "null"]
            return concrete[0] if concrete else options[0]
    return schema


def wrong_bodies(operation: dict[str, Any], root: dict[str, Any]) -> list[Any]:
    """JSON bodies of the wrong shape: not an object; every declared field of the wrong type;
    the right types with absurd numbers; the right types with absurd strings (nested objects
    and lists filled the same way)."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return []
    schema = resolve(content["application/json"]["schema"], root)
    properties = {name: resolve(p, root) for name, p in schema.get("properties", {}).items()}
    wrong = {name: WRONG_TYPE.get(p.get("type", "")) for name, p in properties.items()}
    huge_numbers = absurd(schema, root, number=2**70, text="x")
    huge_strings = absurd(schema, root, number=1, text="x" * 100_000)
    negative = absurd(schema, root, number=-1, text="")
    # one field at a time too, so that each reaches the checks behind the first field's
    one_at_a_time = [
        {name: value[name]}
        for value in (huge_numbers, huge_strings, negative)
        if isinstance(value, dict)
        for name in value
    ]
    return [[], "x", {}, wrong, huge_numbers, huge_strings, negative, *one_at_a_time]


def absurd(schema: dict[str, Any], root: dict[str, Any], *, number: int, text: str) -> Any:
    """A value of the schema's own type, every number ``number`` and every string ``text``."""
    schema = resolve(schema, root)
    kind = schema.get("type")
    if kind in {"integer", "number"}:
        return number if kind == "integer" or abs(number) < 2**60 else 1e308
    if kind == "string":
        # as long as the schema allows, so the value gets past it to what lies behind
        return text[: schema.get("maxLength", len(text))]
    if kind == "boolean":
        return True
    if kind == "array":
        return [absurd(schema.get("items", {}), root, number=number, text=text)] * 2
    properties = schema.get("properties")
    if kind == "object" or properties:
        if not properties:
            return {text[:50] or "x": [number]}
        return {
            name: absurd(prop, root, number=number, text=text) for name, prop in properties.items()
        }
    return None


def fill(path: str, values: dict[str, str], default: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), default), path)


@pytest.fixture
def sweeping_client(client: TestClient) -> TestClient:
    """The signed-in admin's client, answering a server error with its 500 instead of raising,
    so that one test lists every operation that fails."""
    sweeper = TestClient(client.app, raise_server_exceptions=False)
    sweeper.headers.update(client.headers)
    return sweeper


def test_malformed_requests_get_a_4xx_that_names_the_problem(
    client: TestClient, sweeping_client: TestClient
) -> None:
    project = client.post(
        "/api/projects", json={"name": "reviews", "classes": ["negative", "positive"]}
    ).json()
    client.post(
        f"/api/projects/{project['id']}/imports",
        files={"file": ("a.csv", b"text,label\ngood film,positive\nbad film,\n")},
    )
    item = client.get(f"/api/projects/{project['id']}/items").json()
    item_id = str((item.get("items") or item)[0]["id"]) if item else "1"
    real = {
        "project_id": str(project["id"]),
        "item_id": item_id,
        "class_id": str(project["classes"][0]["id"]),
    }
    root = client.app.openapi()  # type: ignore[attr-defined]
    failures: list[str] = []

    def check(method: str, url: str, **kwargs: Any) -> None:
        response = sweeping_client.request(method, url, **kwargs)
        sent = kwargs.get("json", kwargs.get("content", ""))
        shown = f"{method.upper()} {url} {kwargs.get('params', '')} {sent!r:.80}"
        if response.status_code >= 500:
            failures.append(f"{shown} -> {response.status_code} {response.text[:200]}")
        elif response.status_code >= 400 and not response.json().get("detail"):
            failures.append(f"{shown} -> {response.status_code} without a message")

    for path, method, operation in operations(client):
        names = re.findall(r"\{(\w+)\}", path)
        for name in names:
            for bad in BAD_IDS:
                check(method, fill(path, {**real, name: bad}, "1"))
        if STREAMED.search(path):
            continue
        url = fill(path, real, "1")
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query":
                for bad in BAD_QUERY_VALUES:
                    check(method, url, params={parameter["name"]: bad})
        if method in {"post", "put", "patch"}:
            check(method, url, content=b"{not json", headers={"Content-Type": "application/json"})
            for body in wrong_bodies(operation, root):
                check(method, url, json=body)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("page", ["", "/label", "/items", "/members", "/review"])
def test_project_pages_with_an_id_no_row_can_have_say_not_found(
    sweeping_client: TestClient, page: str
) -> None:
    for bad in ("0", "-1", "9" * 30):
        response = sweeping_client.get(f"/projects/{bad}{page}")
        assert response.status_code == 404, (bad, response.status_code, response.text[:200])
        assert f"project {bad} does not exist" in response.text


# Multipart uploads: the envelope itself broken, then well-formed forms carrying junk.
BOUNDARY = "sweep-boundary"
BROKEN_ENVELOPES: tuple[tuple[dict[str, str], bytes], ...] = (
    ({}, b""),
    ({"Content-Type": "multipart/form-data"}, b"no boundary given"),
    ({"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}, b"not a multipart body"),
    (
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        "text\ncut off before the closing boundary".encode(),
    ),
    (
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        f"--{BOUNDARY}\r\nContent-Disposition: nonsense\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
    ),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"file=text%0Ahello&files=x"),
    ({"Content-Type": "application/json"}, b'{"file": "x", "files": ["x"]}'),
)
JUNK_BYTES = bytes(range(256)) * 8
JUNK_NAMES = (
    "a.csv", "a.tsv", "a.jsonl", "a.txt", "a.jpg", "a.png", "a.zip", "a.xml", "a.json",
    "classes.txt", "data.yaml", "no-extension", "", "../../escape.csv", "x" * 5_000 + ".csv",
)  # fmt: skip


def multipart_operations(client: TestClient) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, method, operation in operations(client):
        content = operation.get("requestBody", {}).get("content", {})
        if method == "post" and "multipart/form-data" in content:
            yield path, content["multipart/form-data"]["schema"]


def junk_forms(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``files``/``data`` arguments for well-formed forms of junk: unreadable or empty files under
    every kind of name, files under a name the route does not read, and every text option absurd
    (empty, huge, a NUL, a word no option takes) or sent as a file."""
    properties = schema.get("properties", {})
    file_fields = [n for n, p in properties.items() if "binary" in str(p)]
    options = [n for n in properties if n not in file_fields]
    for field in file_fields:
        for name in JUNK_NAMES:
            yield {"files": [(field, (name, JUNK_BYTES))]}
            yield {"files": [(field, (name, b""))]}
    yield {"files": [("unexpected", ("a.csv", b"text\nhello\n"))]}
    valid_file = [(file_fields[0], ("a.csv", b"text\nhello\n"))]
    for option in options:
        for value in ("", "x" * 100_000, "nul\x00byte", "|||", "maybe", "-1", "9" * 30):
            yield {"files": valid_file, "data": {option: value}}
        yield {"files": [*valid_file, (option, ("option.txt", b"x"))]}


def stored_items(client: TestClient, project_id: int) -> dict[int, tuple[Any, ...]]:
    """Each item's id -> what a lost or corrupted row would change: its name, text and label."""
    listed = client.get(f"/api/projects/{project_id}/items", params={"limit": 500}).json()
    return {
        item["id"]: (item["external_id"], item["text"], item["status"], item["classes"])
        for item in listed["items"]
    }


def test_malformed_uploads_get_a_4xx_that_names_the_problem_and_keep_what_is_stored(
    client: TestClient, sweeping_client: TestClient
) -> None:
    kinds = {
        "imports": ("text_classification", "a.csv", b"text,label\ngood film,positive\n"),
        "images": ("image_classification", "a.png", image_bytes(1, fmt="png")),
        "detections": ("object_detection", "a.png", image_bytes(2, fmt="png")),
    }
    failures: list[str] = []
    for path, schema in multipart_operations(client):
        kind, name, content = next(v for k, v in kinds.items() if f"/{k}" in path)
        project = client.post(
            "/api/projects",
            json={"name": f"sweep {kind}", "kind": kind, "classes": ["negative", "positive"]},
        ).json()
        url = fill(path, {"project_id": str(project["id"])}, "1")
        field = "file" if "file" in schema["properties"] else "files"
        seeded = client.post(url, files=[(field, (name, content))])
        assert seeded.status_code < 300, seeded.text
        before = stored_items(client, project["id"])
        assert before

        def check(shown: str, response: Any, url: str = url) -> None:
            if response.status_code >= 500:
                failures.append(f"POST {url} {shown:.120} -> {response.status_code}")
            elif response.status_code >= 400 and not response.json().get("detail"):
                failures.append(f"POST {url} {shown:.120} -> {response.status_code} no message")

        for headers, body in BROKEN_ENVELOPES:
            check(f"{headers} {body!r}", sweeping_client.post(url, content=body, headers=headers))
        for form in junk_forms(schema):
            check(repr(form), sweeping_client.post(url, **form))
        after = stored_items(client, project["id"])
        lost = [item for item, row in before.items() if after.get(item) != row]
        if lost:
            failures.append(f"POST {url}: stored items lost or changed: {lost}")
    assert not failures, "\n".join(failures)
