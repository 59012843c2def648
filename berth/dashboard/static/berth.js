/* Berth dashboard: the little behaviour that is not htmx (no inline scripts: see the CSP). */
(function () {
  "use strict";
  // Forms with data-confirm ask first (delete, kill).
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  }, true);
  // The project switcher submits itself when a project is picked.
  document.addEventListener("change", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-autosubmit")) {
      event.target.form.requestSubmit();
    }
  });
})();
