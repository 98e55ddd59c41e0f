// Labels not yet acknowledged by the server. Every answer goes into this outbox first and is kept
// in localStorage until the server has it, so a lost connection, a closed tab or a crash loses
// nothing: what is left is sent in order, retried with exponential backoff and at once when the
// browser says it is back online.

const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;

export class Outbox {
  /**
   * key: the localStorage key; send(entry): a promise that rejects with an ApiError;
   * onChange(outbox): called after every change of state; onRejected(entry, error): the server
   * refused an entry for good (a 4xx), which is then dropped.
   */
  constructor(key, { send, onChange = () => {}, onRejected = () => {} }) {
    this.key = key;
    this.send = send;
    this.onChange = onChange;
    this.onRejected = onRejected;
    this.entries = this.load();
    this.inflight = null;
    this.attempt = 0;
    this.timer = null;
    this.offline = !navigator.onLine;
    this.lastError = null;
    window.addEventListener("online", () => {
      this.offline = false;
      this.attempt = 0;
      this.flush();
    });
    window.addEventListener("offline", () => {
      this.offline = true;
      this.onChange(this);
    });
  }

  load() {
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(stored) ? stored : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      if (this.entries.length) localStorage.setItem(this.key, JSON.stringify(this.entries));
      else localStorage.removeItem(this.key);
    } catch (error) {
      console.warn("the outbox cannot be saved", error); // storage full or disabled: keep in memory
    }
  }

  get size() {
    return this.entries.length;
  }

  itemIds() {
    return this.entries.map((e) => e.item_id);
  }

  /** Queue an answer. An unsent answer for the same item is replaced: only the last one counts. */
  add(entry) {
    // one key per answer: a retry after a lost response is recognised by the server, not doubled
    const record = { ...entry, queued_at: Date.now(), request_id: newRequestId() };
    const index = this.entries.findIndex((e) => e.item_id === entry.item_id && e !== this.inflight);
    if (index >= 0) this.entries[index] = record;
    else this.entries.push(record);
    this.save();
    this.onChange(this);
    this.flush();
  }

  get state() {
    if (this.offline) return "offline";
    if (this.lastError && this.entries.length) return "retrying";
    if (this.entries.length) return "sending";
    return "saved";
  }

  async flush() {
    if (this.inflight) return;
    clearTimeout(this.timer);
    this.timer = null;
    while (this.entries.length) {
      const entry = this.entries[0];
      this.inflight = entry;
      try {
        await this.send(entry);
      } catch (error) {
        this.inflight = null;
        if (error && error.transient) {
          this.lastError = error;
          if (error.offline && !navigator.onLine) this.offline = true;
          this.retryLater();
          this.onChange(this);
          return;
        }
        this.drop(entry);
        this.onRejected(entry, error);
        continue;
      }
      this.inflight = null;
      this.attempt = 0;
      this.lastError = null;
      this.offline = false;
      this.drop(entry);
    }
    this.onChange(this);
  }

  drop(entry) {
    const index = this.entries.indexOf(entry);
    if (index >= 0) this.entries.splice(index, 1);
    this.save();
    this.onChange(this);
  }

  retryLater() {
    const delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // jitter, so that many annotators coming back at once do not retry in step
    this.timer = setTimeout(() => this.flush(), delay * (0.75 + Math.random() * 0.5));
  }
}

function newRequestId() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}
