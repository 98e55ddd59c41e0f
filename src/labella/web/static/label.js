// The labeling screen of a classification project (text or images). The prefetched queue, the
// outbox and going back are label_page.js's, shared with the box screen (label_boxes.js). Keys:
// 1–9 pick (or toggle) a class, Enter submits, S skips, Z/Backspace goes back to change the last
// answer, ? lists the keys.

import { api } from "./api.js";
import { classButton, labelProject, labelScreen, onActionButton, paintClassButton, renderItemHead } from "./label_page.js";
import { clear, el, fmtPercent } from "./ui.js";

const RESERVED_KEYS = new Set(["enter", "s", "z", "backspace", "?", "escape"]);
const { boot, project, base, classes, classById, keyOf, classOfKey, imageUrl } = labelProject(RESERVED_KEYS);
const $ = (id) => document.getElementById(id);

// The server records the signed-in user as the annotator; the name is shown, not chosen.
function annotator() {
  return boot.username || "";
}

function prelabel(item) {
  const predicted = item.prediction ? item.prediction.classes.map((c) => c.id).filter((id) => classById.has(id)) : [];
  return new Set(project.multi_label ? predicted : predicted.slice(0, 1));
}

// state.current is {item, selected: Set<class id>, revisit: previous answer or null}
const { state, record, back, start, hint, keyTaken } = labelScreen({
  base,
  storageKey: `labella.outbox.${project.id}`,
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
  what: "item",
  noun: "label",
  saved: "All labels saved",
  things: "items",
  answers: "labels",
  query: () => ({ annotator: annotator() }),
  imageUrl: project.kind === "image_classification" ? imageUrl : null,
  open: (item) => ({ item, selected: prelabel(item), revisit: null }),
  reopen: (answer, item) => ({ item, selected: new Set(answer.kind === "label" ? answer.classes : []), revisit: answer }),
  draw: () => {
    renderItem();
    renderSelection();
  },
  hintMs: 4000,
  classes,
  keyOf,
  describeKey: (c) => `${project.multi_label ? "Toggle" : "Pick"} ${c.name}`,
});

// -- answers ------------------------------------------------------------------------------------
function answer(kind) {
  const current = state.current;
  if (!current) return;
  const classIds = kind === "label" ? classes.map((c) => c.id).filter((id) => current.selected.has(id)) : [];
  if (kind === "label" && !project.multi_label && classIds.length !== 1) {
    hint("Pick a class first: press its key, then Enter.");
    return;
  }
  record(kind, { classes: classIds }, { annotator: annotator() });
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
    const button = classButton(cls, keyOf.get(cls.id), () => toggle(cls.id), el("span.prob"));
    buttons.set(cls.id, button);
    box.append(button);
  }
}

const renderers = {
  // Other kinds plug in here with the same contract: draw `item` into `view`.
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
  const revisit = current.revisit;
  let was = null;
  if (revisit) {
    was =
      revisit.kind === "skip"
        ? "skipped"
        : revisit.classes.map((id) => classById.get(id)?.name ?? `#${id}`).join(", ") || "none of the classes";
  }
  renderItemHead(current.item, was, "item");
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
  for (const [id, button] of buttons) paintClassButton(button, selected.has(id), classById.get(id).color);
}

// -- keys ---------------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (keyTaken(event, "a, select, summary, dialog")) return;
  const key = event.key.toLowerCase();
  if (key === "enter") {
    if (onActionButton(event.target)) return;
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

buildClassButtons();
start();
