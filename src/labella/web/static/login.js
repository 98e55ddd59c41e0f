// The sign-in page: POST the form to /api/auth/login (which sets the session cookie), then go
// to the page the visitor came from.

import { api } from "./api.js";
import { bootData, showError } from "./ui.js";

const boot = bootData();
const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError(errorBox, new Error("Enter your username and password."));
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await api("/api/auth/login", { method: "POST", body: { username, password } });
    try {
      await api("/api/auth/me");
    } catch (error) {
      // a Secure cookie over plain http is dropped by the browser: say so instead of looping
      if (error.status === 401) {
        throw new Error(
          "Signed in, but the browser did not keep the session cookie: open the site over https, " +
            "or start the server with LABELLA_COOKIE_SECURE=false on a trusted network.",
        );
      }
      throw error;
    }
    window.location.assign(boot.next || "/");
  } catch (error) {
    showError(errorBox, error);
    form.password.select();
  } finally {
    button.disabled = false;
  }
});
