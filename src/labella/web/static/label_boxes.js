// The labeling screen of an object-detection project: the image large in the box editor
// (box_editor.js), its boxes listed beside it. As on the classification screen (label.js), the
// next images are prefetched so that Enter shows the next one at once, and answers go through the
// outbox (outbox.js), which survives reloads and lost connections. Keys: 1–9 pick the class,
// Enter submits the boxes, S skips, B goes back to change the last answer, ? lists the keys; the
// editor's own keys (draw, delete, duplicate, undo, zoom) are in box_editor.js.

import { api } from "./api.js";
import { BoxEditor } from "./box_editor.js";
import { classButton, labelProject, labelScreen, onActionButton, paintClassButton, renderItemHead } from "./label_page.js";
import { clear, el } from "./ui.js";

// keys of this screen and of the editor, which a class's own shortcut letter may not take
const RESERVED_KEYS = new Set(["enter", "s", "b", "a", "y", "?", "escape", "delete", "backspace", "tab", " ", "+", "-", "=", "_", "0"]);
const { project, base, classes, classById, keyOf, classOfKey, imageUrl } = labelProject(RESERVED_KEYS);
const $ = (id) => document.getElementById(id);

const editor = new BoxEditor($("box-stage"), { classes, onChange: () => renderBoxes() });
window.labellaBoxEditor = editor; // for the browser tests, which aim at image pixels

// state.current is {item, revisit: previous answer or null, confirmDrop: bool}
const { state, record, back, start, hint, keyTaken } = labelScreen({
  base,
  storageKey: `labella.outbox.boxes.${project.id}`,
  send: (entry) =>
    entry.kind === "skip"
      ? api(`${base}/items/${entry.item_id}/skip`, { method: "POST", body: { request_id: entry.request_id } })
      : api(`${base}/items/${entry.item_id}/boxes`, {
          method: "PUT",
          body: { boxes: entry.boxes, request_id: entry.request_id },
        }),
  what: "image",
  noun: "answer",
  saved: "All boxes saved",
  things: "images",
  answers: "boxes",
  imageUrl,
  open: (item) => ({ item, revisit: null, confirmDrop: false }),
  reopen: (answer, item) => ({ item, revisit: answer, confirmDrop: false }),
  show,
  draw: () => {
    renderItem();
    renderBoxes();
  },
  hintMs: 6000,
  classes,
  keyOf,
  describeKey: (c) => `Class ${c.name} (the selected box and new ones)`,
});

/** Load the current item into the editor: a fresh one with the detector's boxes as suggestions,
 * a revisited one with the boxes it was given. Its size comes with the item (the image import
 * recorded it). */
function show({ item, revisit }) {
  let boxes = [];
  let prelabels = [];
  if (revisit) {
    if (revisit.kind === "boxes") boxes = revisit.boxes.map((b) => ({ ...b, class_id: b.class }));
  } else prelabels = (item.prediction && item.prediction.boxes) || [];
  const meta = item.meta || {};
  const url = imageUrl(item);
  $("box-stage").dataset.itemId = String(item.item_id);
  if (meta.width && meta.height) {
    editor.load({ url, width: meta.width, height: meta.height, boxes, prelabels });
    return;
  }
  const probe = new Image();
  probe.onload = () => {
    if (state.current && state.current.item === item) {
      editor.load({ url, width: probe.naturalWidth, height: probe.naturalHeight, boxes, prelabels });
    }
  };
  probe.onerror = () => hint("The image could not be loaded.");
  probe.src = url;
}

// -- answers ------------------------------------------------------------------------------------
function submit() {
  const current = state.current;
  if (!current) return;
  const pending = editor.pendingPrelabels;
  if (pending && !current.confirmDrop) {
    current.confirmDrop = true;
    hint(`${pending} suggested box${pending === 1 ? " is" : "es are"} neither accepted nor deleted: A accepts them all; Enter again submits without them.`);
    return;
  }
  record("boxes", { boxes: editor.answer() });
}

// -- rendering ----------------------------------------------------------------------------------
const classButtons = new Map();
function buildClassControls() {
  const group = clear($("class-buttons"));
  const select = clear($("box-class"));
  for (const cls of classes) {
    const key = keyOf.get(cls.id);
    const button = classButton(cls, key, () => editor.setClass(cls.id));
    classButtons.set(cls.id, button);
    group.append(button);
    select.append(el("option", { value: cls.id }, key ? `${key.toUpperCase()} · ${cls.name}` : cls.name));
  }
  select.addEventListener("change", () => {
    editor.setClass(Number(select.value));
    $("box-stage").focus({ preventScroll: true }); // back to the image, where the keys work
  });
}

function renderBoxes() {
  const selected = editor.selected;
  const shownClass = selected ? selected.classId : editor.activeClass;
  for (const [id, button] of classButtons) paintClassButton(button, id === shownClass, classById.get(id).color);
  const select = $("box-class");
  select.disabled = !selected;
  if (selected) select.value = String(selected.classId);

  const list = clear($("box-list"));
  editor.boxes.forEach((box, index) => {
    const cls = classById.get(box.classId);
    const w = Math.round(box.x1 - box.x0);
    const h = Math.round(box.y1 - box.y0);
    const item = el(
      "li.box-row",
      {
        dataset: { boxId: box.id, classId: box.classId },
        "aria-current": box.id === editor.selectedId ? "true" : null,
        class: `box-row${box.prelabel ? " prelabel" : ""}`,
      },
      el("span.swatch", { "aria-hidden": "true" }),
      el("button.link.box-pick", { type: "button" }, `${index + 1}. ${cls ? cls.name : `#${box.classId}`}`),
      el("span.small.muted", {}, ` ${w}×${h}`),
      box.prelabel ? el("span.small.suggested", {}, ` suggested ${box.score !== null ? `${Math.round(box.score * 100)}%` : ""}`) : null,
    );
    item.querySelector(".swatch").style.background = (cls && cls.color) || "#9aa3ae";
    item.querySelector(".box-pick").addEventListener("click", () => editor.select(box.id));
    list.append(item);
  });
  const human = editor.boxes.length - editor.pendingPrelabels;
  $("box-count").textContent = editor.pendingPrelabels ? `(${human} + ${editor.pendingPrelabels} suggested)` : `(${human})`;
  $("no-boxes").hidden = editor.boxes.length > 0;
  $("accept-all").disabled = editor.pendingPrelabels === 0;
  $("undo").disabled = editor.undoStack.length === 0;
  $("redo").disabled = editor.redoStack.length === 0;
  $("zoom-level").textContent = `${Math.round((editor.view.scale / (editor.view.fit || 1)) * 100)}%`;
  if (state.current) state.current.confirmDrop = false;
}

function renderItem() {
  const { item, revisit } = state.current;
  let was = null;
  if (revisit) was = revisit.kind === "skip" ? "skipped" : `${revisit.boxes.length} box${revisit.boxes.length === 1 ? "" : "es"}`;
  renderItemHead(item, was, "image");
  const meta = item.meta || {};
  $("item-caption").textContent = `${item.text ?? ""}${meta.width ? ` · ${meta.width}×${meta.height}` : ""} ·`;
  const box = clear($("prediction"));
  const prediction = item.prediction;
  if (revisit) return;
  if (!prediction || !prediction.boxes) box.append(el("span.muted", {}, "No detector prediction yet."));
  else if (!prediction.boxes.length) box.append(el("span", {}, `Detector v${prediction.model_version} found nothing here.`));
  else {
    const n = prediction.boxes.length;
    box.append(
      el("span", {}, `Detector v${prediction.model_version} suggests `),
      el("strong", {}, `${n} box${n === 1 ? "" : "es"}`),
      el("span.muted", {}, " (dashed): A accepts them all; move, resize or re-class one to accept it, Delete drops it."),
    );
  }
}

// -- keys ---------------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (keyTaken(event, "a, summary, dialog")) return;
  if (!state.current) return;
  // a focused control keeps Enter, Space and Tab (keyboard users reach the buttons)
  const onControl = onActionButton(event.target);
  if (event.ctrlKey || event.metaKey || event.altKey) {
    editor.handleKey(event);
    return;
  }
  const key = event.key.toLowerCase();
  if (key === "enter") {
    if (onControl) return;
    event.preventDefault();
    submit();
  } else if (key === "s") {
    event.preventDefault();
    record("skip", { boxes: [] });
  } else if (key === "b") {
    event.preventDefault();
    back();
  } else if (classOfKey.has(key)) {
    event.preventDefault();
    editor.setClass(classOfKey.get(key));
  } else if (onControl && (key === " " || key === "tab")) {
    return;
  } else {
    editor.handleKey(event);
  }
});
document.addEventListener("keyup", (event) => editor.handleKeyUp(event));
window.addEventListener("blur", () => editor.handleKeyUp({ key: " " }));

$("submit").addEventListener("click", () => submit());
$("skip").addEventListener("click", () => record("skip", { boxes: [] }));
$("accept-all").addEventListener("click", () => editor.acceptAll());
$("undo").addEventListener("click", () => editor.undo());
$("redo").addEventListener("click", () => editor.redo());
$("zoom-in").addEventListener("click", () => {
  editor.zoom(1.25);
  renderBoxes();
});
$("zoom-out").addEventListener("click", () => {
  editor.zoom(0.8);
  renderBoxes();
});
$("zoom-fit").addEventListener("click", () => {
  editor.fit();
  renderBoxes();
});
buildClassControls();
start();
