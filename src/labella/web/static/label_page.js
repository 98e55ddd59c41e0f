// What the two labeling screens (classes: label.js, boxes: label_boxes.js) share: the status bar
// with the answer outbox, the passing hint line and the keys dialog.

const $ = (id) => document.getElementById(id);

/** Fill the status bar. `noun` names an answer ("label", "answer"); `saved` is the all-sent text. */
export function renderQueueStatus({ state, outbox, noun, saved }) {
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
export function hinter(ms) {
  let timer = null;
  return (message) => {
    $("hint").textContent = message;
    clearTimeout(timer);
    if (message) timer = setTimeout(() => ($("hint").textContent = ""), ms);
  };
}

/** Wire #keys-dialog to #show-keys / #close-keys; returns the function that opens or closes it. */
export function setUpKeysDialog() {
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
