// The project dashboard: counts, learning curve, class-wise scores, queue preview, the loop's
// controls (send batch, train, auto-label, export), import by upload, and job progress.

import { api, upload } from "./api.js";
import { lineChart } from "./chart.js";
import { JobBoard, isActive } from "./jobs.js";
import { findStrategy, readParams, renderParams } from "./strategy_form.js";
import {
  bootData,
  classChip,
  clear,
  el,
  fmtInt,
  fmtPercent,
  fmtScore,
  fmtTime,
  showError,
  textColorFor,
  toast,
} from "./ui.js";

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const colorOf = new Map(project.classes.map((c) => [c.id, c.color]));
const $ = (id) => document.getElementById(id);

// a fine-tuning takes minutes to an hour on a CPU: it can be called off (the project keeps its
// encoder; services.finetuning only switches once the new one is trained and used everywhere)
const jobs = new JobBoard($("jobs"), {
  cancellable: (job) => job.kind === "finetune_encoder",
  onCancel: cancelJob,
});
let knownJobs = new Map(); // id -> status, to notice jobs that finish
let pollTimer = null;
let latestModelVersion; // undefined until the first status: then the models are loaded

for (const chip of document.querySelectorAll(".page-head .chip[data-color]")) {
  chip.style.background = chip.dataset.color;
  chip.style.color = textColorFor(chip.dataset.color);
}

// -- counts and jobs (polled) -----------------------------------------------------------------
async function refreshStatus() {
  const status = await api(`${base}/status`);
  $("count-labeled").textContent = fmtInt(status.counts.labeled || 0);
  $("count-auto").textContent = fmtInt(status.counts.auto || 0);
  $("count-unlabeled").textContent = fmtInt(status.counts.unlabeled || 0);
  $("count-skipped").textContent = fmtInt(status.counts.skipped || 0);
  const enc = status.encoding;
  $("encoding-line").textContent = status.total_items
    ? `${fmtInt(status.total_items)} items, ${fmtInt(enc.embedded)} embedded (${fmtPercent(enc.fraction)}).`
    : "No items yet: import a file below.";
  if ($("encoder-name")) $("encoder-name").textContent = status.project.encoder;
  const version = status.model ? status.model.version : null;
  if (version !== latestModelVersion) {
    latestModelVersion = version;
    refreshModels();
  }
  return status;
}

async function refreshJobs() {
  // online updates run after every label: the trust panel sums them up instead
  const list = await api(`${base}/jobs`, { query: { limit: 8, exclude_kind: "online_update" } });
  const shown = list.filter((job, i) => isActive(job) || i < 4);
  jobs.render(shown);
  let finished = false;
  for (const job of list) {
    const before = knownJobs.get(job.id);
    if (before && isActive({ status: before }) && !isActive(job)) finished = true;
  }
  knownJobs = new Map(list.map((job) => [job.id, job.status]));
  return { active: list.some(isActive), finished };
}

async function poll() {
  clearTimeout(pollTimer);
  let active = false;
  try {
    const [, jobState] = await Promise.all([refreshStatus(), refreshJobs()]);
    active = jobState.active;
    if (jobState.finished) {
      refreshModels();
      refreshQueue();
    }
  } catch (error) {
    if (!error.offline) console.warn(error);
  }
  pollTimer = setTimeout(poll, active ? 1000 : 5000);
}

// -- model: learning curve and class-wise scores --------------------------------------------------
async function refreshModels() {
  let models;
  try {
    models = await api(`${base}/models`);
  } catch (error) {
    console.warn(error);
    return;
  }
  models.sort((a, b) => a.version - b.version);
  drawCurve(models);
  drawScores(models[models.length - 1] || null);
}

function drawCurve(models) {
  const box = $("curve");
  const tbody = $("curve-table").querySelector("tbody");
  clear(tbody);
  // a detector's versions (object detection) are scored by mAP, a classifier's by accuracy
  const detector = models.some((m) => m.metrics && m.metrics.detector);
  const [[keyA, nameA, headA], [keyB, nameB, headB]] = detector
    ? [["map50", "mAP@0.5", "mAP@0.5"], ["map50_95", "mAP@0.5:0.95", "mAP@0.5:0.95"]]
    : [["accuracy", "accuracy", "Accuracy"], ["macro_f1", "macro F1", "Macro F1"]];
  const heads = $("curve-table").querySelectorAll("thead th");
  heads[2].textContent = headA;
  heads[3].textContent = headB;
  for (const m of models) {
    tbody.append(
      el(
        "tr",
        {},
        // a version trained on a fine-tuned encoder's vectors says so (services.finetuning)
        el(
          "td",
          { title: `encoder ${m.encoder}` },
          /^(finetuned-text|setfit|finetuned-image):/.test(m.encoder) ? `v${m.version} (fine-tuned encoder)` : `v${m.version}`,
        ),
        el("td.num", {}, fmtInt(m.n_labels)),
        el("td.num", {}, fmtPercent(m.metrics[keyA], 1)),
        el("td.num", {}, fmtPercent(m.metrics[keyB], 1)),
        el("td", {}, fmtTime(m.created_at)),
      ),
    );
  }
  if (!models.length) return;
  const point = (m, key, name) => ({
    x: m.n_labels,
    y: typeof m.metrics[key] === "number" ? m.metrics[key] : null,
    label: `v${m.version}: ${name} ${fmtPercent(m.metrics[key], 1)} with ${m.n_labels} labels`,
  });
  const series = [
    { name: nameA, color: "#1d4ed8", points: models.map((m) => point(m, keyA, nameA)) },
    { name: nameB, color: "#c2410c", dashed: true, points: models.map((m) => point(m, keyB, nameB)) },
  ];
  clear(box).append(
    lineChart(series, {
      xTitle: "human labels",
      yTitle: "held-out score",
      title: `Learning curve: ${models.length} model version${models.length === 1 ? "" : "s"}`,
    }),
    el(
      "div.legend",
      {},
      ...series.map((s) =>
        el("span", {}, el("span.swatch", { style: `background:${s.color}` }), s.name),
      ),
    ),
  );
}

function drawScores(model) {
  const table = $("class-scores");
  const caption = $("scores-caption");
  if (!model) {
    table.hidden = true;
    caption.textContent = "No model yet.";
    return;
  }
  const m = model.metrics;
  if (m.detector) {
    drawDetectorScores(model, table, caption);
    return;
  }
  caption.textContent =
    `Model v${model.version}, ${fmtInt(model.n_labels)} labels: accuracy ${fmtPercent(m.accuracy, 1)}, ` +
    `macro F1 ${fmtPercent(m.macro_f1, 1)} (${m.method || "cross-validation"}).` +
    // services.training: the head also learned from its confident guesses on unlabeled items
    (m.self_training
      ? ` Self-trained on ${fmtInt(m.self_training.pseudo_labels)} pseudo-labels of ` +
        `${fmtInt(m.self_training.unlabeled_seen)} unlabeled items.`
      : "");
  const tbody = clear(table.querySelector("tbody"));
  for (const cls of project.classes) {
    const s = (m.per_class || {})[cls.name];
    if (!s) continue;
    tbody.append(
      el(
        "tr",
        {},
        el("th", { scope: "row" }, classChip(cls)),
        el("td.num", {}, fmtScore(s.precision, 2)),
        el("td.num", {}, fmtScore(s.recall, 2)),
        el("td.num", {}, fmtScore(s.f1, 2)),
        el("td.num", {}, s.support ?? "–"),
      ),
    );
  }
  table.hidden = false;
}

function drawDetectorScores(model, table, caption) {
  const m = model.metrics;
  caption.textContent =
    `Detector v${model.version}, ${fmtInt(model.n_labels)} images: mAP@0.5 ${fmtPercent(m.map50, 1)}, ` +
    `mAP@0.5:0.95 ${fmtPercent(m.map50_95, 1)} (on ${fmtInt(m.n_eval || 0)} images, ${m.evaluated_on}).`;
  const heads = table.querySelectorAll("thead th");
  ["Class", "AP@0.5", "AP@0.5:0.95", "Boxes", "Found"].forEach((name, i) => {
    heads[i].textContent = name;
  });
  const tbody = clear(table.querySelector("tbody"));
  for (const cls of project.classes) {
    const s = (m.per_class || {})[cls.name];
    if (!s) continue;
    tbody.append(
      el(
        "tr",
        {},
        el("th", { scope: "row" }, classChip(cls)),
        el("td.num", {}, fmtScore(s.ap50, 2)),
        el("td.num", {}, fmtScore(s.ap50_95, 2)),
        el("td.num", {}, s.n_ground_truth ?? "–"),
        el("td.num", {}, s.n_detections ?? "–"),
      ),
    );
  }
  table.hidden = false;
}

// -- queue preview ----------------------------------------------------------------------------
async function refreshQueue() {
  let rows;
  try {
    rows = await api(`${base}/queue`, { query: { n: 10 } });
  } catch (error) {
    console.warn(error);
    return;
  }
  const tbody = clear($("queue").querySelector("tbody"));
  $("queue-empty").hidden = rows.length > 0;
  rows.forEach((row, i) => {
    const said = row.predicted.length
      ? [...row.predicted.map((c) => classChip(c, (id) => colorOf.get(id))), ` ${fmtPercent(row.confidence)}`]
      : ["–"];
    tbody.append(
      el(
        "tr",
        {},
        el("td.num", {}, i + 1),
        el(
          "td.text-cell",
          {},
          el("div.clip", {}, row.text || "(no text)"),
          row.leased_by ? el("div.muted.small", {}, `on ${row.leased_by}'s screen`) : null,
        ),
        el("td.num", {}, row.priority === null ? "–" : String(Number(row.priority.toPrecision(4)))),
        el("td.small", {}, row.reason),
        el("td", {}, ...said),
      ),
    );
  });
}

// -- the loop's controls --------------------------------------------------------------------------
function actionResult(message, error) {
  $("action-status").textContent = message || "";
  showError($("action-error"), error);
}

async function startJob(path, what, button) {
  button.disabled = true;
  actionResult("");
  try {
    const job = await api(path, { method: "POST" });
    actionResult(`${what} started (job ${job.id}).`);
    poll();
  } catch (error) {
    actionResult("", error);
  } finally {
    button.disabled = false;
  }
}

async function cancelJob(job) {
  actionResult("");
  try {
    const answer = await api(`/api/jobs/${job.id}/cancel`, { method: "POST" });
    const what = (job.kind === "finetune_encoder" ? "Fine-tuning the encoder" : job.kind) + ` (job ${job.id})`;
    if (answer.status === "cancelled") {
      const encoder = $("encoder-name") ? `; the project keeps encoder ${$("encoder-name").textContent}` : "";
      actionResult(`${what} cancelled${encoder}.`);
    } else {
      actionResult(`${what} had already ended: ${answer.status}.`);
    }
  } catch (error) {
    actionResult("", error);
  }
  poll();
}

$("send-batch").addEventListener("click", (event) =>
  startJob(`${base}/rank`, "Ranking the next batch", event.currentTarget),
);
$("train-now").addEventListener("click", (event) =>
  startJob(`${base}/train`, "Training", event.currentTarget),
);
// only single-label text projects have the fine-tuning button
$("finetune-now")?.addEventListener("click", (event) =>
  startJob(`${base}/finetune`, `Fine-tuning the encoder (${event.currentTarget.dataset.duration}; a training follows)`, event.currentTarget),
);

// auto-label: preview first, then confirm with the count in the button
let previewed = null;
$("autolabel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("autolabel-error"), null);
  $("autolabel-preview").hidden = true;
  const threshold = Number($("threshold").value);
  try {
    const preview = await api(`${base}/autolabel/preview`, { query: { threshold } });
    previewed = preview;
    const parts = Object.entries(preview.by_class)
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${name} ${fmtInt(n)}`);
    $("autolabel-summary").textContent =
      `Model v${preview.model_version} would label ${fmtInt(preview.count)} item${preview.count === 1 ? "" : "s"}` +
      ` at confidence ≥ ${preview.threshold}` + (parts.length ? ` (${parts.join(", ")}).` : ".");
    const confirm = $("autolabel-confirm");
    confirm.textContent = `Auto-label ${fmtInt(preview.count)} item${preview.count === 1 ? "" : "s"}`;
    confirm.disabled = preview.count === 0;
    $("autolabel-preview").hidden = false;
    (preview.count ? confirm : $("autolabel-cancel")).focus();
  } catch (error) {
    showError($("autolabel-error"), error);
  }
});
$("autolabel-cancel").addEventListener("click", () => {
  $("autolabel-preview").hidden = true;
  previewed = null;
  $("threshold").focus();
});
$("autolabel-confirm").addEventListener("click", async (event) => {
  if (!previewed) return;
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const result = await api(`${base}/autolabel`, { method: "POST", body: { threshold: previewed.threshold } });
    $("autolabel-preview").hidden = true;
    $("action-status").textContent = `Auto-labeled ${fmtInt(result.labeled)} items with model v${result.model_version}.`;
    toast(`Auto-labeled ${fmtInt(result.labeled)} items.`, { kind: "ok" });
    previewed = null;
    refreshStatus();
    refreshQueue();
  } catch (error) {
    showError($("autolabel-error"), error);
  } finally {
    button.disabled = false;
  }
});

function updateExportLink() {
  const query = new URLSearchParams({ format: $("export-format").value, include: $("export-include").value });
  $("export-link").href = `${base}/export?${query}`;
}
$("export-format").addEventListener("change", updateExportLink);
$("export-include").addEventListener("change", updateExportLink);

// -- import by upload ---------------------------------------------------------------------------
$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const file = $("import-file").files[0];
  showError($("import-error"), null);
  clear($("import-result"));
  if (!file) {
    showError($("import-error"), new Error("Choose a file to import."));
    $("import-file").focus();
    return;
  }
  const data = new FormData();
  const images = project.kind === "image_classification";
  if (images) {
    // images, zips and listings go to the image import, every chosen file in one request
    for (const chosen of $("import-file").files) data.append("files", chosen, chosen.name);
    for (const name of ["label_field", "id_field"]) {
      const value = form.elements[name].value.trim();
      if (value) data.append(name, value);
    }
  } else {
    data.append("file", file, file.name);
    for (const name of ["text_field", "label_field", "id_field", "format"]) {
      const value = form.elements[name].value.trim();
      if (value) data.append(name, value);
    }
  }
  const bar = $("import-progress");
  const label = $("import-progress-label");
  bar.value = 0;
  label.textContent = `Uploading ${file.name}…`;
  $("import-progress-box").hidden = false;
  $("import-submit").disabled = true;
  try {
    const report = await upload(`${base}/${images ? "images" : "imports"}`, data, {
      onProgress: (loaded, total) => {
        bar.value = Math.round((loaded / total) * 100);
        if (loaded >= total) {
          label.textContent = `Reading ${file.name} on the server…`;
          bar.removeAttribute("value"); // indeterminate while the server reads the rows
        }
      },
    });
    bar.value = 100;
    label.textContent = `${file.name} imported.`;
    showReport(report);
    form.reset();
    poll();
    refreshQueue();
  } catch (error) {
    $("import-progress-box").hidden = true;
    showError($("import-error"), error);
  } finally {
    $("import-submit").disabled = false;
  }
});

function showReport(report) {
  const parts = [`${fmtInt(report.items_created)} new items`];
  if (report.labels_created) parts.push(`${fmtInt(report.labels_created)} labels`);
  if (report.duplicates) parts.push(`${fmtInt(report.duplicates)} duplicates skipped`);
  if (report.empty_rows) parts.push(`${fmtInt(report.empty_rows)} empty rows skipped`);
  if (report.skipped) {
    const names = report.skipped_examples.slice(0, 5).map((s) => `${s.name} (${s.reason})`).join("; ");
    parts.push(`${fmtInt(report.skipped)} bad images skipped: ${names}${report.skipped > 5 ? "; …" : ""}`);
  }
  const box = clear($("import-result"));
  box.append(
    el(
      "p.success",
      {},
      `Imported ${report.filename}: ${parts.join(", ")} from ${fmtInt(report.rows)} rows. `,
      report.items_created ? el("a", { href: `/projects/${project.id}/label` }, "Start labeling") : null,
    ),
  );
  if (report.duplicate_examples && report.duplicate_examples.length) {
    const list = el("ul.small");
    for (const dup of report.duplicate_examples.slice(0, 5)) {
      const where = dup.duplicate_of === "file" ? `line ${dup.first_line}` : `item ${dup.item_id}`;
      list.append(el("li", {}, `line ${dup.line} repeats ${where}: “${dup.text}”`));
    }
    box.append(list);
  }
}

// -- settings: strategy, its parameters, retraining ---------------------------------------------
const strategySelect = $("s-strategy");
for (const s of boot.strategies) strategySelect.append(el("option", { value: s.name }, s.name));
strategySelect.value = project.strategy;
function showStrategy(values) {
  const strategy = findStrategy(boot.strategies, strategySelect.value);
  $("s-strategy-summary").textContent = strategy.summary || "";
  renderParams($("s-params"), strategy, values);
}
strategySelect.addEventListener("change", () => showStrategy({}));
showStrategy(project.strategy_params || {});
$("settings-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("settings-error"), null);
  $("settings-status").textContent = "";
  try {
    const strategy = findStrategy(boot.strategies, strategySelect.value);
    const updated = await api(base, {
      method: "PATCH",
      body: {
        strategy: strategy.name,
        strategy_params: readParams($("s-params"), strategy),
        retrain_every: Number($("s-retrain").value),
      },
    });
    project.strategy = updated.strategy;
    $("settings-status").textContent =
      `Saved: ${updated.strategy}, retraining every ${updated.retrain_every} labels. Send batch to re-rank the queue now.`;
  } catch (error) {
    showError($("settings-error"), error);
  }
});

// -- automatic fine-tuning (services.finetuning.maybe_schedule_finetune) ------------------------
$("autofinetune-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("autofinetune-error"), null);
  $("autofinetune-status").textContent = "";
  try {
    const saved = await api(base, { method: "PATCH", body: { auto_finetune_at: Number($("f-auto").value) } });
    project.auto_finetune_at = saved.auto_finetune_at;
    $("autofinetune-status").textContent = saved.auto_finetune_at
      ? `Saved: the encoder fine-tunes itself at ${fmtInt(saved.auto_finetune_at)} labels, then each time they double.`
      : "Saved: the encoder is fine-tuned only when you ask.";
  } catch (error) {
    showError($("autofinetune-error"), error);
  }
});

// -- self-training (learners.self_training); the box is only there for single-label classification
$("f-selftrain")?.addEventListener("change", async (event) => {
  const box = event.target;
  const wanted = box.checked;
  showError($("selftrain-error"), null);
  $("selftrain-status").textContent = "";
  box.disabled = true;
  try {
    const saved = await api(base, { method: "PATCH", body: { self_training: wanted } });
    box.checked = saved.self_training;
    $("selftrain-status").textContent = saved.self_training
      ? "Saved: training also learns from the model's confident predictions."
      : "Saved: training learns from human labels only.";
  } catch (error) {
    box.checked = !wanted; // as saved before the click
    showError($("selftrain-error"), error);
  } finally {
    box.disabled = false;
  }
});

poll();
refreshQueue();
if (window.location.hash === "#import") $("import").focus();
