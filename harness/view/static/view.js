// Labels saved in place (no reload): each label form is posted with the server's token in a header.
// Without this script the forms still work (a normal POST carrying the token in a hidden field).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const token = document.querySelector('meta[name="bilan-token"]').content;
  for (const form of document.querySelectorAll("form[data-label]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = form.querySelector("[data-status]");
      status.textContent = "saving";
      try {
        const reply = await fetch(form.action, {method: "POST", body: new FormData(form), credentials: "same-origin",
                                                headers: {"X-Bilan-Token": token, "Accept": "application/json"}});
        const body = await reply.json();
        status.textContent = body.saved ? "saved" : "not saved: " + (body.problem || reply.status);
        if (body.saved && document.querySelector(".queue-item")) {
          window.location.assign(form.elements.next.value);
        }
      } catch (error) {
        status.textContent = "not saved: " + error;
      }
    });
  }
  document.documentElement.setAttribute("data-script", "ready");
});
