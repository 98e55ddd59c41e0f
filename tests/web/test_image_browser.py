"""The browser UI of an image project: the labeling screen shows the image large with the
prelabel and multi-label toggles (number keys toggle, Enter submits), the data browser shows
thumbnails. Real server, real Chromium, real image files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.image_files import image_bytes
from tests.web.conftest import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _image_project(live_server: LiveServer, n_images: int = 6) -> tuple[int, dict[str, int]]:
    project = live_server.create_project(
        "Photos", ["cat", "dog", "outdoor"], kind="image_classification", multi_label=True
    )
    files = [
        ("files", (f"photo-{i}.png", image_bytes(i, fmt="png", size=(48, 32)), "image/png"))
        for i in range(n_images)
    ]
    with live_server.client() as http:
        response = http.post(f"/api/projects/{project['id']}/images", files=files)
    assert response.status_code == 201, response.text
    assert response.json()["items_created"] == n_images
    return project["id"], {c["name"]: c["id"] for c in project["classes"]}


def _loaded(page: Page, selector: str) -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_label_images_with_multi_label_toggles_and_browse_thumbnails(
    page: Page, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    project_id, classes = _image_project(live_server)
    page.goto(f"{live_server.url}/projects/{project_id}/label")

    image = page.locator("#item-image")
    expect(image).to_be_visible()
    expect(page.locator("#item-text")).to_be_hidden()
    expect(image).to_have_attribute(
        "src", f"/api/projects/{project_id}/items/{image.get_attribute('data-item-id')}/image"
    )
    page.wait_for_function("document.querySelector('#item-image').naturalWidth > 0")
    assert _loaded(page, "#item-image")
    box = image.bounding_box()
    assert box is not None and box["width"] >= 400  # a 48 px picture is shown large
    expect(page.locator("#item-caption")).to_contain_text("48×32")
    expect(page.locator("#prediction")).to_contain_text("No model prediction yet")

    first = int(image.get_attribute("data-item-id") or 0)
    button = {
        name: page.locator(f".class-button[data-class-id='{cid}']") for name, cid in classes.items()
    }
    page.keyboard.press("1")
    page.keyboard.press("3")
    expect(button["cat"]).to_have_attribute("aria-pressed", "true")
    expect(button["outdoor"]).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("1")  # toggles cat off again
    expect(button["cat"]).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(image).not_to_have_attribute("data-item-id", str(first))
    expect(page.locator("#conn")).to_have_attribute("data-pending", "0")

    with live_server.client() as http:
        history = http.get(f"/api/projects/{project_id}/items/{first}").json()
    current = history["current_label"]
    assert sorted(c["name"] for c in current["classes"]) == ["dog", "outdoor"]

    page.goto(f"{live_server.url}/projects/{project_id}/items")
    thumbs = page.locator("#items-table img.thumb")
    expect(thumbs).to_have_count(6)
    page.wait_for_function(
        "[...document.querySelectorAll('#items-table img.thumb')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    thumbs.first.click()
    expect(page.locator("#item-body img.full-image")).to_be_visible()
