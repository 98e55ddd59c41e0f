// The bounding-box editor: one image on an SVG stage, its boxes drawn over it in image pixels.
// Drag on the picture to draw a box; drag a box to move it, its handles to resize it; the wheel
// (or +/-) zooms at the cursor and space-drag or the middle button pans, for small objects. The
// detector's boxes come in as prelabels (dashed) until accepted or edited; every change can be
// undone inside the image. The page (label_boxes.js) owns the queue and the keys that leave the
// image; this module owns the picture and the keys that edit it (handleKey).

const SVG = "http://www.w3.org/2000/svg";
const HANDLES = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];
const MIN_DRAW_PX = 4; // a smaller drag on screen is a click, not a box
const HANDLE_PX = 9;
const UNDO_LIMIT = 200;
const ZOOM_STEP = 1.25;
const MAX_ZOOM = 40; // times the fitted scale
const FALLBACK_COLORS = ["#1d4ed8", "#b42318", "#146c2e", "#8a4b00", "#6d28d9", "#0e7490", "#be185d", "#4d7c0f"];

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));
const round2 = (value) => Math.round(value * 100) / 100;

export class BoxEditor {
  /**
   * stage: an empty element the editor fills; classes: [{id, name, color}] in key order;
   * onChange(editor): called after every change of the boxes, the selection or the view.
   */
  constructor(stage, { classes, onChange = () => {} }) {
    this.stage = stage;
    this.classes = classes;
    this.classById = new Map(classes.map((c, i) => [c.id, { ...c, color: c.color || FALLBACK_COLORS[i % FALLBACK_COLORS.length] }]));
    this.onChange = onChange;
    this.activeClass = classes.length ? classes[0].id : null;
    this.boxes = [];
    this.selectedId = null;
    this.nextId = 1;
    this.width = 0;
    this.height = 0;
    this.view = { scale: 1, tx: 0, ty: 0, fit: 1 };
    this.undoStack = [];
    this.redoStack = [];
    this.drag = null;
    this.spaceDown = false;
    this.build();
  }

  // -- the stage ---------------------------------------------------------------------------------
  build() {
    this.svg = svgEl("svg", { class: "box-svg", role: "img", "aria-label": "Image with its boxes" });
    this.world = svgEl("g");
    this.image = svgEl("image", { x: 0, y: 0, preserveAspectRatio: "none" });
    this.boxLayer = svgEl("g", { class: "box-layer" });
    this.handleLayer = svgEl("g", { class: "handle-layer" });
    this.draft = svgEl("rect", { class: "box-draft", visibility: "hidden" });
    this.world.append(this.image, this.boxLayer, this.draft, this.handleLayer);
    this.svg.append(this.world);
    this.stage.append(this.svg);
    this.image.addEventListener("load", () => {
      this.stage.dataset.ready = "1";
      this.onChange(this);
    });
    this.image.addEventListener("error", () => {
      this.stage.dataset.ready = "error";
      this.onChange(this);
    });
    this.svg.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.svg.addEventListener("pointermove", (event) => this.pointerMove(event));
    this.svg.addEventListener("pointerup", (event) => this.pointerUp(event));
    this.svg.addEventListener("pointercancel", () => this.cancelDrag());
    this.svg.addEventListener("wheel", (event) => this.wheel(event), { passive: false });
    this.svg.addEventListener("auxclick", (event) => event.preventDefault());
    new ResizeObserver(() => this.fit()).observe(this.stage);
  }

  /** Show an image (`width` x `height` pixels) with its boxes and the detector's prelabels. */
  load({ url, width, height, boxes = [], prelabels = [] }) {
    this.width = width;
    this.height = height;
    this.boxes = [];
    this.nextId = 1;
    for (const b of boxes) this.boxes.push(this.makeBox(b, false));
    for (const b of prelabels) if (this.classById.has(b.class_id)) this.boxes.push(this.makeBox(b, true));
    this.selectedId = null;
    this.undoStack = [];
    this.redoStack = [];
    this.drag = null;
    this.stage.dataset.ready = "0";
    this.image.setAttribute("width", String(width));
    this.image.setAttribute("height", String(height));
    // small pictures (thumbnail-sized data sets) are scaled up with crisp pixels, not blurred
    this.image.style.imageRendering = Math.max(width, height) < 256 ? "pixelated" : "";
    this.image.setAttribute("href", url);
    this.fit();
  }

  makeBox(b, prelabel) {
    return {
      id: this.nextId++,
      classId: b.class_id,
      x0: b.x_min,
      y0: b.y_min,
      x1: b.x_max,
      y1: b.y_max,
      prelabel,
      score: prelabel ? b.score ?? null : null,
    };
  }

  /** The answer: every box that is not a pending prelabel, in image pixels. */
  answer() {
    return this.boxes
      .filter((b) => !b.prelabel)
      .map((b) => ({ class: b.classId, x_min: round2(b.x0), y_min: round2(b.y0), x_max: round2(b.x1), y_max: round2(b.y1) }));
  }

  get pendingPrelabels() {
    return this.boxes.filter((b) => b.prelabel).length;
  }

  get selected() {
    return this.boxes.find((b) => b.id === this.selectedId) || null;
  }

  // -- view: fit, zoom, pan ----------------------------------------------------------------------
  fit() {
    const rect = this.svg.getBoundingClientRect();
    if (!this.width || !rect.width || !rect.height) return;
    const fit = Math.min(rect.width / this.width, rect.height / this.height);
    this.view = {
      scale: fit,
      fit,
      tx: (rect.width - this.width * fit) / 2,
      ty: (rect.height - this.height * fit) / 2,
    };
    this.render();
  }

  /** Zoom by `factor` keeping the stage point (sx, sy) (default: the centre) where it is. */
  zoom(factor, sx = null, sy = null) {
    const rect = this.svg.getBoundingClientRect();
    const cx = sx ?? rect.width / 2;
    const cy = sy ?? rect.height / 2;
    const { scale, tx, ty, fit } = this.view;
    const next = clamp(scale * factor, fit * 0.5, fit * MAX_ZOOM);
    const k = next / scale;
    this.view = { fit, scale: next, tx: cx - (cx - tx) * k, ty: cy - (cy - ty) * k };
    this.render();
  }

  pan(dx, dy) {
    this.view = { ...this.view, tx: this.view.tx + dx, ty: this.view.ty + dy };
    this.render();
  }

  /** Image pixels under a client (page) point. */
  toImage(clientX, clientY) {
    const rect = this.svg.getBoundingClientRect();
    return {
      x: (clientX - rect.left - this.view.tx) / this.view.scale,
      y: (clientY - rect.top - this.view.ty) / this.view.scale,
    };
  }

  /** The client (page) point of an image pixel position (the browser tests aim with it). */
  toClient(x, y) {
    const rect = this.svg.getBoundingClientRect();
    return { x: rect.left + this.view.tx + x * this.view.scale, y: rect.top + this.view.ty + y * this.view.scale };
  }

  /** Pan so that a box out of view comes into the middle of the stage. */
  reveal(box) {
    const rect = this.svg.getBoundingClientRect();
    const { scale, tx, ty } = this.view;
    const left = tx + box.x0 * scale;
    const top = ty + box.y0 * scale;
    const right = tx + box.x1 * scale;
    const bottom = ty + box.y1 * scale;
    if (left >= 0 && top >= 0 && right <= rect.width && bottom <= rect.height) return;
    const cx = ((box.x0 + box.x1) / 2) * scale;
    const cy = ((box.y0 + box.y1) / 2) * scale;
    this.view = { ...this.view, tx: rect.width / 2 - cx, ty: rect.height / 2 - cy };
  }

  // -- edits (each one undoable) -----------------------------------------------------------------
  snapshot() {
    return { boxes: this.boxes.map((b) => ({ ...b })), selectedId: this.selectedId };
  }

  restore(snap) {
    this.boxes = snap.boxes.map((b) => ({ ...b }));
    this.selectedId = snap.selectedId;
  }

  /** Record the state before a change. */
  remember(before = this.snapshot()) {
    this.undoStack.push(before);
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    this.redoStack = [];
  }

  undo() {
    const previous = this.undoStack.pop();
    if (!previous) return false;
    this.redoStack.push(this.snapshot());
    this.restore(previous);
    this.changed();
    return true;
  }

  redo() {
    const next = this.redoStack.pop();
    if (!next) return false;
    this.undoStack.push(this.snapshot());
    this.restore(next);
    this.changed();
    return true;
  }

  select(id) {
    this.selectedId = id;
    const box = this.selected;
    if (box) this.reveal(box);
    this.changed();
  }

  /** Tab / Shift+Tab: the next (previous) box in list order. */
  cycle(step) {
    if (!this.boxes.length) return false;
    const index = this.boxes.findIndex((b) => b.id === this.selectedId);
    const next = index < 0 ? (step > 0 ? 0 : this.boxes.length - 1) : (index + step + this.boxes.length) % this.boxes.length;
    this.select(this.boxes[next].id);
    return true;
  }

  /** A class key: the selected box takes the class; either way new boxes are drawn with it. */
  setClass(classId) {
    this.activeClass = classId;
    const box = this.selected;
    if (box && (box.classId !== classId || box.prelabel)) {
      this.remember();
      box.classId = classId;
      box.prelabel = false; // correcting a prelabel accepts it
    }
    this.changed();
  }

  deleteSelected() {
    const index = this.boxes.findIndex((b) => b.id === this.selectedId);
    if (index < 0) return false;
    this.remember();
    this.boxes.splice(index, 1);
    // the next box is selected, so that Delete can clear several in a row
    const next = this.boxes[Math.min(index, this.boxes.length - 1)];
    this.selectedId = next ? next.id : null;
    this.changed();
    return true;
  }

  duplicateSelected() {
    const box = this.selected;
    if (!box) return false;
    this.remember();
    const w = box.x1 - box.x0;
    const h = box.y1 - box.y0;
    const offset = 12 / this.view.scale; // 12 screen pixels, whatever the zoom
    const x0 = clamp(box.x0 + offset, 0, this.width - w);
    const y0 = clamp(box.y0 + offset, 0, this.height - h);
    const copy = { ...box, id: this.nextId++, x0, y0, x1: x0 + w, y1: y0 + h, prelabel: false, score: null };
    this.boxes.splice(this.boxes.indexOf(box) + 1, 0, copy);
    this.selectedId = copy.id;
    this.changed();
    return true;
  }

  acceptAll() {
    if (!this.pendingPrelabels) return false;
    this.remember();
    for (const b of this.boxes) b.prelabel = false;
    this.changed();
    return true;
  }

  acceptSelected() {
    const box = this.selected;
    if (!box || !box.prelabel) return false;
    this.remember();
    box.prelabel = false;
    this.changed();
    return true;
  }

  /** Arrow keys: move the selected box by `dx`, `dy` image pixels, inside the image. */
  nudge(dx, dy) {
    const box = this.selected;
    if (!box) return false;
    this.remember();
    this.moveBox(box, { ...box }, dx, dy);
    box.prelabel = false;
    this.changed();
    return true;
  }

  moveBox(box, from, dx, dy) {
    const w = from.x1 - from.x0;
    const h = from.y1 - from.y0;
    box.x0 = clamp(from.x0 + dx, 0, this.width - w);
    box.y0 = clamp(from.y0 + dy, 0, this.height - h);
    box.x1 = box.x0 + w;
    box.y1 = box.y0 + h;
  }

  changed() {
    this.render();
    this.onChange(this);
  }

  // -- the mouse ---------------------------------------------------------------------------------
  pointerDown(event) {
    if (!this.width) return;
    const pan = event.button === 1 || (event.button === 0 && this.spaceDown);
    if (!pan && event.button !== 0) return;
    event.preventDefault();
    this.stage.focus({ preventScroll: true });
    this.svg.setPointerCapture(event.pointerId);
    if (pan) {
      this.drag = { mode: "pan", lastX: event.clientX, lastY: event.clientY };
      this.stage.dataset.panning = "1";
      return;
    }
    const point = this.toImage(event.clientX, event.clientY);
    const target = event.target;
    const handle = target.dataset ? target.dataset.handle : undefined;
    const boxId = target.dataset && target.dataset.boxId ? Number(target.dataset.boxId) : null;
    // Shift draws even over a box (a small object inside a big one)
    if (handle && this.selected && !event.shiftKey) {
      this.drag = { mode: "resize", handle, box: this.selected, from: { ...this.selected }, before: this.snapshot() };
    } else if (boxId !== null && !event.shiftKey) {
      const box = this.boxes.find((b) => b.id === boxId);
      const before = this.snapshot();
      this.selectedId = boxId;
      this.drag = { mode: "move", box, from: { ...box }, start: point, before };
      this.changed();
    } else {
      const start = { x: clamp(point.x, 0, this.width), y: clamp(point.y, 0, this.height) };
      this.drag = { mode: "draw", start, end: start, startClient: { x: event.clientX, y: event.clientY } };
    }
  }

  pointerMove(event) {
    const drag = this.drag;
    if (!drag) return;
    event.preventDefault();
    if (drag.mode === "pan") {
      this.pan(event.clientX - drag.lastX, event.clientY - drag.lastY);
      drag.lastX = event.clientX;
      drag.lastY = event.clientY;
      return;
    }
    const point = this.toImage(event.clientX, event.clientY);
    if (drag.mode === "draw") {
      drag.end = { x: clamp(point.x, 0, this.width), y: clamp(point.y, 0, this.height) };
      this.renderDraft();
    } else if (drag.mode === "move") {
      this.moveBox(drag.box, drag.from, point.x - drag.start.x, point.y - drag.start.y);
      drag.moved = true;
      this.render();
    } else if (drag.mode === "resize") {
      this.resizeBox(drag.box, drag.from, drag.handle, point);
      drag.moved = true;
      this.render();
    }
  }

  pointerUp(event) {
    const drag = this.drag;
    this.drag = null;
    delete this.stage.dataset.panning;
    if (this.svg.hasPointerCapture(event.pointerId)) this.svg.releasePointerCapture(event.pointerId);
    if (!drag) return;
    if (drag.mode === "draw") {
      this.draft.setAttribute("visibility", "hidden");
      const wide = Math.abs(event.clientX - drag.startClient.x) >= MIN_DRAW_PX;
      const tall = Math.abs(event.clientY - drag.startClient.y) >= MIN_DRAW_PX;
      const { start, end } = drag;
      if (wide && tall && this.activeClass !== null && end.x !== start.x && end.y !== start.y) {
        this.remember();
        const box = {
          id: this.nextId++,
          classId: this.activeClass,
          x0: Math.min(start.x, end.x),
          y0: Math.min(start.y, end.y),
          x1: Math.max(start.x, end.x),
          y1: Math.max(start.y, end.y),
          prelabel: false,
          score: null,
        };
        this.boxes.push(box);
        this.selectedId = box.id;
      } else {
        this.selectedId = null; // a click on the picture clears the selection
      }
      this.changed();
    } else if ((drag.mode === "move" || drag.mode === "resize") && drag.moved) {
      const unchanged = ["x0", "y0", "x1", "y1"].every((k) => drag.box[k] === drag.from[k]);
      if (!unchanged) {
        this.remember(drag.before);
        drag.box.prelabel = false; // correcting a prelabel accepts it
      }
      this.changed();
    }
  }

  cancelDrag() {
    const drag = this.drag;
    this.drag = null;
    delete this.stage.dataset.panning;
    this.draft.setAttribute("visibility", "hidden");
    if (drag && (drag.mode === "move" || drag.mode === "resize")) Object.assign(drag.box, drag.from);
    this.render();
  }

  resizeBox(box, from, handle, point) {
    const x = clamp(point.x, 0, this.width);
    const y = clamp(point.y, 0, this.height);
    let { x0, y0, x1, y1 } = from;
    if (handle.includes("w")) x0 = x;
    if (handle.includes("e")) x1 = x;
    if (handle.includes("n")) y0 = y;
    if (handle.includes("s")) y1 = y;
    // dragging an edge across the opposite one flips the box instead of inverting it
    const minSize = 1 / Math.max(1, this.view.scale / this.view.fit);
    box.x0 = Math.min(x0, x1);
    box.x1 = Math.max(x0, x1, box.x0 + minSize);
    box.y0 = Math.min(y0, y1);
    box.y1 = Math.max(y0, y1, box.y0 + minSize);
  }

  wheel(event) {
    if (!this.width) return;
    event.preventDefault();
    const rect = this.svg.getBoundingClientRect();
    const factor = Math.exp(-clamp(event.deltaY, -300, 300) / 400);
    this.zoom(factor, event.clientX - rect.left, event.clientY - rect.top);
    this.onChange(this);
  }

  // -- the keyboard ------------------------------------------------------------------------------
  /** Handle a key that edits the image; returns true when it did (the caller stops there). */
  handleKey(event) {
    const key = event.key;
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !event.altKey) {
      const lower = key.toLowerCase();
      if (lower === "z" || lower === "y") {
        event.preventDefault();
        if (lower === "y" || event.shiftKey) this.redo();
        else this.undo();
        return true;
      }
      if (lower === "d") {
        event.preventDefault(); // the browser's bookmark shortcut
        this.duplicateSelected();
        return true;
      }
      return false;
    }
    if (event.altKey) return false;
    if (key === " ") {
      event.preventDefault();
      this.spaceDown = true;
      this.stage.dataset.space = "1";
      return true;
    }
    if (key === "Tab") {
      if (!this.boxes.length) return false;
      event.preventDefault();
      return this.cycle(event.shiftKey ? -1 : 1);
    }
    if (key === "Delete" || key === "Backspace") {
      event.preventDefault();
      this.deleteSelected();
      return true;
    }
    if (key === "Escape") {
      if (this.drag) this.cancelDrag();
      else if (this.selectedId !== null) this.select(null);
      else return false;
      return true;
    }
    if (key === "+" || key === "=") {
      this.zoom(ZOOM_STEP);
      this.onChange(this);
      return true;
    }
    if (key === "-" || key === "_") {
      this.zoom(1 / ZOOM_STEP);
      this.onChange(this);
      return true;
    }
    if (key === "0") {
      this.fit();
      this.onChange(this);
      return true;
    }
    if (key === "a" || key === "A") {
      this.acceptAll();
      return true;
    }
    if (key === "y" || key === "Y") {
      this.acceptSelected();
      return true;
    }
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (key in arrows && this.selected) {
      event.preventDefault();
      const step = event.shiftKey ? 10 : 1;
      this.nudge(arrows[key][0] * step, arrows[key][1] * step);
      return true;
    }
    return false;
  }

  handleKeyUp(event) {
    if (event.key === " ") {
      this.spaceDown = false;
      delete this.stage.dataset.space;
    }
  }

  // -- drawing -----------------------------------------------------------------------------------
  render() {
    const { scale, tx, ty } = this.view;
    this.world.setAttribute("transform", `translate(${tx} ${ty}) scale(${scale})`);
    this.boxLayer.replaceChildren();
    this.handleLayer.replaceChildren();
    const fontSize = 12 / scale;
    for (const box of this.boxes) {
      const cls = this.classById.get(box.classId);
      const color = cls ? cls.color : "#525a66";
      const selected = box.id === this.selectedId;
      const rect = svgEl("rect", {
        x: box.x0,
        y: box.y0,
        width: box.x1 - box.x0,
        height: box.y1 - box.y0,
        class: `box${box.prelabel ? " prelabel" : ""}${selected ? " selected" : ""}`,
        stroke: color,
        fill: color,
        "vector-effect": "non-scaling-stroke",
      });
      rect.dataset.boxId = String(box.id);
      const tag = svgEl("text", { x: box.x0, y: box.y0 - 3 / scale, class: "box-tag", "font-size": fontSize, fill: color });
      tag.textContent = `${cls ? cls.name : `#${box.classId}`}${box.prelabel && box.score !== null ? ` ${Math.round(box.score * 100)}%` : ""}`;
      this.boxLayer.append(rect, tag);
      if (selected) this.drawHandles(box, scale);
    }
    if (this.drag && this.drag.mode === "draw") this.renderDraft();
    this.stage.dataset.boxes = String(this.boxes.filter((b) => !b.prelabel).length);
    this.stage.dataset.prelabels = String(this.pendingPrelabels);
    this.stage.dataset.selected = this.selectedId === null ? "" : String(this.selectedId);
    this.stage.dataset.zoom = (scale / (this.view.fit || 1)).toFixed(3);
    this.stage.dataset.undo = String(this.undoStack.length);
    this.stage.dataset.redo = String(this.redoStack.length);
  }

  drawHandles(box, scale) {
    const size = HANDLE_PX / scale;
    const cx = (box.x0 + box.x1) / 2;
    const cy = (box.y0 + box.y1) / 2;
    for (const handle of HANDLES) {
      const hx = handle.includes("w") ? box.x0 : handle.includes("e") ? box.x1 : cx;
      const hy = handle.includes("n") ? box.y0 : handle.includes("s") ? box.y1 : cy;
      const node = svgEl("rect", {
        x: hx - size / 2,
        y: hy - size / 2,
        width: size,
        height: size,
        class: `handle handle-${handle}`,
        "vector-effect": "non-scaling-stroke",
      });
      node.dataset.handle = handle;
      this.handleLayer.append(node);
    }
  }

  renderDraft() {
    const { start, end } = this.drag;
    const cls = this.classById.get(this.activeClass);
    this.draft.setAttribute("x", String(Math.min(start.x, end.x)));
    this.draft.setAttribute("y", String(Math.min(start.y, end.y)));
    this.draft.setAttribute("width", String(Math.abs(end.x - start.x)));
    this.draft.setAttribute("height", String(Math.abs(end.y - start.y)));
    this.draft.setAttribute("stroke", cls ? cls.color : "#1d4ed8");
    this.draft.setAttribute("vector-effect", "non-scaling-stroke");
    this.draft.setAttribute("visibility", "visible");
  }
}
