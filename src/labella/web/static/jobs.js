// Background jobs as progress bars with an ETA. The ETA comes from the rate at which a job's
// progress moved over the last half minute of polls (client clock), so a job that reports
// steadily gets a steady estimate and a stalled one shows none.

import { clear, el, fmtDuration, fmtTime } from "./ui.js";

const KIND_NAMES = {
  encode: "Embedding the texts",
  train: "Training",
  rank: "Ranking the queue",
  finetune_encoder: "Fine-tuning the encoder",
};
const WINDOW_MS = 30_000;

export function isActive(job) {
  return job.status === "queued" || job.status === "running";
}

export class JobBoard {
  /** `onCancel(job)`, when given, adds a Cancel button to each queued or running job that
   * `cancellable(job)` accepts (every one by default). */
  constructor(container, { onCancel = null, cancellable = () => true } = {}) {
    this.container = container;
    this.samples = new Map(); // job id -> [{t, done}]
    this.onCancel = onCancel;
    this.cancellable = cancellable;
  }

  /** Seconds left for a running job, or null when there is no rate to go by yet. */
  eta(job) {
    if (job.status !== "running" || !(job.progress_total > 0)) return null;
    const now = performance.now();
    const history = this.samples.get(job.id) || [];
    const last = history[history.length - 1];
    if (!last || last.done !== job.progress_done) history.push({ t: now, done: job.progress_done });
    while (history.length > 2 && now - history[0].t > WINDOW_MS) history.shift();
    this.samples.set(job.id, history);
    const first = history[0];
    const newest = history[history.length - 1];
    const elapsed = (newest.t - first.t) / 1000;
    const moved = newest.done - first.done;
    if (elapsed <= 0 || moved <= 0) return null;
    return (job.progress_total - job.progress_done) / (moved / elapsed);
  }

  render(jobs) {
    clear(this.container);
    if (!jobs.length) {
      this.container.append(el("p.muted.small", {}, "No jobs yet."));
      return;
    }
    for (const job of jobs) this.container.append(this.jobNode(job));
  }

  jobNode(job) {
    const name = KIND_NAMES[job.kind] || job.kind;
    const active = isActive(job);
    const total = job.progress_total;
    const fraction = total > 0 ? job.progress_done / total : null;
    const eta = this.eta(job);
    let state;
    if (job.status === "queued") state = "waiting";
    else if (job.status === "running") {
      state = fraction === null ? "running" : `${Math.round(fraction * 100)}%`;
      if (eta !== null) state += ` · about ${fmtDuration(eta)} left`;
    } else state = `${job.status} ${fmtTime(job.finished_at)}`;
    const barId = `job-${job.id}-bar`;
    const node = el(
      `div.job.${job.status}`,
      { dataset: { jobId: job.id, kind: job.kind, status: job.status } },
      el("div.job-head", {}, el("label", { for: barId }, `${name} (job ${job.id})`), el("span.small.job-state", {}, state)),
    );
    if (active) {
      const bar = el("progress", { id: barId, max: 100 });
      if (fraction !== null) bar.value = Math.round(fraction * 100); // no value: indeterminate
      node.append(bar);
      if (this.onCancel && this.cancellable(job)) {
        node.append(
          el(
            "button.secondary.small.job-cancel",
            {
              type: "button",
              "aria-label": `Cancel ${name.toLowerCase()} (job ${job.id})`,
              onclick: (event) => {
                event.currentTarget.disabled = true;
                this.onCancel(job);
              },
            },
            "Cancel",
          ),
        );
      }
    }
    const message = job.error || job.message;
    if (message) node.append(el("p.job-message", {}, message));
    return node;
  }
}
