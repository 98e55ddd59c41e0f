// What the two labeling screens (classes: label.js, boxes: label_boxes.js) share: the prefetched
// queue of leased items with its answer outbox and history, the status bar, the passing hint
// line, the class buttons and the keys dialog. A screen supplies only how it draws an item and
// what an answer holds.

import { api } from "./api.js";
import { Outbox } from "./outbox.js";
import { bootData, el, isTypingTarget, textColorFor, toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

const PREFETCH = 10; // items asked for beyond those already held
const LOW_WATER = 5; // refill when fewer than this many are ready
const HISTORY = 100; // answers one can go back through
const EMPTY_RECHECK_MS = 15_000;
const NO_COLOR = "#9aa3ae";

/** What both screens read from the page's boot data: the project, its API path, its classes and
 * their keys (classKeys, with the keys the screen keeps for itself), and the address of a picture. */
export function labelProject(reserved) {
  const boot = bootData();
  const project = boot.project;
  const base = `/api/projects/${project.id}`;
  const classes = project.classes;
  return {
    boot,
    project,
    base,
    classes,
    classById: new Map(classes.map((c) => [c.id, c])),
    ...classKeys(classes, reserved),
    imageUrl: (item) => `${base}/items/${item.item_id}/image`,
  };
}

/**
 * The shared part of one labeling screen: its queue, hint line and keys dialog. The next items
 * are prefetched, so that after a submit the next item is drawn at once, from memory, in the same
 * event handler: the server is never waited on in normal use. Answers go to an outbox
 * (outbox.js) that survives reloads and lost connections. The screen supplies:
 * - base: the project's API path; storageKey: the outbox's localStorage key; send(entry): the
 *   request that delivers one outbox entry; what: the name of an item in messages ("item");
 * - noun, saved: the status bar's name of an answer and its all-sent text (renderQueueStatus);
 * - things, answers: the plural names of items and answers in the waiting panel;
 * - query(): more query parameters for /next; imageUrl(item): a picture to preload, or null;
 * - open(item) and reopen(answer, item): the `current` object of a fresh item and of one whose
 *   answer is being changed (both carry `item` and `revisit`); show(current): called once it is
 *   current (to load it into an editor); draw(): draws the current item (the card is shown).
 * - hintMs: how long a hint stays; classes, keyOf (labelProject) and describeKey(cls): the class
 *   rows of the keys dialog.
 * It returns the state, record() and back() (answers), render(), start() (call it last), hint()
 * and keyTaken(event, ignoreInside) (keyTakenByPage with this screen's keys dialog).
 */
export function labelScreen(page) {
  const hint = hinter(page.hintMs);
  const state = {
    queue: [], // prefetched items, next first
    current: null, // what the screen's open() / reopen() made of the item on screen
    history: [], // [{item, answer}] newest last
    answered: new Set(), // item ids answered on this page (never shown again from the queue)
    done: new Map(), // item id -> answer kind ("skip" or the screen's), for the session counts
    exhausted: false,
    fetching: null,
    fetchError: null,
    retryTimer: null,
  };
  const outbox = new Outbox(page.storageKey, {
    send: page.send,
    onChange: () => renderStatus(),
    onRejected: (entry, error) =>
      toast(`The answer for ${page.what} ${entry.item_id} was refused: ${error.message}`, { kind: "error", timeout: 10000 }),
  });
  for (const id of outbox.itemIds()) state.answered.add(id); // answered before a reload

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
    const n = Math.min(500, heldIds().size + outbox.size + PREFETCH);
    state.fetching = api(`${page.base}/next`, { query: { n, ...(page.query ? page.query() : {}) } })
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

  const preloaded = new Map(); // item id -> Image, so the next picture is decoded before it is shown

  /** Fetch the pictures of queued items ahead of time (the browser caches them). */
  function preloadImages() {
    if (!page.imageUrl) return;
    const wanted = state.queue.slice(0, PREFETCH);
    const ids = new Set(wanted.map((item) => item.item_id));
    for (const id of preloaded.keys()) if (!ids.has(id)) preloaded.delete(id);
    for (const item of wanted) {
      if (preloaded.has(item.item_id)) continue;
      const img = new Image();
      img.decoding = "async";
      img.src = page.imageUrl(item);
      preloaded.set(item.item_id, img);
    }
  }

  /** Show the next item. `how` records whether it came from the prefetched queue or had to wait
   * for the server (document.body.dataset.lastSwap; the latency benchmark reads it). */
  function advance(how = "prefetch") {
    const next = state.queue.shift() || null;
    state.current = next ? page.open(next) : null;
    document.body.dataset.lastSwap = next ? how : "empty";
    if (state.current && page.show) page.show(state.current);
    render();
    preloadImages();
    if (state.queue.length < LOW_WATER) refill();
  }

  /** Answer the item on screen and show the next one. `answer` is what the history keeps and the
   * outbox sends; `extra` goes only to the outbox. */
  function record(kind, answer, extra = {}) {
    const current = state.current;
    if (!current) return;
    const itemId = current.item.item_id;
    outbox.add({ item_id: itemId, kind, ...answer, ...extra });
    state.history.push({ item: current.item, answer: { kind, ...answer } });
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
    state.current = page.reopen(previous.answer, previous.item);
    if (page.show) page.show(state.current);
    hint("");
    render();
  }

  function render() {
    if (state.current) {
      $("item-card").hidden = false;
      $("waiting").hidden = true;
      page.draw();
    } else {
      $("item-card").hidden = true;
      $("waiting").hidden = false;
      const offline = state.fetchError && state.fetchError.transient;
      const things = page.things;
      let text;
      if (state.fetching) text = `Loading the next ${things}…`;
      else if (offline) text = `The server cannot be reached. Your ${page.answers} are kept; new ${things} load when it is back.`;
      else if (state.fetchError) text = `The next ${things} cannot be loaded: ${state.fetchError.message}`;
      else text = `Nothing left to label right now. Import more ${things}, or check again later.`;
      $("waiting-text").textContent = text;
      $("check-again").hidden = Boolean(state.fetching);
    }
    renderStatus();
  }

  function renderStatus() {
    renderQueueStatus({ state, outbox, noun: page.noun, saved: page.saved });
  }

  /** Wire the buttons and events every screen has, draw the page and load the first items. */
  function start() {
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
    render();
    refill({ force: true });
    outbox.flush();
  }

  const keys = setUpKeysDialog();
  listClassKeys(page.classes, page.keyOf, page.describeKey);
  const keyTaken = (event, ignoreInside) => keyTakenByPage(event, keys, ignoreInside);

  return { state, outbox, record, back, render, start, hint, keyTaken };
}

/** The keys of the classes: a class's own shortcut, else 1–9 by position; a key the screen keeps
 * for itself (`reserved`), or one another class took first, leaves the class without one. */
function classKeys(classes, reserved) {
  const keyOf = new Map(); // class id -> key
  const classOfKey = new Map(); // key -> class id
  classes.forEach((cls, index) => {
    const key = (cls.shortcut || (index < 9 ? String(index + 1) : "")).toLowerCase();
    if (key && !reserved.has(key) && !classOfKey.has(key)) {
      keyOf.set(cls.id, key);
      classOfKey.set(key, cls.id);
    }
  });
  return { keyOf, classOfKey };
}

/** A class button (#class-buttons), its key shown, its colour as the left stripe. */
export function classButton(cls, key, onClick, ...more) {
  const button = el(
    "button.class-button",
    { type: "button", "aria-pressed": "false", dataset: { classId: cls.id } },
    key ? el("kbd", {}, key.toUpperCase()) : null,
    el("span.check", { "aria-hidden": "true" }),
    el("span.name", {}, cls.name),
    ...more,
  );
  button.style.borderLeftColor = cls.color || NO_COLOR;
  button.addEventListener("click", onClick);
  return button;
}

/** Show a class button pressed or not; a pressed one is filled with its class's colour. */
export function paintClassButton(button, on, color) {
  button.setAttribute("aria-pressed", on ? "true" : "false");
  if (on && color) {
    button.style.background = color;
    button.style.color = textColorFor(color);
    button.style.borderColor = color;
  } else {
    button.style.background = "";
    button.style.color = "";
    button.style.borderColor = "";
    button.style.borderLeftColor = color || NO_COLOR;
  }
}

/** Fill the top of the item card: why it was picked, its reference and, when an answer is being
 * changed, what it was (`was`, or null for a fresh item). */
export function renderItemHead(item, was, what) {
  $("reason").textContent = item.reason;
  $("item-ref").textContent = item.external_id ? `#${item.item_id} · ${item.external_id}` : `#${item.item_id}`;
  const revisit = $("revisit");
  if (was !== null) {
    revisit.textContent = `Changing your answer for this ${what} (it was: ${was}). Submit to replace it.`;
    revisit.hidden = false;
  } else revisit.hidden = true;
}

/** List the class keys at the top of #keys-list; `describe(cls)` says what the key does. */
function listClassKeys(classes, keyOf, describe) {
  const rows = classes
    .filter((c) => keyOf.has(c.id))
    .map((c) => el("tr", {}, el("td", {}, el("kbd", {}, keyOf.get(c.id).toUpperCase())), el("td", {}, describe(c))));
  $("keys-list").prepend(...rows);
}

/**
 * The keys every screen handles alike, in this order: with the keys dialog open only ? (which
 * closes it) counts; typing in a field, or a key inside `ignoreInside` (links, menus, dialogs),
 * is not a labeling key; ? opens the dialog. Returns true when the screen must not handle the key.
 */
function keyTakenByPage(event, keys, ignoreInside) {
  if (keys.dialog.open) {
    if (event.key === "?") {
      event.preventDefault();
      keys.dialog.close();
    }
    return true;
  }
  const target = event.target;
  if (isTypingTarget(target)) return true;
  if (target instanceof Element && target.closest(ignoreInside)) return true;
  if (event.key === "?") {
    event.preventDefault();
    keys.toggle();
    return true;
  }
  return false;
}

/** Whether a key goes to a focused action button (which does its own thing on Enter and Space);
 * a class button is only a picker, so Enter there still submits. */
export function onActionButton(target) {
  return target instanceof Element && Boolean(target.closest("button")) && !target.closest(".class-button");
}

/** Fill the status bar. `noun` names an answer ("label", "answer"); `saved` is the all-sent text. */
function renderQueueStatus({ state, outbox, noun, saved }) {
  let labeled = 0;
  let skipped = 0;
  for (const kind of state.done.values()) kind === "skip" ? skipped++ : labeled++;
  $("stat-labeled").textContent = String(labeled);
  $("stat-skipped").textContent = String(skipped);
  $("stat-pending").textContent = String(outbox.size);
  $("stat-queue").textContent = String(state.queue.length);
  const offline = outbox.state === "offline" || (state.fetchError && state.fetchError.offline);
  const n = outbox.size;
  const answers = `${n} ${noun}${n === 1 ? "" : "s"}`;
  let text;
  let cls;
  if (offline) {
    text = n ? `Offline: ${answers} kept, sent when the connection returns` : "Offline";
    cls = "offline";
  } else if (outbox.state === "retrying") {
    text = `Server not answering: ${answers} kept, retrying`;
    cls = "offline";
  } else if (n) {
    text = `Sending ${answers}…`;
    cls = "pending";
  } else {
    text = saved;
    cls = "ok";
  }
  const conn = $("conn");
  conn.textContent = text;
  conn.className = `conn ${cls}`;
  conn.dataset.state = cls;
  conn.dataset.pending = String(n);
}

/** A function that shows a message in #hint for `ms` milliseconds (an empty one clears it). */
function hinter(ms) {
  let timer = null;
  return (message) => {
    $("hint").textContent = message;
    clearTimeout(timer);
    if (message) timer = setTimeout(() => ($("hint").textContent = ""), ms);
  };
}

/** Wire #keys-dialog to #show-keys / #close-keys; returns the function that opens or closes it. */
function setUpKeysDialog() {
  const dialog = $("keys-dialog");
  let focusBefore = null;
  const toggle = () => {
    if (dialog.open) dialog.close();
    else {
      focusBefore = document.activeElement;
      dialog.showModal();
    }
  };
  dialog.addEventListener("close", () => {
    // give focus back where it was (the page itself when keys were used), never leave it on the
    // hidden Close button, where Enter would not reach the labeling keys
    const back = focusBefore;
    focusBefore = null;
    if (back instanceof HTMLElement && back !== document.body && document.contains(back)) back.focus();
    else if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
  });
  $("show-keys").addEventListener("click", toggle);
  $("close-keys").addEventListener("click", () => dialog.close());
  return { dialog, toggle };
}
