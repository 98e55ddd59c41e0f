// The projects page: the "new project" form (classes with colours and keys, the query strategy
// and its settings). The list itself is rendered by the server.

import { api } from "./api.js";
import { bootData, el, showError } from "./ui.js";
import { findStrategy, readParams, renderParams } from "./strategy_form.js";

const boot = bootData();
const form = document.getElementById("create-form");
const rows = document.getElementById("class-rows");
const errorBox = document.getElementById("create-error");
const strategySelect = document.getElementById("p-strategy");
const paramsBox = document.getElementById("strategy-params");
const summary = document.getElementById("strategy-summary");
const palette = boot.palette || ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

function renumber() {
  [...rows.children].forEach((row, index) => {
    const n = index + 1;
    row.querySelector(".class-name").setAttribute("aria-label", `Class ${n} name`);
    row.querySelector(".class-color").setAttribute("aria-label", `Class ${n} colour`);
    const key = row.querySelector(".class-key");
    key.setAttribute("aria-label", `Class ${n} key`);
    key.placeholder = n <= 9 ? String(n) : "";
    row.querySelector(".remove-class").setAttribute("aria-label", `Remove class ${n}`);
  });
}

function addClassRow(name = "") {
  const index = rows.children.length;
  const row = el(
    "li.class-row",
    {},
    el("input.class-name", { name: "class_name", value: name, maxlength: 200, autocomplete: "off", placeholder: "class name" }),
    el("input.class-color", { type: "color", name: "class_color", value: palette[index % palette.length] }),
    el("input.class-key", { name: "class_key", maxlength: 1, size: 2, autocomplete: "off" }),
    el("button.button.secondary.small.remove-class", {
      type: "button",
      onclick: () => {
        if (rows.children.length > 1) {
          row.remove();
          renumber();
        }
      },
    }, "Remove"),
  );
  rows.append(row);
  renumber();
  return row;
}

function showStrategy() {
  const strategy = findStrategy(boot.strategies || [], strategySelect.value);
  summary.textContent = strategy.summary || "";
  renderParams(paramsBox, strategy);
}

function readClasses() {
  return [...rows.children]
    .map((row) => ({
      name: row.querySelector(".class-name").value.trim(),
      color: row.querySelector(".class-color").value,
      shortcut: row.querySelector(".class-key").value.trim(),
    }))
    .filter((cls) => cls.name);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(errorBox, null);
  const data = new FormData(form);
  let body;
  try {
    const strategy = findStrategy(boot.strategies || [], strategySelect.value);
    body = {
      name: String(data.get("name") || "").trim(),
      description: String(data.get("description") || ""),
      kind: data.get("kind"),
      multi_label: data.get("multi_label") === "true",
      classes: readClasses(),
      strategy: strategy.name,
      strategy_params: readParams(paramsBox, strategy),
      retrain_every: Number(data.get("retrain_every") || 50),
    };
    // blank: the server's default for the project's kind (it is off for images and multi-label)
    const finetuneAt = String(data.get("auto_finetune_at") || "").trim();
    if (finetuneAt !== "") body.auto_finetune_at = Number(finetuneAt);
    // disabled (multi-label, detection): left out, so the server keeps it off
    if (!selfTrainBox.disabled) body.self_training = selfTrainBox.checked;
  } catch (error) {
    showError(errorBox, error);
    return;
  }
  if (!body.name) {
    showError(errorBox, new Error("Give the project a name."));
    form.elements.name.focus();
    return;
  }
  const submit = form.querySelector("[type=submit]");
  submit.disabled = true;
  try {
    const project = await api("/api/projects", { method: "POST", body });
    window.location.assign(`/projects/${project.id}#import`);
  } catch (error) {
    showError(errorBox, error);
    submit.disabled = false;
  }
});

document.getElementById("add-class").addEventListener("click", () => {
  addClassRow().querySelector(".class-name").focus();
});
// The product's default strategy depends on the label mode (services.projects.default_strategy):
// follow it when the mode changes, until the user picks a strategy of their own.
let strategyChosen = false;
strategySelect.addEventListener("change", () => {
  strategyChosen = true;
  showStrategy();
});
for (const radio of form.querySelectorAll('input[name="multi_label"]')) {
  radio.addEventListener("change", () => {
    showFinetuneDefault();
    if (strategyChosen || !boot.default_strategies) return;
    strategySelect.value = boot.default_strategies[radio.value === "true" ? "multi" : "single"];
    showStrategy();
  });
}

// What a blank "fine-tune at" gives (services.finetuning.default_auto_finetune_at): the server's
// value for single-label text projects, off (0) for every other kind.
const finetuneInput = document.getElementById("p-finetune");
const serverFinetuneAt = finetuneInput.placeholder;
function showFinetuneDefault() {
  const multi = form.querySelector('input[name="multi_label"]:checked')?.value === "true";
  const text = form.elements.kind.value === "text_classification";
  finetuneInput.placeholder = text && !multi ? serverFinetuneAt : "0";
  showSelfTraining(multi);
}

// Self-training is for single-label classification only (services.projects): ticked by default
// for text, unticked for images, unticked and disabled for multi-label and object detection. A
// change of kind or label mode resets the box to that default.
const selfTrainBox = document.getElementById("p-selftrain");
function showSelfTraining(multi) {
  const kind = form.elements.kind.value;
  const mode = `${kind}/${multi}`;
  if (mode === selfTrainBox.dataset.mode) return;
  selfTrainBox.dataset.mode = mode;
  selfTrainBox.disabled = multi || kind === "object_detection";
  selfTrainBox.checked = !multi && kind === "text_classification";
}
form.elements.kind.addEventListener("change", showFinetuneDefault);

addClassRow();
addClassRow();
showStrategy();
showFinetuneDefault();
