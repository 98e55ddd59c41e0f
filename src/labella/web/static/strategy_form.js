// The settings of a query strategy as form fields, built from the server's strategy catalogue
// (each strategy's keyword hyperparameters and their defaults).

import { clear, el } from "./ui.js";

export function findStrategy(catalogue, name) {
  return catalogue.find((s) => s.name === name) || { name, params: [], summary: "" };
}

/** Render one field per setting of `strategy` into `container`, filled with `values`. */
export function renderParams(container, strategy, values = {}) {
  clear(container);
  for (const param of strategy.params) {
    const id = `param-${strategy.name}-${param.name}`;
    const value = param.name in values ? values[param.name] : param.default;
    let input;
    if (typeof param.default === "boolean") {
      input = el("input", { id, type: "checkbox", name: param.name, checked: Boolean(value) });
    } else if (typeof param.default === "number") {
      input = el("input", {
        id,
        name: param.name,
        type: "number",
        step: Number.isInteger(param.default) ? "1" : "any",
        value: String(value),
        inputmode: "decimal",
      });
    } else {
      input = el("input", { id, name: param.name, value: String(value ?? ""), autocomplete: "off" });
    }
    input.dataset.paramType = typeof param.default;
    container.append(
      el(
        "div.field",
        {},
        el("label", { for: id }, `${param.name} `, el("span.muted", {}, `(default ${param.default})`)),
        input,
      ),
    );
  }
}

/** The settings that differ from their defaults, typed like the defaults. */
export function readParams(container, strategy) {
  const params = {};
  for (const param of strategy.params) {
    const input = container.querySelector(`[name="${CSS.escape(param.name)}"]`);
    if (!input) continue;
    let value;
    if (input.dataset.paramType === "boolean") value = input.checked;
    else if (input.dataset.paramType === "number") {
      if (input.value.trim() === "") continue;
      value = Number(input.value);
      if (!Number.isFinite(value)) throw new Error(`${param.name} must be a number`);
    } else value = input.value;
    if (value !== param.default) params[param.name] = value;
  }
  return params;
}
