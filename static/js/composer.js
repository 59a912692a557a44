// The reply box: its SMS counter, Ctrl/Cmd+Enter sends, its draft, its height, its text kept when htmx renews it.
var modules = window.smsInbox;

function routeMaySendSms(form) {
  var route = form.elements.namedItem("route");
  if (!route) return true;
  var chosen = route.tagName === "SELECT" ? route.options[route.selectedIndex] : route;
  return !!chosen && chosen.hasAttribute("data-sms");
}

// A reply box renewed out of band (a contact's name saved, an opt-out changed) keeps what is
// typed in it, also where this browser keeps no drafts.
document.addEventListener("htmx:oobBeforeSwap", function (event) {
  if (event.detail.target.id !== "composer") return;
  var typed = event.detail.target.querySelector("textarea[name=text]");
  var fresh = event.detail.fragment.querySelector("textarea[name=text]");
  if (typed && fresh && typed.value && !fresh.value) fresh.textContent = typed.value;
});

function enhanceReplyBox(root) {
  root.querySelectorAll("textarea[data-sms-counter]").forEach(function (box) {
    var counter = document.getElementById(box.getAttribute("data-sms-counter"));
    var update = function () {
      counter.textContent = modules.smsLength.describeLength(box.value, routeMaySendSms(box.form));
    };
    box.addEventListener("input", update);
    box.form.addEventListener("change", function (event) {
      if (event.target.name === "route") update();
    });
    modules.drafts.keepDraft(box);
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        box.form.requestSubmit();
      }
    });
    update();
  });
}

htmx.onLoad(enhanceReplyBox);

// The reply box grows with what is typed (style.css's max-height stops it): CSS does it where
// the browser knows `field-sizing`; elsewhere its height follows the text here.
htmx.onLoad(function (root) {
  if (window.CSS && CSS.supports("field-sizing", "content")) return;
  root.querySelectorAll("textarea[data-grow]").forEach(function (box) {
    var grow = function () {
      box.style.height = "auto";
      box.style.height = (box.scrollHeight + box.offsetHeight - box.clientHeight) + "px";
    };
    box.addEventListener("input", grow);
    grow();
  });
});
