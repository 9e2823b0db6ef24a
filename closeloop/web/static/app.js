// closeloop: the draft editor's autosave. Plain JavaScript, no build step; the page works without it.
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  ready(function () {
    var form = document.getElementById("draft-form");
    if (!form || !form.dataset.autosave) { return; }
    var status = document.getElementById("autosave-status");
    var csrf = document.getElementById("main").dataset.csrf;
    var timer = null;
    var saving = false;
    var again = false;
    function fields() {
      var out = {};
      new FormData(form).forEach(function (value, key) {
        if (key !== "csrf_token" && typeof value === "string") { out[key] = value; }
      });
      return out;
    }
    function save() {
      if (saving) { again = true; return; }
      saving = true;
      status.textContent = "Saving…";
      fetch(form.dataset.autosave, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(fields())
      }).then(function (response) {
        return response.json().then(function (body) {
          if (response.ok) {
            status.textContent = "Saved at " + new Date(body.saved_at).toLocaleTimeString() + ".";
            form.dataset.saved = body.saved_at;
          } else {
            status.textContent = "Not saved: " + (body.error || response.status);
          }
        });
      }).catch(function () {
        status.textContent = "Not saved: closeloop cannot be reached. Your text is still here.";
      }).finally(function () {
        saving = false;
        if (again) { again = false; save(); }
      });
    }
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(save, 800);
    });
  });
})();
