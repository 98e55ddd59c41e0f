// The top bar's "Sign out": ends the browser session, then shows the sign-in page.

import { api } from "./api.js";
import { toast } from "./ui.js";

const button = document.getElementById("sign-out");
if (button) {
  button.addEventListener("click", async () => {
    try {
      await api("/api/auth/logout", { method: "POST" });
    } catch (error) {
      if (error.status !== 401) {
        toast(error.message, { kind: "error" });
        return;
      }
    }
    window.location.assign("/login");
  });
}
