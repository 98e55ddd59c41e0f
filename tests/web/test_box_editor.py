"""The box editor of an object-detection project, driven in headless Chromium against a real
server: draw, resize, re-class, delete, undo/redo, accept the detector's prelabels, zoom, pan,
duplicate, cycle, submit; the boxes stored in the database are the ones drawn (within a pixel).

The editor exposes ``window.labellaBoxEditor.toClient(x, y)`` (image pixels to page pixels) so
that the tests aim at image coordinates whatever the zoom; they wait on the stage's data
attributes (box counts, selection, zoom), never on time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labella.config import Settings
from labella.storage.db import Database
from labella.storage.models import ModelVersion, Prediction
from tests.image_files import image_bytes
from tests.web.conftest import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

WIDTH, HEIGHT = 200, 150
PRELABEL = {"x_min": 30.0, "y_min": 40.0, "x_max": 90.0, "y_max": 110.0, "score": 0.8}


def _detection_project(live_server: LiveServer, name: str) -> dict[str, Any]:
    """Two 200x150 images, each with one prelabel (a 'cat' box) from a planted detector."""
    project = live_server.create_project(
        name,
        ["cat", "dog", "bird"],
        kind="object_detection",
        retrain_every=1000,  # no training in the background while the browser works
        online_update_every=0,
    )
    files = [
        ("files", (f"{name}-{i}.png", image_bytes(i, fmt="png", size=(WIDTH, HEIGHT)), "image/png"))
        for i in range(2)
    ]
    with live_server.client() as http:
        response = http.post(f"/api/projects/{project['id']}/detections/import", files=files)
        assert response.status_code == 201, response.text
        items = http.get(f"/api/projects/{project['id']}/items").json()["items"]
    project["items"] = [row["id"] for row in items]
    project["class_ids"] = {c["name"]: c["id"] for c in project["classes"]}
    _plant_prelabels(live_server, project)
    return project


def _plant_prelabels(live_server: LiveServer, project: dict[str, Any]) -> None:
    settings = Settings(data_dir=live_server.data_dir, _env_file=None)  # type: ignore[call-arg]
    db = Database.from_settings(settings)
    cat = project["class_ids"]["cat"]
    try:
        with db.transaction() as session:
            model = ModelVersion(
                project_id=project["id"],
                version=1,
                head="fcos",
                # another encoder than the project's: the server's own jobs (ranking after the
                # import's encoding) then treat this planted version as unusable and leave its
                # predictions alone instead of trying to load its (missing) weights
                encoder="planted by the test",
                n_labels=0,
                metrics={"class_ids": list(project["class_ids"].values())},
                artifact_path="",
            )
            session.add(model)
            session.flush()
            for item_id in project["items"]:
                session.add(
                    Prediction(
                        item_id=item_id,
                        project_id=project["id"],
                        model_version_id=model.id,
                        probs=[0.8, 0.0, 0.0],
                        predicted=[cat],
                        confidence=0.8,
                        boxes=[{"class_id": cat, **PRELABEL}],
                    )
                )
    finally:
        db.dispose()


def _open(page: Page, live_server: LiveServer, project: dict[str, Any]) -> int:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/projects/{project['id']}/label")
    stage = page.locator("#box-stage")
    expect(stage).to_have_attribute("data-ready", "1")
    expect(stage).to_have_attribute("data-prelabels", "1")
    return int(stage.get_attribute("data-item-id") or 0)


def _at(page: Page, x: float, y: float) -> tuple[float, float]:
    point = page.evaluate("([x, y]) => window.labellaBoxEditor.toClient(x, y)", [x, y])
    return float(point["x"]), float(point["y"])


def _drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag between two image-pixel points."""
    page.mouse.move(*_at(page, *start))
    page.mouse.down()
    page.mouse.move(*_at(page, *end), steps=6)
    page.mouse.up()


def _answer(page: Page) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = page.evaluate("() => window.labellaBoxEditor.answer()")
    return answer


def _close(box: dict[str, Any], expected: tuple[float, float, float, float]) -> bool:
    got = (box["x_min"], box["y_min"], box["x_max"], box["y_max"])
    return all(abs(a - b) <= 1.0 for a, b in zip(got, expected, strict=True))


def _stored(live_server: LiveServer, project: dict[str, Any], item_id: int) -> list[Any]:
    with live_server.client() as http:
        response = http.get(f"/api/projects/{project['id']}/items/{item_id}/boxes")
    assert response.status_code == 200, response.text
    current = response.json()["current"]
    assert current is not None and current["label"]["source"] == "human"
    return list(current["boxes"])


def test_draw_resize_reclass_delete_undo_accept_and_submit(
    page: Page, live_server: LiveServer
) -> None:
    from playwright.sync_api import expect

    project = _detection_project(live_server, "editor")
    ids = project["class_ids"]
    stage = page.locator("#box-stage")
    first = _open(page, live_server, project)
    expect(page.locator("#prediction")).to_contain_text("suggests 1 box")
    expect(page.locator(".box-svg rect.box.prelabel")).to_have_count(1)

    # draw a cat box, then resize it by its bottom-right handle
    _drag(page, (20, 20), (80, 60))
    expect(stage).to_have_attribute("data-boxes", "1")
    (drawn,) = _answer(page)
    assert drawn["class"] == ids["cat"] and _close(drawn, (20, 20, 80, 60)), drawn
    handle = page.locator(".box-svg rect.handle-se")
    expect(handle).to_have_count(1)
    _drag(page, (80, 60), (100, 90))
    page.wait_for_function("() => Math.abs(window.labellaBoxEditor.answer()[0].x_max - 100) <= 1")
    (resized,) = _answer(page)
    assert _close(resized, (20, 20, 100, 90)), resized

    # its class by key, then by the list
    page.keyboard.press("2")
    expect(page.locator("#box-class")).to_have_value(str(ids["dog"]))
    page.select_option("#box-class", str(ids["bird"]))
    expect(page.locator(f".class-button[data-class-id='{ids['bird']}']")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.locator("#box-stage").focus()
    page.keyboard.press("2")
    assert _answer(page)[0]["class"] == ids["dog"]

    # a second box, deleted, then undo brings it back and redo deletes it again
    _drag(page, (120, 20), (180, 60))
    expect(stage).to_have_attribute("data-boxes", "2")
    page.keyboard.press("Delete")
    expect(stage).to_have_attribute("data-boxes", "1")
    page.keyboard.press("Control+z")
    expect(stage).to_have_attribute("data-boxes", "2")
    page.keyboard.press("Control+Shift+z")
    expect(stage).to_have_attribute("data-boxes", "1")
    expect(page.locator("#box-list li")).to_have_count(2)  # the drawn box and the prelabel

    # moving a prelabel corrects and so accepts it; undo puts it back, still a suggestion
    _drag(page, (60, 100), (70, 105))
    expect(stage).to_have_attribute("data-prelabels", "0")
    assert any(_close(b, (40, 45, 100, 115)) for b in _answer(page))
    page.keyboard.press("Control+z")
    expect(stage).to_have_attribute("data-prelabels", "1")
    assert len(_answer(page)) == 1

    # A accepts the detector's box
    page.keyboard.press("a")
    expect(stage).to_have_attribute("data-prelabels", "0")
    expect(stage).to_have_attribute("data-boxes", "2")
    expect(page.locator(".box-svg rect.box.prelabel")).to_have_count(0)

    page.keyboard.press("Enter")
    expect(stage).not_to_have_attribute("data-item-id", str(first))
    expect(stage).to_have_attribute("data-ready", "1")
    expect(page.locator("#conn")).to_have_attribute("data-pending", "0")
    stored = sorted(_stored(live_server, project, first), key=lambda b: b["x_min"])
    assert [b["name"] for b in stored] == ["dog", "cat"]
    assert _close(stored[0], (20, 20, 100, 90)), stored
    prelabel = (PRELABEL["x_min"], PRELABEL["y_min"], PRELABEL["x_max"], PRELABEL["y_max"])
    assert _close(stored[1], prelabel), stored


def test_zoom_pan_duplicate_cycle_and_drop_a_prelabel(page: Page, live_server: LiveServer) -> None:
    from playwright.sync_api import expect

    project = _detection_project(live_server, "zoomed")
    stage = page.locator("#box-stage")
    item = _open(page, live_server, project)

    # the wheel zooms at the cursor: the image point under it stays put
    cursor = _at(page, 50, 50)
    page.mouse.move(*cursor)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => Number(document.querySelector('#box-stage').dataset.zoom) > 1.5")
    after = _at(page, 50, 50)
    assert abs(after[0] - cursor[0]) <= 1 and abs(after[1] - cursor[1]) <= 1
    page.keyboard.press("0")
    expect(stage).to_have_attribute("data-zoom", "1.000")
    for _ in range(4):
        page.keyboard.press("+")
    expect(stage).to_have_attribute("data-zoom", "2.441")

    # space-drag pans: the same image pixel moves on the page by the drag
    before = _at(page, 100, 75)
    page.keyboard.down("Space")
    expect(stage).to_have_attribute("data-space", "1")
    page.mouse.move(*before)
    page.mouse.down()
    page.mouse.move(before[0] + 60, before[1] + 40, steps=4)
    page.mouse.up()
    page.keyboard.up("Space")
    expect(stage).to_have_attribute("data-boxes", "0")  # panning drew nothing
    moved = _at(page, 100, 75)
    assert abs(moved[0] - before[0] - 60) <= 1 and abs(moved[1] - before[1] - 40) <= 1

    # so does a drag with the middle button
    start = _at(page, 100, 75)
    page.mouse.move(*start)
    page.mouse.down(button="middle")
    page.mouse.move(start[0] - 30, start[1] - 20, steps=3)
    page.mouse.up(button="middle")
    back = _at(page, 100, 75)
    assert abs(back[0] - start[0] + 30) <= 1 and abs(back[1] - start[1] + 20) <= 1
    expect(stage).to_have_attribute("data-boxes", "0")

    # a small box drawn while zoomed in lands on the right image pixels
    page.keyboard.press("3")  # bird for new boxes
    _drag(page, (100, 70), (108, 76))
    expect(stage).to_have_attribute("data-boxes", "1")
    (small,) = _answer(page)
    assert small["class"] == project["class_ids"]["bird"] and _close(small, (100, 70, 108, 76))

    # Ctrl+D duplicates the selected box (the copy is selected, a little down and right)
    page.keyboard.press("Control+d")
    expect(stage).to_have_attribute("data-boxes", "2")
    original, copy = _answer(page)
    assert copy["x_min"] > original["x_min"] and copy["y_min"] > original["y_min"]
    assert copy["x_max"] - copy["x_min"] == original["x_max"] - original["x_min"]

    # Enter with a suggestion neither accepted nor deleted asks first
    page.keyboard.press("Enter")
    expect(page.locator("#hint")).to_contain_text("neither accepted nor deleted")
    expect(stage).to_have_attribute("data-item-id", str(item))

    # Tab cycles through the boxes (the prelabel first, in list order); Delete drops the prelabel
    selected = stage.get_attribute("data-selected")
    page.keyboard.press("Tab")
    expect(stage).not_to_have_attribute("data-selected", selected or "")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(stage).to_have_attribute("data-selected", selected or "")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#box-list li[aria-current='true']")).to_have_class("box-row prelabel")
    page.keyboard.press("Delete")
    expect(stage).to_have_attribute("data-prelabels", "0")
    expect(stage).to_have_attribute("data-boxes", "2")

    answer = _answer(page)
    page.keyboard.press("Enter")
    expect(stage).not_to_have_attribute("data-item-id", str(item))
    expect(page.locator("#conn")).to_have_attribute("data-pending", "0")
    stored = _stored(live_server, project, item)
    assert [b["name"] for b in stored] == ["bird", "bird"]
    for got, sent in zip(stored, answer, strict=True):
        assert _close(got, (sent["x_min"], sent["y_min"], sent["x_max"], sent["y_max"]))
    assert _close(stored[0], (100, 70, 108, 76))

    # B goes back to change that answer (its boxes come back); S skips the other image
    other = int(stage.get_attribute("data-item-id") or 0)
    page.keyboard.press("b")
    expect(stage).to_have_attribute("data-item-id", str(item))
    expect(page.locator("#revisit")).to_contain_text("it was: 2 boxes")
    expect(stage).to_have_attribute("data-boxes", "2")
    page.keyboard.press("Tab")
    page.keyboard.press("Delete")
    expect(stage).to_have_attribute("data-boxes", "1")
    page.keyboard.press("Enter")
    expect(stage).to_have_attribute("data-item-id", str(other))
    page.keyboard.press("s")
    expect(page.locator("#waiting")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-pending", "0")
    with live_server.client() as http:
        changed = http.get(f"/api/projects/{project['id']}/items/{item}/boxes").json()
        skipped = http.get(f"/api/projects/{project['id']}/items/{other}/boxes").json()
    assert len(changed["current"]["boxes"]) == 1 and len(changed["previous"]) == 1
    assert len(changed["previous"][0]["boxes"]) == 2
    assert skipped["status"] == "skipped" and skipped["current"]["label"]["skipped"] is True
