// The account page: one's API tokens (make one, shown once; revoke) and the password.

import { api } from "./api.js";
import { clear, el, fmtTime, showError, toast } from "./ui.js";

const tbody = document.querySelector("#token-list tbody");
const tokenError = document.getElementById("token-error");

async function loadTokens() {
  try {
    const tokens = await api("/api/auth/tokens");
    clear(tbody);
    for (const token of tokens) {
      const revoke = token.revoked_at
        ? el("span.muted", {}, `revoked ${fmtTime(token.revoked_at)}`)
        : el(
            "button.button.secondary.small",
            {
              type: "button",
              onclick: async () => {
                if (!window.confirm(`Revoke the token "${token.name}"? Scripts using it stop working.`)) return;
                try {
                  await api(`/api/auth/tokens/${token.id}`, { method: "DELETE" });
                  await loadTokens();
                } catch (error) {
                  showError(tokenError, error);
                }
              },
            },
            "Revoke",
          );
      tbody.append(
        el(
          "tr",
          {},
          el("td", {}, token.name),
          el("td", {}, el("code", {}, `${token.prefix}…`)),
          el("td", {}, fmtTime(token.created_at)),
          el("td", {}, token.last_used_at ? fmtTime(token.last_used_at) : "never"),
          el("td", {}, revoke),
        ),
      );
    }
    if (!tokens.length) tbody.append(el("tr", {}, el("td.muted", { colspan: 5 }, "No tokens yet.")));
  } catch (error) {
    showError(tokenError, error);
  }
}

const tokenForm = document.getElementById("new-token");
tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(tokenError, null);
  const name = tokenForm.name.value.trim();
  if (!name) {
    showError(tokenError, new Error("Give the token a name: what script or machine uses it."));
    return;
  }
  try {
    const made = await api("/api/auth/tokens", { method: "POST", body: { name } });
    document.getElementById("token-secret-value").textContent = made.secret;
    document.getElementById("token-secret").hidden = false;
    tokenForm.name.value = "";
    await loadTokens();
  } catch (error) {
    showError(tokenError, error);
  }
});

const passwordForm = document.getElementById("password-form");
const passwordError = document.getElementById("password-error");
passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(passwordError, null);
  try {
    await api("/api/auth/password", {
      method: "POST",
      body: { current_password: passwordForm.current.value, new_password: passwordForm.new.value },
    });
    toast("Password changed; sign in again.");
    setTimeout(() => window.location.assign("/login"), 1200);
  } catch (error) {
    showError(passwordError, error);
  }
});

loadTokens();
