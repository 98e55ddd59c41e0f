"""Object-detection API: upload images with VOC/COCO/YOLO boxes, a server folder confined to the
import roots, exports in every format, and bad input answered with a clear 4xx."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from labella.config import Settings
from labella.services.detection_formats import Annotation, Box, write_voc
from tests.image_files import image_bytes, write_image


def create_detection_project(client: TestClient) -> dict[str, Any]:
    response = client.post(
        "/api/projects",
        json={"name": "boxes", "kind": "object_detection", "classes": ["cat", "dog"]},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_upload_then_export_every_format(client: TestClient) -> None:
    pid = create_detection_project(client)["id"]
    voc = write_voc(Annotation("a.png", "a", [Box("cat", 1, 2, 10, 12)], 32, 24))
    coco = {
        "images": [{"id": 1, "file_name": "b.png", "width": 32, "height": 24}],
        "annotations": [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 40, 5]}],  # too wide
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    files = [
        ("files", ("a.png", image_bytes(1, fmt="png"), "image/png")),
        ("files", ("b.png", image_bytes(2, fmt="png"), "image/png")),
        ("files", ("a.xml", voc, "application/xml")),
        ("files", ("b.json", json.dumps(coco).encode(), "application/json")),
    ]
    response = client.post(f"/api/projects/{pid}/detections/import", files=files)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["items_created"] == 1 and report["boxes_created"] == 1
    assert report["bad_annotations"] == 1
    assert "outside the 32x24 image" in report["bad_annotation_examples"][0]["reason"]
    for fmt, kind in (("voc", "zip"), ("yolo", "zip"), ("coco", "json"), ("csv", "csv")):
        exported = client.get(f"/api/projects/{pid}/detections/export", params={"format": fmt})
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-disposition"].endswith(f'.{kind}"')
        if kind == "zip":
            names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
            assert names[0] in ("Annotations/a.xml", "labels/a.txt")
    coco_out = client.get(f"/api/projects/{pid}/detections/export?format=coco").json()
    assert coco_out["annotations"][0]["bbox"] == [1, 2, 9, 10]


def test_bad_requests_are_clear_4xx(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    pid = create_detection_project(client)["id"]
    base = f"/api/projects/{pid}/detections"
    bad = client.get(f"{base}/export", params={"format": "pdf"})
    assert bad.status_code == 422 and "unknown export format 'pdf'" in bad.json()["detail"]
    assert client.post(f"{base}/import").status_code == 422
    zip_junk = [("files", ("x.zip", b"PK\x03\x04junk", "application/zip"))]
    bad = client.post(f"{base}/import", files=zip_junk)
    assert bad.status_code == 422 and "not a readable zip" in bad.json()["detail"]
    outside = tmp_path / "elsewhere"
    write_image(outside / "a.png", 1)
    bad = client.post(f"{base}/import/folder", json={"path": str(outside)})
    assert bad.status_code == 403 and "LABELLA_IMPORT_ROOTS" in bad.json()["detail"]
    text = client.post("/api/projects", json={"name": "texts", "classes": ["a", "b"]}).json()
    bad = client.get(f"/api/projects/{text['id']}/detections/export?format=voc")
    assert bad.status_code == 422 and "object-detection" in bad.json()["detail"]


def test_server_folder_inside_the_data_dir(client: TestClient, settings: Settings) -> None:
    pid = create_detection_project(client)["id"]
    folder = settings.data_dir / "incoming"
    write_image(folder / "images" / "a.png", 1, size=(20, 20))
    (folder / "labels").mkdir(parents=True)
    (folder / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (folder / "classes.txt").write_text("cat\ndog\n")
    response = client.post(
        f"/api/projects/{pid}/detections/import/folder", json={"path": str(folder)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["boxes_created"] == 1 and response.json()["referenced"] == 1


def test_the_labeling_page_of_a_detection_project_is_the_box_editor(
    client: TestClient, make_user: Any
) -> None:
    project = client.post(
        "/api/projects",
        json={"name": "boxes page", "kind": "object_detection", "classes": ["cell", "dot"]},
    ).json()
    page = client.get(f"/projects/{project['id']}/label")
    assert page.status_code == 200
    assert "/static/label_boxes.js" in page.text and 'id="box-stage"' in page.text
    # a non-member learns nothing about the project
    outsider = make_user()
    assert outsider.get(f"/projects/{project['id']}/label").status_code == 404
