// The review screen: one queue for disagreements between annotators, labels the model doubts
// (suspect labels) and samples of everyone's work. The label in question is preselected, so
// Enter approves it; picking another class (1–9) and Enter changes it. J/K move through the list.

import { api } from "./api.js";
import { bootData, classChip, clear, el, fmtPercent, fmtTime, isTypingTarget, showError, toast } from "./ui.js";

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const $ = (id) => document.getElementById(id);
const RESERVED_KEYS = new Set(["enter", "a", "j", "k", "arrowdown", "arrowup"]);
const KIND_NAMES = {
  disagreement: "Disagreement",
  suspect_label: "Suspect label",
  work_sample: "Work sample",
};
const DECIDED = { consensus: "everyone agreed", majority: "the majority", reviewer: "a reviewer" };

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
  kind: "",
  status: "open",
  annotator: "",
  entries: [],
  index: 0,
  selected: new Set(),
  busy: false,
};

// -- loading ------------------------------------------------------------------------------------
async function load() {
  showError($("review-error"), null);
  try {
    const data = await api(`${base}/review`, {
      query: { kind: state.kind, status: state.status, annotator: state.annotator, limit: 200 },
    });
    state.entries = data.flags;
    state.index = Math.min(state.index, Math.max(0, state.entries.length - 1));
    renderCounts(data.counts);
    renderList();
    select(state.index);
  } catch (error) {
    showError($("review-error"), error);
  }
}

function renderCounts(counts) {
  let total = 0;
  for (const badge of document.querySelectorAll("#kind-tabs [data-count]")) {
    const kind = badge.dataset.count;
    if (kind) {
      badge.textContent = String(counts[kind] ?? 0);
      total += counts[kind] ?? 0;
    }
  }
  document.querySelector('#kind-tabs [data-count=""]').textContent = String(total);
}

// -- the list -----------------------------------------------------------------------------------
function renderList() {
  const list = clear($("review-list"));
  $("review-empty").hidden = state.entries.length > 0;
  state.entries.forEach((entry, i) => {
    const item = el(
      "li.review-entry",
      { dataset: { flagId: entry.id }, "aria-current": i === state.index ? "true" : false },
      el(
        "button.row-open",
        { type: "button", onclick: () => select(i) },
        el("span.badge", {}, KIND_NAMES[entry.kind] || entry.kind),
        " ",
        el("span.clip", {}, entry.text ?? `item #${entry.item_id}`),
      ),
    );
    list.append(item);
  });
}

function select(i) {
  if (!state.entries.length) {
    $("review-card").hidden = true;
    return;
  }
  state.index = Math.max(0, Math.min(i, state.entries.length - 1));
  for (const [n, node] of [...$("review-list").children].entries()) {
    if (n === state.index) node.setAttribute("aria-current", "true");
    else node.removeAttribute("aria-current");
  }
  $("review-list").children[state.index]?.scrollIntoView({ block: "nearest" });
  const entry = state.entries[state.index];
  state.selected = new Set(entry.label_id === null ? [] : entry.label_classes.map((c) => c.id));
  renderCard(entry);
}

// -- the entry ----------------------------------------------------------------------------------
function renderCard(entry) {
  $("review-card").hidden = false;
  $("entry-title").textContent = `${KIND_NAMES[entry.kind] || entry.kind} · item #${entry.item_id}${
    entry.external_id ? ` · ${entry.external_id}` : ""
  }`;
  $("entry-text").textContent = entry.text ?? "";
  const facts = clear($("entry-facts"));
  const fact = (term, ...value) => facts.append(el("dt", {}, term), el("dd", {}, ...value));
  if (entry.label_id === null) {
    fact("Label", el("strong", {}, "none yet: the answers have no majority"));
  } else {
    const chips = entry.label_skipped ? ["skipped"] : entry.label_classes.map((c) => classChip(c, colorOf));
    const who = entry.annotator ? `by ${entry.annotator}` : `decided by ${DECIDED[entry.decided_by] || "the answers"}`;
    fact("Label in question", ...spaced(chips), el("span.muted", {}, ` ${who}`));
  }
  if (entry.suggested_class) fact("The model believes", classChip(entry.suggested_class, colorOf));
  if (entry.kind === "suspect_label") fact("Suspicion", fmtPercent(entry.score));
  if (entry.kind === "disagreement") fact("Split", `${fmtPercent(entry.score)} of the answers differ from the most common one`);
  if (entry.status !== "open") {
    fact("Decision", `${entry.status === "kept" ? "approved" : "changed"} by ${entry.resolved_by} · ${fmtTime(entry.resolved_at)}`);
  }
  renderAnswers(entry);
  $("entry-decision").hidden = entry.status !== "open";
  renderClassButtons();
  hint("");
}

function spaced(nodes) {
  return nodes.flatMap((node, i) => (i ? [" ", node] : [node]));
}

function colorOf(id) {
  return classById.get(id)?.color;
}

function renderAnswers(entry) {
  const box = clear($("entry-answers"));
  if (!entry.answers.length) return;
  const rows = entry.answers.map((a) =>
    el(
      "tr",
      {},
      el("td", {}, a.annotator),
      el("td", {}, ...(a.skipped ? ["skipped"] : spaced(a.classes.map((c) => classChip(c, colorOf))))),
      el("td.muted", {}, fmtTime(a.created_at)),
    ),
  );
  box.append(
    el("h3.small", {}, "Answers"),
    el(
      "table.table.answers",
      {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Annotator"), el("th", { scope: "col" }, "Answer"), el("th", { scope: "col" }, "When"))),
      el("tbody", {}, rows),
    ),
  );
}

function renderClassButtons() {
  const box = clear($("review-classes"));
  for (const cls of classes) {
    const key = keyOf.get(cls.id);
    const on = state.selected.has(cls.id);
    const button = el(
      "button.class-button",
      { type: "button", "aria-pressed": on ? "true" : "false", dataset: { classId: cls.id } },
      key ? el("kbd", {}, key.toUpperCase()) : null,
      el("span.name", {}, cls.name),
    );
    button.style.borderLeftColor = cls.color || "#9aa3ae";
    if (on && cls.color) button.style.outline = `3px solid ${cls.color}`;
    button.addEventListener("click", () => toggle(cls.id));
    box.append(button);
  }
}

function toggle(classId) {
  if (project.multi_label) {
    if (state.selected.has(classId)) state.selected.delete(classId);
    else state.selected.add(classId);
  } else {
    state.selected = new Set([classId]);
  }
  renderClassButtons();
}

function hint(text) {
  $("entry-hint").textContent = text;
}

// -- decisions ----------------------------------------------------------------------------------
function sameAsLabel(entry) {
  if (entry.label_id === null || entry.label_skipped) return false;
  const ids = new Set(entry.label_classes.map((c) => c.id));
  return ids.size === state.selected.size && [...ids].every((id) => state.selected.has(id));
}

function decide(action) {
  const entry = state.entries[state.index];
  if (!entry || entry.status !== "open" || state.busy) return;
  if (action === "submit") action = sameAsLabel(entry) ? "approve" : "change";
  if (action === "approve" && entry.label_id === null) {
    hint("The answers have no majority: pick the right class, then Enter.");
    return;
  }
  if (action === "change" && !project.multi_label && state.selected.size !== 1) {
    hint(
      entry.label_id === null
        ? "The answers have no majority: pick the right class, then Enter."
        : "Pick the right class first: press its key, then Enter.",
    );
    return;
  }
  const body = action === "approve" ? { action: "approve" } : { action: "change", classes: [...state.selected] };
  state.busy = true;
  api(`${base}/review/${entry.id}`, { method: "POST", body })
    .then((resolved) => {
      toast(`${resolved.status === "kept" ? "Approved" : "Changed"} item #${resolved.item_id}.`, { kind: "ok", timeout: 2500 });
      state.entries.splice(state.index, 1);
      renderList();
      select(state.index);
      adjustCount(resolved.kind);
    })
    .catch((error) => hint(error.message))
    .finally(() => {
      state.busy = false;
    });
}

function adjustCount(kind) {
  for (const selector of [`#kind-tabs [data-count="${kind}"]`, '#kind-tabs [data-count=""]']) {
    const badge = document.querySelector(selector);
    if (badge) badge.textContent = String(Math.max(0, Number(badge.textContent || 0) - 1));
  }
}

// -- controls -----------------------------------------------------------------------------------
for (const tab of document.querySelectorAll("#kind-tabs .tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#kind-tabs .tab")) other.setAttribute("aria-selected", String(other === tab));
    state.kind = tab.dataset.kind;
    state.index = 0;
    load();
  });
}
$("review-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.status = $("f-status").value;
  state.annotator = $("f-annotator").value.trim();
  state.index = 0;
  load();
});
$("approve").addEventListener("click", () => decide("approve"));
$("change").addEventListener("click", () => decide("change"));

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (isTypingTarget(target)) return;
  if (target instanceof Element && target.closest("a, select, summary, dialog")) return;
  const key = event.key.toLowerCase();
  const onButton = target instanceof Element && target.closest("button") && !target.closest(".class-button");
  if (key === "j" || key === "arrowdown") {
    event.preventDefault();
    select(state.index + 1);
  } else if (key === "k" || key === "arrowup") {
    event.preventDefault();
    select(state.index - 1);
  } else if (key === "a") {
    event.preventDefault();
    decide("approve");
  } else if (key === "enter") {
    if (onButton) return;
    event.preventDefault();
    decide("submit");
  } else if (classOfKey.has(key)) {
    event.preventDefault();
    toggle(classOfKey.get(key));
  }
});

load();
