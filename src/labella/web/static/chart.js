// The learning curve as an inline SVG: one point per model version, held-out accuracy (and macro
// F1) against the number of labels it was trained on. No chart library.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Round numbers for an axis from 0 to at least `max`: about `count` steps of 1, 2 or 5 × 10^k. */
export function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let value = 0; value < max + step; value += step) {
    ticks.push(Math.round(value * 1e6) / 1e6);
    if (value >= max) break;
  }
  return ticks;
}

/**
 * series: [{name, color, points: [{x, y, label}]}]; points with y null are left out.
 * Returns the <svg> element.
 */
export function lineChart(series, { width = 640, height = 300, xTitle = "", yTitle = "", yMax = 1, title = "" } = {}) {
  const margin = { top: 14, right: 18, bottom: 44, left: 52 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const xTicks = niceTicks(Math.max(1, ...xs));
  const xMax = xTicks[xTicks.length - 1];
  const yTicks = [0, 0.2, 0.4, 0.6, 0.8, 1.0].map((t) => t * yMax);
  const sx = (x) => margin.left + (x / xMax) * innerW;
  const sy = (y) => margin.top + innerH - (y / yMax) * innerH;

  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": title,
  });
  if (title) root.append(svg("title", {}, title));

  for (const t of yTicks) {
    root.append(svg("line", { class: "grid", x1: margin.left, x2: margin.left + innerW, y1: sy(t), y2: sy(t) }));
    root.append(svg("text", { class: "tick", x: margin.left - 8, y: sy(t) + 4, "text-anchor": "end" }, `${Math.round(t * 100)}%`));
  }
  for (const t of xTicks) {
    root.append(svg("line", { class: "axis", x1: sx(t), x2: sx(t), y1: margin.top + innerH, y2: margin.top + innerH + 5 }));
    root.append(svg("text", { class: "tick", x: sx(t), y: margin.top + innerH + 18, "text-anchor": "middle" }, String(t)));
  }
  root.append(svg("line", { class: "axis", x1: margin.left, x2: margin.left + innerW, y1: margin.top + innerH, y2: margin.top + innerH }));
  root.append(svg("line", { class: "axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + innerH }));
  if (xTitle) {
    root.append(svg("text", { class: "axis-title", x: margin.left + innerW / 2, y: height - 6, "text-anchor": "middle" }, xTitle));
  }
  if (yTitle) {
    const y = margin.top + innerH / 2;
    root.append(svg("text", { class: "axis-title", x: 12, y, transform: `rotate(-90 12 ${y})`, "text-anchor": "middle" }, yTitle));
  }

  for (const s of series) {
    const points = s.points.filter((p) => p.y !== null && p.y !== undefined);
    if (!points.length) continue;
    const group = svg("g", { class: "series", "data-series": s.name });
    if (points.length > 1) {
      const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
      group.append(svg("path", { class: "line", d, stroke: s.color, ...(s.dashed ? { "stroke-dasharray": "6 4" } : {}) }));
    }
    for (const p of points) {
      const dot = svg("circle", { class: "point", cx: sx(p.x), cy: sy(p.y), r: 5, fill: s.color });
      dot.append(svg("title", {}, p.label || `${s.name}: ${p.y}`));
      group.append(dot);
    }
    root.append(group);
  }
  return root;
}
