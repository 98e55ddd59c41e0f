// The members screen: the project's members and roles; owners and managers add, re-role and
// remove members (only owners touch the owner role). Shows the project's recent activity to
// those who may read the audit log.

import { api } from "./api.js";
import { bootData, clear, el, fmtTime, showError, toast } from "./ui.js";

const boot = bootData();
const pid = boot.project.id;
const base = `/api/projects/${pid}`;
const permissions = new Set(boot.permissions || []);
const canManage = permissions.has("manage_members");
const isOwner = boot.role === "owner";
const ROLES = ["annotator", "reviewer", "manager", "owner"];
const ROLE_TEXT = {
  owner: "everything, including owners and deleting the project",
  manager: "settings, classes, import and export, training, auto-label, members",
  reviewer: "label, review the flagged labels, change anyone's label, browse the data",
  annotator: "label the items served to them and see their own work",
};

const listBody = document.querySelector("#member-list tbody");
const listError = document.getElementById("members-error");

function roleCell(member) {
  if (!canManage || (member.role === "owner" && !isOwner) || member.username === boot.username) {
    return el("td", {}, member.role);
  }
  const choices = ROLES.filter((r) => isOwner || r !== "owner");
  const select = el(
    "select",
    { "aria-label": `Role of ${member.username}` },
    ...choices.map((r) => el("option", { value: r, selected: r === member.role }, r)),
  );
  select.addEventListener("change", async () => {
    try {
      await api(`${base}/members/${encodeURIComponent(member.username)}`, {
        method: "PATCH",
        body: { role: select.value },
      });
      toast(`${member.username} is now ${select.value}.`);
      await load();
    } catch (error) {
      showError(listError, error);
      select.value = member.role;
    }
  });
  return el("td", {}, select);
}

function actionCell(member) {
  if (!canManage) return null;
  if ((member.role === "owner" && !isOwner) || member.username === boot.username) return el("td");
  return el(
    "td",
    {},
    el(
      "button.button.secondary.small",
      {
        type: "button",
        onclick: async () => {
          if (!window.confirm(`Remove ${member.username} from the project?`)) return;
          try {
            await api(`${base}/members/${encodeURIComponent(member.username)}`, { method: "DELETE" });
            await load();
          } catch (error) {
            showError(listError, error);
          }
        },
      },
      "Remove",
    ),
  );
}

async function load() {
  showError(listError, null);
  try {
    const members = await api(`${base}/members`);
    clear(listBody);
    for (const member of members) {
      const row = el(
        "tr",
        { "data-username": member.username },
        el("td", {}, member.username),
        roleCell(member),
        el("td", {}, fmtTime(member.created_at)),
      );
      const action = actionCell(member);
      if (action) row.append(action);
      listBody.append(row);
    }
  } catch (error) {
    showError(listError, error);
  }
  await loadAudit();
}

async function loadAudit() {
  const body = document.querySelector("#audit-list tbody");
  if (!body) return;
  try {
    const page = await api(`${base}/audit`, { query: { limit: 30 } });
    clear(body);
    for (const event of page.events) {
      const what = Object.entries(event.detail || {})
        .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(", ");
      body.append(
        el("tr", {}, el("td", {}, fmtTime(event.at)), el("td", {}, event.actor), el("td", {}, `${event.action} ${what}`)),
      );
    }
    if (!page.events.length) body.append(el("tr", {}, el("td.muted", { colspan: 3 }, "Nothing recorded yet.")));
  } catch (error) {
    toast(error.message, { kind: "error" });
  }
}

const help = document.getElementById("role-help");
for (const role of ROLES.slice().reverse()) help.append(el("li", {}, el("strong", {}, role), `: ${ROLE_TEXT[role]}`));

const form = document.getElementById("add-member");
if (form) {
  const addError = document.getElementById("add-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(addError, null);
    const username = form.username.value.trim();
    if (!username) {
      showError(addError, new Error("Enter the username of an existing account."));
      return;
    }
    try {
      await api(`${base}/members`, { method: "POST", body: { username, role: form.role.value } });
      form.username.value = "";
      toast(`${username} added as ${form.role.value}.`);
      await load();
    } catch (error) {
      showError(addError, error);
    }
  });
}

load();
