// The labeling screen of an object-detection project: the image large in the box editor
// (box_editor.js), its boxes listed beside it. As on the classification screen (label.js), the
// next images are prefetched so that Enter shows the next one at once, and answers go through the
// outbox (outbox.js), which survives reloads and lost connections. Keys: 1–9 pick the class,
// Enter submits the boxes, S skips, B goes back to change the last answer, ? lists the keys; the
// editor's own keys (draw, delete, duplicate, undo, zoom) are in box_editor.js.

import { api } from "./api.js";
import { BoxEditor } from "./box_editor.js";
import { Outbox } from "./outbox.js";
import { hinter, renderQueueStatus, setUpKeysDialog } from "./label_page.js";
import { bootData, clear, el, isTypingTarget, textColorFor, toast } from "./ui.js";

const PREFETCH = 10;
const LOW_WATER = 5;
const HISTORY = 100;
const EMPTY_RECHECK_MS = 15_000;
// keys of this screen and of the editor, which a class's own shortcut letter may not take
const RESERVED_KEYS = new Set(["enter", "s", "b", "a", "y", "?", "escape", "delete", "backspace", "tab", " ", "+", "-", "=", "_", "0"]);

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const $ = (id) => document.getElementById(id);

const classes = project.classes;
const classById = new Map(classes.map((c) => [c.id, c]));
const keyOf = new Map();
const classOfKey = new Map();
classes.forEach((cls, index) => {
  const key = (cls.shortcut || (index < 9 ? String(index + 1) : "")).toLowerCase();
  if (key && !RESERVED_KEYS.has(key) && !classOfKey.has(key)) {
    keyOf.set(cls.id, key);
    classOfKey.set(key, cls.id);
  }
});

const state = {
  queue: [],
  current: null, // {item, revisit: previous answer or null, confirmDrop: bool}
  history: [], // [{item, answer}] newest last
  answered: new Set(),
  done: new Map(), // item id -> "boxes" | "skip"
  exhausted: false,
  fetching: null,
  fetchError: null,
  retryTimer: null,
};

const editor = new BoxEditor($("box-stage"), { classes, onChange: () => renderBoxes() });
window.labellaBoxEditor = editor; // for the browser tests, which aim at image pixels

// -- outbox -------------------------------------------------------------------------------------
const outbox = new Outbox(`labella.outbox.boxes.${project.id}`, {
  send: (entry) =>
    entry.kind === "skip"
      ? api(`${base}/items/${entry.item_id}/skip`, { method: "POST", body: { request_id: entry.request_id } })
      : api(`${base}/items/${entry.item_id}/boxes`, {
          method: "PUT",
          body: { boxes: entry.boxes, request_id: entry.request_id },
        }),
  onChange: () => renderStatus(),
  onRejected: (entry, error) =>
    toast(`The answer for image ${entry.item_id} was refused: ${error.message}`, { kind: "error", timeout: 10000 }),
});
for (const id of outbox.itemIds()) state.answered.add(id);

// -- the queue ----------------------------------------------------------------------------------
function heldIds() {
  const ids = new Set(state.queue.map((item) => item.item_id));
  if (state.current) ids.add(state.current.item.item_id);
  return ids;
}

function refill({ force = false } = {}) {
  if (state.fetching) return state.fetching;
  if (!force && (state.queue.length >= LOW_WATER || state.exhausted)) return Promise.resolve();
  const n = Math.min(500, heldIds().size + outbox.size + PREFETCH);
  state.fetching = api(`${base}/next`, { query: { n } })
    .then((batch) => {
      const have = heldIds();
      state.queue.push(...batch.items.filter((item) => !have.has(item.item_id) && !state.answered.has(item.item_id)));
      state.exhausted = batch.items.length < n;
      state.fetchError = null;
    })
    .catch((error) => {
      state.fetchError = error;
      if (error.transient) {
        clearTimeout(state.retryTimer);
        state.retryTimer = setTimeout(() => refill({ force: true }), 3000);
      }
    })
    .finally(() => {
      state.fetching = null;
      if (!state.current && state.queue.length) advance();
      else render();
    });
  return state.fetching;
}

const imageUrl = (item) => `${base}/items/${item.item_id}/image`;
const preloaded = new Map();

function preloadImages() {
  const wanted = state.queue.slice(0, PREFETCH);
  const ids = new Set(wanted.map((item) => item.item_id));
  for (const id of preloaded.keys()) if (!ids.has(id)) preloaded.delete(id);
  for (const item of wanted) {
    if (preloaded.has(item.item_id)) continue;
    const img = new Image();
    img.decoding = "async";
    img.src = imageUrl(item);
    preloaded.set(item.item_id, img);
  }
}

function advance() {
  const next = state.queue.shift() || null;
  state.current = next ? { item: next, revisit: null, confirmDrop: false } : null;
  if (next) show(next, { boxes: [], prelabels: (next.prediction && next.prediction.boxes) || [] });
  render();
  preloadImages();
  if (state.queue.length < LOW_WATER) refill();
}

/** Load an item into the editor; its size comes with the item (the image import recorded it). */
function show(item, { boxes, prelabels }) {
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
  record("boxes", editor.answer());
}

function record(kind, boxes) {
  const current = state.current;
  const itemId = current.item.item_id;
  outbox.add({ item_id: itemId, kind, boxes });
  state.history.push({ item: current.item, answer: { kind, boxes } });
  if (state.history.length > HISTORY) state.history.shift();
  state.answered.add(itemId);
  state.done.set(itemId, kind);
  hint("");
  advance();
}

function back() {
  const previous = state.history.pop();
  if (!previous) {
    hint("Nothing to go back to yet.");
    return;
  }
  if (state.current && !state.current.revisit) state.queue.unshift(state.current.item);
  state.current = { item: previous.item, revisit: previous.answer, confirmDrop: false };
  const boxes = previous.answer.kind === "boxes" ? previous.answer.boxes.map((b) => ({ ...b, class_id: b.class })) : [];
  show(previous.item, { boxes, prelabels: [] });
  hint("");
  render();
}

// -- rendering ----------------------------------------------------------------------------------
const classButtons = new Map();
function buildClassControls() {
  const group = clear($("class-buttons"));
  const select = clear($("box-class"));
  for (const cls of classes) {
    const key = keyOf.get(cls.id);
    const button = el(
      "button.class-button",
      { type: "button", "aria-pressed": "false", dataset: { classId: cls.id } },
      key ? el("kbd", {}, key.toUpperCase()) : null,
      el("span.check", { "aria-hidden": "true" }),
      el("span.name", {}, cls.name),
    );
    button.style.borderLeftColor = cls.color || "#9aa3ae";
    button.addEventListener("click", () => editor.setClass(cls.id));
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
  for (const [id, button] of classButtons) {
    const on = id === shownClass;
    const color = classById.get(id).color;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.style.background = on && color ? color : "";
    button.style.color = on && color ? textColorFor(color) : "";
    button.style.borderColor = on && color ? color : "";
    if (!on) button.style.borderLeftColor = color || "#9aa3ae";
  }
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
  $("reason").textContent = item.reason;
  $("item-ref").textContent = item.external_id ? `#${item.item_id} · ${item.external_id}` : `#${item.item_id}`;
  const meta = item.meta || {};
  $("item-caption").textContent = `${item.text ?? ""}${meta.width ? ` · ${meta.width}×${meta.height}` : ""} ·`;
  const note = $("revisit");
  if (revisit) {
    const was = revisit.kind === "skip" ? "skipped" : `${revisit.boxes.length} box${revisit.boxes.length === 1 ? "" : "es"}`;
    note.textContent = `Changing your answer for this image (it was: ${was}). Submit to replace it.`;
    note.hidden = false;
  } else note.hidden = true;
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

function render() {
  if (state.current) {
    $("item-card").hidden = false;
    $("waiting").hidden = true;
    renderItem();
    renderBoxes();
  } else {
    $("item-card").hidden = true;
    $("waiting").hidden = false;
    const offline = state.fetchError && state.fetchError.transient;
    let text;
    if (state.fetching) text = "Loading the next images…";
    else if (offline) text = "The server cannot be reached. Your boxes are kept; new images load when it is back.";
    else if (state.fetchError) text = `The next images cannot be loaded: ${state.fetchError.message}`;
    else text = "Nothing left to label right now. Import more images, or check again later.";
    $("waiting-text").textContent = text;
    $("check-again").hidden = Boolean(state.fetching);
  }
  renderStatus();
}

function renderStatus() {
  renderQueueStatus({ state, outbox, noun: "answer", saved: "All boxes saved" });
}

const hint = hinter(6000);

// -- keys ---------------------------------------------------------------------------------------
const { dialog: keysDialog, toggle: toggleKeys } = setUpKeysDialog();
$("keys-list").prepend(
  ...classes
    .filter((c) => keyOf.has(c.id))
    .map((c) => el("tr", {}, el("td", {}, el("kbd", {}, keyOf.get(c.id).toUpperCase())), el("td", {}, `Class ${c.name} (the selected box and new ones)`))),
);

document.addEventListener("keydown", (event) => {
  if (keysDialog.open) {
    if (event.key === "?") {
      event.preventDefault();
      keysDialog.close();
    }
    return;
  }
  const target = event.target;
  if (isTypingTarget(target)) return;
  if (target instanceof Element && target.closest("a, summary, dialog")) return;
  if (event.key === "?") {
    event.preventDefault();
    toggleKeys();
    return;
  }
  if (!state.current) return;
  // a focused control keeps Enter, Space and Tab (keyboard users reach the buttons); a class
  // button is only a picker, so Enter there still submits
  const onControl = target instanceof Element && Boolean(target.closest("button")) && !target.closest(".class-button");
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
    record("skip", []);
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
$("skip").addEventListener("click", () => state.current && record("skip", []));
$("back").addEventListener("click", () => back());
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
$("check-again").addEventListener("click", () => {
  state.exhausted = false;
  refill({ force: true });
  render();
});
window.addEventListener("online", () => {
  if (!state.current || state.fetchError) refill({ force: true });
});
setInterval(() => {
  if (!state.current && !state.fetching) refill({ force: true });
}, EMPTY_RECHECK_MS);

buildClassControls();
render();
refill({ force: true });
outbox.flush();
