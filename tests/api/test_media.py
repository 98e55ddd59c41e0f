"""Image API: uploads (images, zips, listings), server-side folders confined to the import roots,
and images and thumbnails served with caching headers."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from labella.config import Settings
from tests.image_files import corrupt_bytes, image_bytes, png_bomb, truncated_jpeg, write_image


def create_image_project(client: TestClient, *, multi_label: bool = False) -> dict[str, Any]:
    response = client.post(
        "/api/projects",
        json={
            "name": "photos",
            "kind": "image_classification",
            "classes": ["cat", "dog"],
            "multi_label": multi_label,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def items(client: TestClient, project_id: int) -> list[dict[str, Any]]:
    return list(client.get(f"/api/projects/{project_id}/items").json()["items"])


def test_image_project_defaults_to_efficientnet(client: TestClient) -> None:
    project = create_image_project(client)
    assert project["kind"] == "image_classification"
    assert project["encoder"] == "efficientnet-lite0"
    bad = client.post(
        "/api/projects",
        json={
            "name": "x",
            "kind": "image_classification",
            "classes": ["a", "b"],
            "encoder": "all-MiniLM-L6-v2",
        },
    )
    assert bad.status_code == 422 and "unknown image encoder" in bad.json()["detail"]


def test_upload_images_and_a_zip_then_serve_them(client: TestClient) -> None:
    project = create_image_project(client)
    pid = project["id"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("cat/z.jpg", image_bytes(3))
        zf.writestr("../../evil.jpg", image_bytes(4))
    files = [
        ("files", ("a.png", image_bytes(1, fmt="png"), "image/png")),
        ("files", ("b.webp", image_bytes(2, fmt="webp"), "image/webp")),
        ("files", ("broken.jpg", truncated_jpeg(), "image/jpeg")),
        ("files", ("noise.bmp", corrupt_bytes(), "image/bmp")),
        ("files", ("bomb.png", png_bomb(), "image/png")),
        ("files", ("set.zip", archive.getvalue(), "application/zip")),
    ]
    response = client.post(f"/api/projects/{pid}/images", files=files, data={"labels": "dog"})
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["items_created"] == 3 and report["stored"] == 3
    assert report["labels_created"] == 3  # zip folder 'cat', the form's 'dog' for the others
    skipped = {s["name"]: s["reason"] for s in report["skipped_examples"]}
    assert set(skipped) == {"broken.jpg", "noise.bmp", "bomb.png", "set.zip:../../evil.jpg"}
    assert report["encode_job_id"] is not None

    rows = {row["text"]: row for row in items(client, pid)}
    assert set(rows) == {"a.png", "b.webp", "cat/z.jpg"}
    item_id = rows["a.png"]["id"]
    image = client.get(f"/api/projects/{pid}/items/{item_id}/image")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == image_bytes(1, fmt="png")
    etag = image.headers["etag"]
    assert etag.startswith('"') and "max-age" in image.headers["cache-control"]
    again = client.get(
        f"/api/projects/{pid}/items/{item_id}/image", headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and not again.content

    thumb = client.get(f"/api/projects/{pid}/items/{item_id}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff" and thumb.headers["etag"] != etag
    cached = client.get(
        f"/api/projects/{pid}/items/{item_id}/thumbnail",
        headers={"If-None-Match": thumb.headers["etag"]},
    )
    assert cached.status_code == 304

    queued = client.get(f"/api/projects/{pid}/next", params={"n": 5})
    if queued.status_code == 200:
        assert all(i["media_uri"] for i in queued.json()["items"])


def test_image_routes_answer_4xx_for_what_is_not_there(client: TestClient) -> None:
    project = create_image_project(client)
    pid = project["id"]
    assert client.get(f"/api/projects/{pid}/items/999/image").status_code == 404
    assert client.get("/api/projects/999/items/1/thumbnail").status_code == 404
    text = client.post("/api/projects", json={"name": "texts", "classes": ["a", "b"]}).json()
    imported = client.post(
        f"/api/projects/{text['id']}/imports",
        files={"file": ("t.csv", b"text\nhello there\n", "text/csv")},
    )
    assert imported.status_code == 201
    text_item = items(client, text["id"])[0]["id"]
    response = client.get(f"/api/projects/{text['id']}/items/{text_item}/image")
    assert response.status_code == 404 and "text item" in response.json()["detail"]
    refused = client.post(
        f"/api/projects/{text['id']}/images", files=[("files", ("a.jpg", image_bytes(1)))]
    )
    assert refused.status_code == 422 and "image-classification" in refused.json()["detail"]
    wrong_way = client.post(
        f"/api/projects/{pid}/imports", files={"file": ("t.csv", b"text\nhi\n", "text/csv")}
    )
    assert wrong_way.status_code == 422 and "image project" in wrong_way.json()["detail"]
    assert client.post(f"/api/projects/{pid}/images", data={"labels": "cat"}).status_code == 422


def test_server_paths_are_confined_to_the_import_roots(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    """A client must not make the server read files outside the allowed folders."""
    project = create_image_project(client)
    pid = project["id"]
    outside = tmp_path / "elsewhere"
    write_image(outside / "cat" / "a.jpg", 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("password")

    for path in (str(outside), "/etc", str(settings.data_dir / ".." / "elsewhere")):
        response = client.post(f"/api/projects/{pid}/images/folder", json={"path": path})
        assert response.status_code == 403, path
        assert "LABELLA_IMPORT_ROOTS" in response.json()["detail"]
    for listed in (str(outside / "cat" / "a.jpg"), "/etc/passwd", str(secret), "../../etc/passwd"):
        response = client.post(
            f"/api/projects/{pid}/images",
            files=[("files", ("list.csv", f"path\n{listed}\n".encode(), "text/csv"))],
            data={"base_dir": str(settings.data_dir)},
        )
        assert response.status_code == 403, listed
    response = client.post(
        f"/api/projects/{pid}/images",
        files=[("files", ("list.csv", b"path\nx.jpg\n", "text/csv"))],
        data={"base_dir": "/etc"},
    )
    assert response.status_code == 403
    assert items(client, pid) == []

    # inside the data dir (always allowed) the same requests work
    inside = settings.data_dir / "incoming"
    write_image(inside / "cat" / "a.jpg", 1)
    write_image(inside / "dog" / "b.png", 2)
    response = client.post(f"/api/projects/{pid}/images/folder", json={"path": str(inside)})
    assert response.status_code == 201, response.text
    assert response.json()["referenced"] == 2 and response.json()["labels_created"] == 2
    listing = b"path,label\ncat/a.jpg,dog\n"
    relisted = client.post(
        f"/api/projects/{pid}/images",
        files=[("files", ("list.csv", listing, "text/csv"))],
        data={"base_dir": str(inside)},
    )
    assert relisted.status_code == 201 and relisted.json()["duplicates"] == 1


def test_configured_import_roots_extend_what_may_be_read(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    project = create_image_project(client)
    shared = tmp_path / "shared-photos"
    write_image(shared / "cat" / "a.jpg", 1)
    settings.import_roots = [shared]
    response = client.post(
        f"/api/projects/{project['id']}/images/folder", json={"path": str(shared)}
    )
    assert response.status_code == 201 and response.json()["items_created"] == 1


def test_an_image_changed_or_removed_on_disk_is_a_clear_4xx(
    client: TestClient, settings: Settings
) -> None:
    project = create_image_project(client)
    pid = project["id"]
    folder = settings.data_dir / "incoming"
    a = write_image(folder / "a.jpg", 1)
    b = write_image(folder / "b.jpg", 2)
    assert (
        client.post(f"/api/projects/{pid}/images/folder", json={"path": str(folder)}).status_code
        == 201
    )
    by_name = {row["text"]: row["id"] for row in items(client, pid)}
    a.write_bytes(image_bytes(5))
    b.unlink()
    changed = client.get(f"/api/projects/{pid}/items/{by_name['a.jpg']}/image")
    assert changed.status_code == 422 and "changed on disk" in changed.json()["detail"]
    gone = client.get(f"/api/projects/{pid}/items/{by_name['b.jpg']}/image")
    assert gone.status_code == 404 and "no longer on disk" in gone.json()["detail"]
    # the thumbnail was made at import, so it is still served
    assert client.get(f"/api/projects/{pid}/items/{by_name['b.jpg']}/thumbnail").status_code == 200
