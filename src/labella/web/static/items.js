// The data browser: the items table, paged on the server by key (after_id) and filtered by
// status, label, label source and confidence; each row opens the item with its label history,
// where its label can be changed.

import { api } from "./api.js";
import { bootData, classChip, clear, el, fmtInt, fmtPercent, fmtTime, showError } from "./ui.js";

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const isImages = project.kind === "image_classification";
const colorOf = (id) => (project.classes.find((c) => c.id === id) || {}).color;
const $ = (id) => document.getElementById(id);
const form = $("filters");
const FILTERS = ["status", "label", "source", "min_confidence", "max_confidence", "limit"];

// pages are keyed by the id they start after; `starts` is the stack of those keys
let starts = [null];
let page = null;
let loading = null;

function filtersFromForm() {
  const query = {};
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) query[name] = value;
  }
  return query;
}

function fillForm(params) {
  for (const name of FILTERS) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
}

async function load() {
  const after = starts[starts.length - 1];
  const query = { ...filtersFromForm(), after_id: after ?? "" };
  const url = new URLSearchParams(filtersFromForm());
  history.replaceState(null, "", `${location.pathname}${url.toString() ? `?${url}` : ""}`);
  showError($("filters-error"), null);
  const started = performance.now();
  const request = api(`${base}/items`, { query });
  loading = request;
  try {
    const result = await request;
    if (loading !== request) return; // a newer request superseded this one
    page = result;
    renderTable(result, performance.now() - started);
  } catch (error) {
    if (loading === request) showError($("filters-error"), error);
  }
}

function statusBadge(status) {
  const cls = status === "labeled" ? "human" : status === "auto" ? "model" : status === "skipped" ? "skipped" : "";
  return el(`span.badge${cls ? `.${cls}` : ""}`, {}, status);
}

function renderTable(result, ms) {
  const tbody = clear($("items-table").querySelector("tbody"));
  for (const row of result.items) {
    const open = el("button.row-open", { type: "button", "aria-label": `Open item ${row.id}` }, `#${row.id}`);
    open.addEventListener("click", () => openItem(row.id));
    const tr = el(
      "tr",
      { dataset: { itemId: row.id } },
      el("td.num", {}, open),
      isImages
        ? el(
            "td.text-cell",
            {},
            el("img.thumb", { src: `${base}/items/${row.id}/thumbnail`, alt: `Thumbnail of ${row.text ?? `item ${row.id}`}`, loading: "lazy", decoding: "async", width: 64, height: 64 }),
            el("div.muted.small", {}, row.text ?? ""),
          )
        : el("td.text-cell", {}, el("div.clip", {}, row.text ?? "(no text)"), row.external_id ? el("div.muted.small", {}, row.external_id) : null),
      el("td", {}, statusBadge(row.status)),
      el("td", {}, ...(row.classes.length ? row.classes.map((c) => classChip(c, colorOf)) : ["–"])),
      el("td", {}, row.source ? el(`span.badge.${row.source}`, {}, row.annotator && row.source === "human" ? `human · ${row.annotator}` : row.source) : "–"),
      el("td.num", {}, row.confidence === null ? "–" : fmtPercent(row.confidence, 1)),
      el("td", {}, ...(row.predicted.length ? row.predicted.map((c) => classChip(c, colorOf)) : ["–"])),
    );
    tr.addEventListener("click", (event) => {
      if (!(event.target instanceof Element && event.target.closest("button"))) openItem(row.id);
    });
    tbody.append(tr);
  }
  const first = (starts.length - 1) * Number(result.limit);
  const total = result.total_exact ? fmtInt(result.total) : `${fmtInt(result.total)}+`;
  const word = result.total === 1 && result.total_exact ? "item" : "items";
  $("summary").textContent = result.items.length
    ? `Items ${fmtInt(first + 1)}–${fmtInt(first + result.items.length)} of ${total} ${word} (${Math.round(ms)} ms)`
    : `No items match (${total === "0" ? "none" : total}).`;
  $("page-info").textContent = `Page ${starts.length}`;
  $("prev-page").disabled = starts.length <= 1;
  $("next-page").disabled = result.next_after_id === null;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  starts = [null];
  load();
});
form.addEventListener("change", () => {
  starts = [null];
  load();
});
form.addEventListener("reset", () => {
  setTimeout(() => {
    starts = [null];
    load();
  });
});
$("next-page").addEventListener("click", () => {
  if (page && page.next_after_id !== null) {
    starts.push(page.next_after_id);
    load();
  }
});
$("prev-page").addEventListener("click", () => {
  if (starts.length > 1) {
    starts.pop();
    load();
  }
});

// -- one item, with its history -----------------------------------------------------------------
const dialog = $("item-dialog");
$("close-item").addEventListener("click", () => dialog.close());
let opener = null;
dialog.addEventListener("close", () => {
  if (opener && document.contains(opener)) opener.focus();
});

async function openItem(itemId) {
  opener = document.activeElement;
  let data;
  try {
    data = await api(`${base}/items/${itemId}`);
  } catch (error) {
    showError($("filters-error"), error);
    return;
  }
  renderItem(data);
  if (!dialog.open) dialog.showModal();
}

function renderItem(data) {
  const item = data.item;
  $("item-title").textContent = `Item #${item.id}${item.external_id ? ` · ${item.external_id}` : ""}`;
  const body = clear($("item-body"));
  if (isImages) {
    body.append(el("img.full-image", { src: `${base}/items/${item.id}/image`, alt: `Image ${item.text ?? item.id}` }));
    body.append(el("p.small.muted", {}, item.text ?? ""));
  } else body.append(el("div.full-text", {}, item.text ?? "(no text)"));
  body.append(
    el(
      "p.small",
      {},
      "Status: ",
      statusBadge(item.status),
      item.priority_reason ? ` · in the queue because ${item.priority_reason}` : "",
    ),
  );
  if (data.prediction) {
    const p = data.prediction;
    body.append(
      el(
        "p.small",
        {},
        `Model v${p.model_version} predicts `,
        ...p.classes.map((c) => classChip(c, colorOf)),
        ` (${fmtPercent(p.confidence, 1)}): `,
        p.probabilities.map((q) => `${q.name} ${fmtPercent(q.probability, 1)}`).join(", "),
      ),
    );
  }
  body.append(el("h3", {}, "Label history"));
  if (!data.labels.length) body.append(el("p.muted", {}, "Never labeled."));
  else {
    const rows = data.labels.map((label) =>
      el(
        "tr",
        {},
        el("td", {}, fmtTime(label.created_at)),
        el("td", {}, label.source === "model" ? `model v${label.model_version ?? "?"}` : label.annotator || "human"),
        el("td", {}, label.skipped ? "skipped" : label.classes.length ? label.classes.map((c) => classChip(c, colorOf)) : "none"),
        el("td.num", {}, label.confidence === null ? "–" : fmtPercent(label.confidence, 1)),
        el("td", {}, label.is_current ? "current" : `replaced ${fmtTime(label.superseded_at)}`),
      ),
    );
    body.append(
      el(
        "table.table.history",
        {},
        el("thead", {}, el("tr", {}, ...["When", "By", "Label", "Confidence", ""].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows),
      ),
    );
  }
  body.append(relabelForm(data));
}

function relabelForm(data) {
  const current = new Set((data.current_label && !data.current_label.skipped ? data.current_label.classes : []).map((c) => c.id));
  const inputType = project.multi_label ? "checkbox" : "radio";
  const fieldset = el("fieldset.field", {}, el("legend", {}, "Change the label"));
  for (const cls of project.classes) {
    const id = `relabel-${cls.id}`;
    fieldset.append(
      el("label.inline", { for: id }, el("input", { id, type: inputType, name: "relabel", value: cls.id, checked: current.has(cls.id) }), cls.name),
    );
  }
  const error = el("p.error", { role: "alert", hidden: true });
  const formNode = el("form.form", {}, fieldset, el("button", { type: "submit" }, "Save label"), error);
  formNode.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = [...formNode.querySelectorAll("input[name=relabel]:checked")].map((i) => Number(i.value));
    try {
      // the server records the signed-in user as the annotator
      await api(`${base}/items/${data.item.id}/label`, { method: "POST", body: { classes: chosen } });
      renderItem(await api(`${base}/items/${data.item.id}`));
      load();
    } catch (err) {
      showError(error, err);
    }
  });
  return formNode;
}

fillForm(new URLSearchParams(location.search));
load();
