// Small DOM helpers shared by the pages.

/** The page's boot data, rendered by the server into <script type="application/json" id="boot">. */
export function bootData() {
  const node = document.getElementById("boot");
  return node ? JSON.parse(node.textContent) : {};
}

/** el("tag.class", {attr: value, onclick: fn}, ...children) */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "text") {
      node.textContent = value;
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

const NUMBER = new Intl.NumberFormat("en");

export function fmtInt(n) {
  return NUMBER.format(n);
}

export function fmtPercent(p, digits = 0) {
  return p === null || p === undefined ? "–" : `${(p * 100).toFixed(digits)}%`;
}

export function fmtScore(x, digits = 3) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

/** Black or white, whichever reads better on the given background colour. */
export function textColorFor(hex) {
  const match = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  if (!match) return "#111111";
  const value = parseInt(match[1], 16);
  const channel = (shift) => {
    const c = ((value >> shift) & 255) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * channel(16) + 0.7152 * channel(8) + 0.0722 * channel(0);
  // contrast with black vs with white; pick the larger
  return (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) ? "#111111" : "#ffffff";
}

/** A coloured chip naming a class. */
export function classChip(cls, colorOf) {
  const color = colorOf ? colorOf(cls.id) : cls.color;
  const chip = el("span.chip", { text: cls.name });
  if (color) {
    chip.style.background = color;
    chip.style.color = textColorFor(color);
  }
  return chip;
}

/** Show a short message in the page's live region (read out by screen readers). */
export function toast(message, { kind = "info", timeout = 5000 } = {}) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const node = el(`div.toast.toast-${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  box.append(node);
  setTimeout(() => node.remove(), timeout);
}

/** Put an error (or nothing) into an inline error region. */
export function showError(node, error) {
  if (!node) return;
  if (!error) {
    node.textContent = "";
    node.hidden = true;
    return;
  }
  node.textContent = error.message || String(error);
  node.hidden = false;
}

export function isTypingTarget(target) {
  if (!target || !(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag !== "INPUT") return false;
  const type = (target.getAttribute("type") || "text").toLowerCase();
  return !["button", "checkbox", "radio", "submit", "reset", "color", "range", "file"].includes(type);
}
