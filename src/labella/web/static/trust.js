// The dashboard's "Trust the model" panel: accuracy on the random evaluation sample (with its
// interval), the stopping signal (labels and money saved), the online updates, auto-labeling to a
// precision target (preview, then confirm), the audit of the auto-labels, and the loop settings.

import { api } from "./api.js";
import { bootData, fmtInt, fmtPercent, showError, toast } from "./ui.js";

const project = bootData().project;
const base = `/api/projects/${project.id}`;
const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;
const money = new Intl.NumberFormat("en", { maximumFractionDigits: 2, minimumFractionDigits: 2 });

// -- honest accuracy ------------------------------------------------------------------------------
async function refreshEvaluation() {
  const [models, sample] = await Promise.all([
    api(`${base}/models`),
    api(`${base}/evaluation-sample`),
  ]);
  const latest = models.sort((a, b) => a.version - b.version)[models.length - 1];
  const evaluation = latest && latest.metrics && latest.metrics.evaluation;
  const progress = `${fmtInt(sample.labeled)} of ${fmtInt(sample.size)} evaluation items labeled`;
  if (evaluation && typeof evaluation.accuracy === "number") {
    $("eval-line").textContent =
      `Model v${latest.version}: ${fmtPercent(evaluation.accuracy, 1)} accurate on the random ` +
      `evaluation sample (95% interval ${fmtPercent(evaluation.ci_low, 1)}–` +
      `${fmtPercent(evaluation.ci_high, 1)}, n = ${fmtInt(evaluation.n)}); ${progress}.`;
  } else if (latest) {
    $("eval-line").textContent =
      `Model v${latest.version} has no unbiased score yet: ${progress}. ` +
      "Label the items served as evaluation samples, then train.";
  } else {
    $("eval-line").textContent = `No model yet; ${progress}.`;
  }
}

// -- stopping signal ------------------------------------------------------------------------------
async function refreshStopping() {
  const signal = await api(`${base}/stopping`);
  const line = $("stop-line");
  line.textContent = signal.stop ? `Labeling has stopped paying: ${signal.reason}.` : `Keep labeling: ${signal.reason}.`;
  line.classList.toggle("ok", signal.stop);
  const parts = [];
  if (signal.gain_per_100_labels !== null) {
    parts.push(`${signal.gain_per_100_labels.toFixed(2)} accuracy points per 100 labels (${signal.metric})`);
  }
  if (signal.agreement_with_previous !== null) {
    parts.push(`newest model kept ${fmtPercent(signal.agreement_with_previous, 1)} of the predictions`);
  }
  if (signal.stop) {
    let saved = `stopping now saves ${plural(signal.estimated_labels_saved, "label")}`;
    if (signal.estimated_cost_saved !== null) saved += ` (${money.format(signal.estimated_cost_saved)} at ${money.format(signal.cost_per_label)} each)`;
    parts.push(saved);
  }
  $("stop-detail").textContent = parts.length ? `${parts.join("; ")}.` : "";
}

// -- online updates -------------------------------------------------------------------------------
async function refreshOnline() {
  const [jobs, status] = await Promise.all([
    api(`${base}/jobs`, { query: { limit: 20, kind: "online_update" } }),
    api(`${base}/status`),
  ]);
  const last = jobs.find((job) => job.status === "succeeded" && job.result && job.result.applied);
  const newest = status.model ? status.model.version : null;
  const settingOn = Number($("l-online").value) > 0;
  if (!settingOn) {
    $("online-line").textContent = "Online updates are off: the model learns only when it retrains.";
  } else if (last && newest !== null && last.result.model_version < newest) {
    $("online-line").textContent =
      `Model v${newest} was retrained on every label since the last online update; ` +
      "the next label updates it online.";
  } else if (last) {
    const when = last.finished_at ? new Date(last.finished_at).toLocaleTimeString() : "";
    $("online-line").textContent =
      `Update ${fmtInt(last.result.updates)} of model v${last.result.model_version} at ${when}: ` +
      `learned ${plural(last.result.applied, "label")} and re-ranked the queue in ` +
      `${Math.round(last.result.seconds * 1000)} ms.`;
  } else {
    $("online-line").textContent = "The model learns from every label once a first model is trained.";
  }
}

// -- auto-label to a precision target ------------------------------------------------------------
let planned = null;
$("precision-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("precision-error"), null);
  $("precision-preview").hidden = true;
  const target = Number($("target-precision").value);
  try {
    const preview = await api(`${base}/autolabel/preview`, { query: { target_precision: target } });
    planned = preview;
    const summary = preview.count
      ? `Model v${preview.model_version} would label ${plural(preview.count, "item")} ` +
        `(calibrated confidence ≥ ${preview.threshold.toFixed(3)}); estimated precision ` +
        `${fmtPercent(preview.estimated_precision, 1)}, and ${fmtPercent(preview.ci_low, 1)}–` +
        `${fmtPercent(preview.ci_high, 1)} measured on ${plural(preview.eval_n, "evaluation item")} above that confidence.`
      : `No item reaches ${fmtPercent(target, 1)} precision with model v${preview.model_version}; label more or lower the target.`;
    $("precision-summary").textContent = summary;
    const warnings = $("precision-warnings");
    warnings.replaceChildren(
      ...(preview.warnings || []).map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
    warnings.hidden = warnings.children.length === 0;
    const confirm = $("precision-confirm");
    confirm.textContent = `Auto-label ${plural(preview.count, "item")}`;
    confirm.disabled = preview.count === 0;
    $("precision-preview").hidden = false;
    (preview.count ? confirm : $("precision-cancel")).focus();
  } catch (error) {
    showError($("precision-error"), error);
  }
});
$("precision-cancel").addEventListener("click", () => {
  $("precision-preview").hidden = true;
  planned = null;
  $("target-precision").focus();
});
$("precision-confirm").addEventListener("click", async (event) => {
  if (!planned) return;
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const result = await api(`${base}/autolabel`, { method: "POST", body: { target_precision: planned.target_precision } });
    $("precision-preview").hidden = true;
    toast(`Auto-labeled ${plural(result.labeled, "item")}; queue an audit to measure their precision.`, { kind: "ok" });
    planned = null;
    refreshAudit();
  } catch (error) {
    showError($("precision-error"), error);
  } finally {
    button.disabled = false;
  }
});

// -- audit ----------------------------------------------------------------------------------------
function describeAudit(report) {
  if (!report.checked && !report.queued) {
    return report.auto_labeled
      ? `${plural(report.auto_labeled, "item")} carry auto-labels; none audited yet.`
      : "No auto-labels yet.";
  }
  let text = `${plural(report.checked, "audit item")} checked, ${fmtInt(report.queued)} waiting (served first to annotators).`;
  if (report.precision !== null) {
    text += ` Measured precision of the auto-labels: ${fmtPercent(report.precision, 1)} ` +
      `(${fmtInt(report.agreed)} of ${fmtInt(report.checked)}; 95% interval ${fmtPercent(report.ci_low, 1)}–${fmtPercent(report.ci_high, 1)}).`;
  }
  return text;
}

async function refreshAudit() {
  $("audit-line").textContent = describeAudit(await api(`${base}/autolabel/audit`));
}

$("audit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("audit-error"), null);
  try {
    const report = await api(`${base}/autolabel/audit`, { method: "POST", body: { size: Number($("audit-size").value) } });
    $("audit-line").textContent = describeAudit(report);
    toast(`Queued ${plural(report.drawn, "item")} for the audit.`, { kind: "ok" });
  } catch (error) {
    showError($("audit-error"), error);
  }
});

// -- loop settings --------------------------------------------------------------------------------
$("loop-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("loop-error"), null);
  $("loop-status").textContent = "";
  try {
    const saved = await api(base, {
      method: "PATCH",
      body: { online_update_every: Number($("l-online").value), cost_per_label: Number($("l-cost").value) },
    });
    $("loop-status").textContent = `Saved: online updates every ${plural(saved.online_update_every, "label")}, ${money.format(saved.cost_per_label)} per label.`;
    refreshStopping();
    refreshOnline();
  } catch (error) {
    showError($("loop-error"), error);
  }
});

// -- polling --------------------------------------------------------------------------------------
async function refreshAll() {
  const parts = [refreshEvaluation, refreshStopping, refreshOnline, refreshAudit];
  const results = await Promise.allSettled(parts.map((part) => part()));
  for (const result of results) if (result.status === "rejected" && !result.reason.offline) console.warn(result.reason);
}

refreshAll();
setInterval(refreshAll, 10000);
