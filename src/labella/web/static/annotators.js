// The dashboard's annotator section: each annotator's pace and agreement (annotators see their
// own row only), the project's agreement for reviewers, and the overlap settings for managers.

import { api } from "./api.js";
import { bootData, clear, el, fmtInt, fmtPercent, fmtScore, fmtTime, showError, toast } from "./ui.js";

const boot = bootData();
const project = boot.project;
const base = `/api/projects/${project.id}`;
const permissions = new Set(boot.permissions || []);
const $ = (id) => document.getElementById(id);
const REFRESH_MS = 30_000;

function withCount(share, n) {
  return share === null || share === undefined ? "–" : `${fmtPercent(share)} (${fmtInt(n)})`;
}

async function refreshAnnotators() {
  const data = await api(`${base}/annotators`);
  const body = clear($("annotator-stats").querySelector("tbody"));
  $("annotators-empty").hidden = data.annotators.length > 0;
  for (const s of data.annotators) {
    body.append(
      el(
        "tr",
        { dataset: { annotator: s.annotator } },
        el("th", { scope: "row" }, s.annotator),
        el("td.num", {}, fmtInt(s.labels)),
        el("td.num", {}, s.labels_per_hour === null ? "–" : s.labels_per_hour.toFixed(0)),
        el("td.num", { title: "Share of shared items answered alike (Cohen's kappa in brackets)" }, s.agreement_with_others === null ? "–" : `${fmtPercent(s.agreement_with_others)} (κ ${fmtScore(s.kappa_with_others, 2)})`),
        el("td.num", {}, withCount(s.agreement_with_review, s.reviewed)),
        el("td", {}, fmtTime(s.last_active)),
      ),
    );
  }
}

async function refreshAgreement() {
  if (!permissions.has("review")) return;
  const a = await api(`${base}/agreement`);
  const line = $("agreement-line");
  if (!a.items) {
    line.textContent = "No item has two answers yet: set overlap below to measure agreement.";
  } else {
    const decided = Object.entries(a.decided_by)
      .map(([how, n]) => `${fmtInt(n)} by ${how}`)
      .join(", ");
    line.textContent =
      `Agreement on ${fmtInt(a.items)} items, ${a.annotators} annotators: ` +
      `${fmtPercent(a.percent_agreement)} alike, Krippendorff's α ${fmtScore(a.krippendorff_alpha, 2)}, ` +
      `Fleiss' κ ${fmtScore(a.fleiss_kappa, 2)}${a.multi_label ? " (per-class means)" : ""}. ` +
      `Labels decided: ${decided || "none yet"}; ${fmtInt(a.in_review)} waiting for review.`;
  }
  line.hidden = false;
}

async function loadSettings() {
  if (!permissions.has("manage_project")) return;
  const p = await api(base);
  $("o-overlap").value = p.overlap;
  $("o-share").value = p.overlap_share;
  $("o-sample").value = p.review_sample_share;
  $("overlap-form").hidden = false;
}

$("overlap-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError($("overlap-error"), null);
  $("overlap-status").textContent = "";
  try {
    await api(base, {
      method: "PATCH",
      body: {
        overlap: Number($("o-overlap").value),
        overlap_share: Number($("o-share").value),
        review_sample_share: Number($("o-sample").value),
      },
    });
    $("overlap-status").textContent = "Saved.";
    toast("Overlap settings saved.", { kind: "ok", timeout: 2500 });
    refreshAgreement();
  } catch (error) {
    showError($("overlap-error"), error);
  }
});

async function refresh() {
  try {
    await Promise.all([refreshAnnotators(), refreshAgreement()]);
  } catch (error) {
    $("annotators-empty").hidden = false;
    $("annotators-empty").textContent = error.message;
  }
}

loadSettings().catch((error) => showError($("overlap-error"), error));
refresh();
setInterval(refresh, REFRESH_MS);
