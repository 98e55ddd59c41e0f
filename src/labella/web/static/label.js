// The labeling screen. The next items are prefetched into a local queue, so that after a submit
// the next item is drawn at once, from memory, in the same event handler: the server is never
// waited on in normal use. Answers go to an outbox (outbox.js) that survives reloads and lost
// connections. Keys: 1–9 pick (or toggle) a class, Enter submits, S skips, Z/Backspace goes back
// to change the last answer, ? lists the keys.

import { api } from "./api.js";
import { Outbox } from "./outbox.js";
import { hinter, renderQueueStatus, setUpKeysDialog } from "./label_page.js";
import { bootData, clear, el, fmtPercent, isTypingTarget, textColorFor, toast } from "./ui.js";

const PREFETCH = 10; // items asked for beyond those already held
const LOW_WATER = 5; // refill when fewer than this many are ready
const HISTORY = 100; // answers one can go back through
const EMPTY_RECHECK_MS = 15_000;
const RESERVED_KEYS = new Set(["enter", "s", "z", "backspace", "?", "escape"]);

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const $ = (id) => document.getElementById(id);

const classes = project.classes;
const classById = new Map(classes.map((c) => [c.id, c]));
const keyOf = new Map(); // class id -> key
const classOfKey = new Map(); // key -> class id
classes.forEach((cls, index) => {
  const key = (cls.shortcut || (index < 9 ? String(index + 1) : "")).toLowerCase();
  if (key && !RESERVED_KEYS.has(key) && !classOfKey.has(key)) {
    keyOf.set(cls.id, key);
    classOfKey.set(key, cls.id);
  }
});

const state = {
  queue: [], // prefetched items, next first
  current: null, // {item, selected: Set<class id>, revisit: previous answer or null}
  history: [], // [{item, answer}] newest last
  answered: new Set(), // item ids answered on this page (never shown again from the queue)
  done: new Map(), // item id -> "label" | "skip", for the session counts
  exhausted: false,
  fetching: null,
  fetchError: null,
  retryTimer: null,
};

// -- annotator ----------------------------------------------------------------------------------
// The server records the signed-in user as the annotator; the name is shown, not chosen.
function annotator() {
  return boot.username || "";
}

// -- outbox -------------------------------------------------------------------------------------
const outbox = new Outbox(`labella.outbox.${project.id}`, {
  send: (entry) =>
    entry.kind === "skip"
      ? api(`${base}/items/${entry.item_id}/skip`, {
          method: "POST",
          body: { annotator: entry.annotator, request_id: entry.request_id },
        })
      : api(`${base}/items/${entry.item_id}/label`, {
          method: "POST",
          body: { classes: entry.classes, annotator: entry.annotator, request_id: entry.request_id },
        }),
  onChange: () => renderStatus(),
  onRejected: (entry, error) =>
    toast(`The answer for item ${entry.item_id} was refused: ${error.message}`, { kind: "error", timeout: 10000 }),
});
for (const id of outbox.itemIds()) state.answered.add(id); // answered before a reload

// -- the queue ----------------------------------------------------------------------------------
function heldIds() {
  const ids = new Set(state.queue.map((item) => item.item_id));
  if (state.current) ids.add(state.current.item.item_id);
  return ids;
}

/** Ask the server for more items. The server hands our own leased items back first, so we ask
 * for as many as we hold plus PREFETCH, and keep the new ones. */
function refill({ force = false } = {}) {
  if (state.fetching) return state.fetching;
  if (!force && (state.queue.length >= LOW_WATER || state.exhausted)) return Promise.resolve();
  const held = heldIds();
  const n = Math.min(500, held.size + outbox.size + PREFETCH);
  state.fetching = api(`${base}/next`, { query: { n, annotator: annotator() } })
    .then((batch) => {
      const have = heldIds();
      const fresh = batch.items.filter((item) => !have.has(item.item_id) && !state.answered.has(item.item_id));
      state.queue.push(...fresh);
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
      if (!state.current && state.queue.length) advance("wait");
      else render();
    });
  return state.fetching;
}

function prelabel(item) {
  const predicted = item.prediction ? item.prediction.classes.map((c) => c.id).filter((id) => classById.has(id)) : [];
  return new Set(project.multi_label ? predicted : predicted.slice(0, 1));
}

/** Show the next item. `how` records whether it came from the prefetched queue or had to wait
 * for the server (document.body.dataset.lastSwap; the latency benchmark reads it). */
function advance(how = "prefetch") {
  const next = state.queue.shift() || null;
  state.current = next ? { item: next, selected: prelabel(next), revisit: null } : null;
  document.body.dataset.lastSwap = next ? how : "empty";
  render();
  preloadImages();
  if (state.queue.length < LOW_WATER) refill();
}

// -- answers ------------------------------------------------------------------------------------
function answer(kind) {
  const current = state.current;
  if (!current) return;
  const classIds = kind === "label" ? classes.map((c) => c.id).filter((id) => current.selected.has(id)) : [];
  if (kind === "label" && !project.multi_label && classIds.length !== 1) {
    hint("Pick a class first: press its key, then Enter.");
    return;
  }
  const itemId = current.item.item_id;
  outbox.add({ item_id: itemId, kind, classes: classIds, annotator: annotator() });
  state.history.push({ item: current.item, answer: { kind, classes: classIds } });
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
  // the item on screen goes back to the front of the queue (it is still leased to us); an item
  // that was itself being revisited keeps the answer it already has
  if (state.current && !state.current.revisit) state.queue.unshift(state.current.item);
  const selected = new Set(previous.answer.kind === "label" ? previous.answer.classes : []);
  state.current = { item: previous.item, selected, revisit: previous.answer };
  hint("");
  render();
}

function toggle(classId) {
  const current = state.current;
  if (!current) return;
  if (project.multi_label) {
    if (current.selected.has(classId)) current.selected.delete(classId);
    else current.selected.add(classId);
  } else {
    current.selected = new Set([classId]);
  }
  renderSelection();
}

// -- rendering ----------------------------------------------------------------------------------
const buttons = new Map(); // class id -> button
function buildClassButtons() {
  const box = clear($("class-buttons"));
  for (const cls of classes) {
    const key = keyOf.get(cls.id);
    const swatch = cls.color || "#9aa3ae";
    const button = el(
      "button.class-button",
      { type: "button", "aria-pressed": "false", dataset: { classId: cls.id } },
      key ? el("kbd", {}, key.toUpperCase()) : null,
      el("span.check", { "aria-hidden": "true" }),
      el("span.name", {}, cls.name),
      el("span.prob"),
    );
    button.style.borderLeftColor = swatch;
    button.addEventListener("click", () => toggle(cls.id));
    buttons.set(cls.id, button);
    box.append(button);
  }
}

const imageUrl = (item) => `${base}/items/${item.item_id}/image`;
const preloaded = new Map(); // item id -> Image, so the next picture is decoded before it is shown

/** Fetch the pictures of queued items ahead of time (the browser caches them). */
function preloadImages() {
  if (project.kind !== "image_classification") return;
  const wanted = new Set(state.queue.slice(0, PREFETCH).map((item) => item.item_id));
  for (const id of preloaded.keys()) if (!wanted.has(id)) preloaded.delete(id);
  for (const item of state.queue.slice(0, PREFETCH)) {
    if (preloaded.has(item.item_id)) continue;
    const img = new Image();
    img.decoding = "async";
    img.src = imageUrl(item);
    preloaded.set(item.item_id, img);
  }
}

const renderers = {
  // Other kinds (boxes) plug in here with the same contract: draw `item` into `view`.
  text_classification(view, item) {
    const text = $("item-text");
    text.textContent = item.text ?? "";
    text.dataset.itemId = String(item.item_id);
    text.scrollTop = 0;
  },
  image_classification(view, item) {
    $("item-text").hidden = true;
    $("item-figure").hidden = false;
    const img = $("item-image");
    img.classList.remove("tiny");
    img.dataset.itemId = String(item.item_id);
    img.alt = item.text ? `Image ${item.text}` : `Image of item ${item.item_id}`;
    img.src = imageUrl(item);
    const size = item.meta && item.meta.width ? ` · ${item.meta.width}×${item.meta.height}` : "";
    $("item-caption").textContent = `${item.text ?? ""}${size}`;
  },
};
// Small pictures (thumbnail-sized data sets) are scaled up with crisp pixels, not blurred.
$("item-image").addEventListener("load", (event) => {
  const img = event.target;
  img.classList.toggle("tiny", img.naturalWidth > 0 && img.naturalWidth < 128);
});
$("item-image").addEventListener("error", () => hint("The image could not be loaded."));

function renderItem() {
  const current = state.current;
  const draw = renderers[project.kind];
  if (draw) draw($("item-view"), current.item);
  else $("item-text").textContent = `Items of kind ${project.kind} cannot be shown on this screen yet.`;
  $("reason").textContent = current.item.reason;
  $("item-ref").textContent = current.item.external_id
    ? `#${current.item.item_id} · ${current.item.external_id}`
    : `#${current.item.item_id}`;
  const revisit = $("revisit");
  if (current.revisit) {
    const was =
      current.revisit.kind === "skip"
        ? "skipped"
        : current.revisit.classes.map((id) => classById.get(id)?.name ?? `#${id}`).join(", ") || "none of the classes";
    revisit.textContent = `Changing your answer for this item (it was: ${was}). Submit to replace it.`;
    revisit.hidden = false;
  } else revisit.hidden = true;
  renderPrediction(current.item.prediction);
}

function renderPrediction(prediction) {
  const box = clear($("prediction"));
  for (const button of buttons.values()) button.querySelector(".prob").textContent = "";
  if (!prediction) {
    box.append(el("span.muted", {}, "No model prediction yet."));
    return;
  }
  const names = prediction.classes.map((c) => c.name).join(", ") || "none";
  box.append(
    el("span", {}, `Model v${prediction.model_version} suggests `),
    el("strong", {}, names),
    el("span", {}, ` (confidence ${fmtPercent(prediction.confidence)})`),
    state.current.revisit ? null : el("span.muted", {}, " — preselected: Enter accepts it."),
  );
  for (const p of prediction.probabilities) {
    const button = buttons.get(p.class_id);
    if (button) button.querySelector(".prob").textContent = fmtPercent(p.probability);
  }
}

function renderSelection() {
  const selected = state.current ? state.current.selected : new Set();
  for (const [id, button] of buttons) {
    const on = selected.has(id);
    button.setAttribute("aria-pressed", on ? "true" : "false");
    const color = classById.get(id).color;
    if (on && color) {
      button.style.background = color;
      button.style.color = textColorFor(color);
      button.style.borderColor = color;
    } else {
      button.style.background = "";
      button.style.color = "";
      button.style.borderColor = "";
      button.style.borderLeftColor = color || "#9aa3ae";
    }
  }
}

function render() {
  const card = $("item-card");
  const waiting = $("waiting");
  if (state.current) {
    card.hidden = false;
    waiting.hidden = true;
    renderItem();
    renderSelection();
  } else {
    card.hidden = true;
    waiting.hidden = false;
    const offline = state.fetchError && state.fetchError.transient;
    let text;
    if (state.fetching) text = "Loading the next items…";
    else if (offline) text = "The server cannot be reached. Your labels are kept; new items load when it is back.";
    else if (state.fetchError) text = `The next items cannot be loaded: ${state.fetchError.message}`;
    else text = "Nothing left to label right now. Import more items, or check again later.";
    $("waiting-text").textContent = text;
    $("check-again").hidden = Boolean(state.fetching);
  }
  renderStatus();
}

function renderStatus() {
  renderQueueStatus({ state, outbox, noun: "label", saved: "All labels saved" });
}

const hint = hinter(4000);

// -- keys ---------------------------------------------------------------------------------------
const { dialog: keysDialog, toggle: toggleKeys } = setUpKeysDialog();
{
  const list = $("keys-list");
  const rows = classes
    .filter((c) => keyOf.has(c.id))
    .map((c) =>
      el("tr", {}, el("td", {}, el("kbd", {}, keyOf.get(c.id).toUpperCase())), el("td", {}, `${project.multi_label ? "Toggle" : "Pick"} ${c.name}`)),
    );
  list.prepend(...rows);
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (keysDialog.open) {
    if (event.key === "?") {
      event.preventDefault();
      keysDialog.close();
    }
    return;
  }
  const target = event.target;
  if (isTypingTarget(target)) return;
  if (target instanceof Element && target.closest("a, select, summary, dialog")) return;
  const key = event.key.toLowerCase();
  // a focused action button does its own thing on Enter/Space; a focused class button submits on Enter
  const inActions = target instanceof Element && target.closest("button") && !target.closest(".class-button");
  if (key === "?") {
    event.preventDefault();
    toggleKeys();
  } else if (key === "enter") {
    if (inActions) return;
    event.preventDefault();
    answer("label");
  } else if (key === "s") {
    event.preventDefault();
    answer("skip");
  } else if (key === "z" || key === "backspace") {
    event.preventDefault();
    back();
  } else if (classOfKey.has(key)) {
    event.preventDefault();
    toggle(classOfKey.get(key));
  }
});

$("submit").addEventListener("click", () => answer("label"));
$("skip").addEventListener("click", () => answer("skip"));
$("back").addEventListener("click", () => back());
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

buildClassButtons();
render();
refill({ force: true });
outbox.flush();
