// Small form helpers: view filters that apply as soon as one is chosen, and the export's "building" notice.

// The view filters (channel, our number) apply as soon as one is chosen.
htmx.onLoad(function (root) {
  root.querySelectorAll("form[data-submit-on-change]").forEach(function (form) {
    form.addEventListener("change", function () { form.requestSubmit(); });
    form.querySelectorAll("[data-without-script]").forEach(function (button) { button.hidden = true; });
  });
});

// The export dialog: a workbook is built whole before its download starts, which can take a
// minute or more; say so once Download is pressed.
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-building-notice]") : null;
  if (!button || !button.form) return;
  var notice = document.getElementById(button.getAttribute("data-building-notice"));
  if (notice) notice.hidden = !button.form.querySelector('input[name="format"][value="xlsx"]:checked');
});
