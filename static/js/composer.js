// The reply box: its SMS counter, Ctrl/Cmd+Enter sends, its draft, its height, its text kept when htmx renews it,
// and its two modes (Reply and Note: the placeholder and the description follow the mode chosen).
var modules = window.smsInbox;

function routeMaySendSms(form) {
  var route = form.elements.namedItem("route");
  if (!route) return true;
  if (!route.tagName) {  // radio buttons (the New message form): the one checked
    var checked = Array.prototype.find.call(route, function (radio) { return radio.checked; });
    return !!checked && checked.hasAttribute("data-sms");
  }
  var chosen = route.tagName === "SELECT" ? route.options[route.selectedIndex] : route;
  return !!chosen && chosen.hasAttribute("data-sms");
}

// The send guard: a reply says which is the newest message its writer had on screen
// (`seen_message_id`), and the server holds it if anything newer came. The box was drawn with
// what the page showed then; polls append messages since, so it is raised to the newest shown
// as the form goes (this runs before htmx reads the form). Never lowered: a held reply's box
// carries the newest message it showed in its notice, which the thread may not show yet.
function newestShown(seen) {
  var newest = Number(seen.value) || 0;
  document.querySelectorAll("#messages li.message[id^='message-']").forEach(function (message) {
    newest = Math.max(newest, Number(message.id.slice("message-".length)) || 0);
  });
  return newest;
}

document.addEventListener("submit", function (event) {
  var seen = event.target.elements && event.target.elements.namedItem("seen_message_id");
  if (!seen) return;
  var newest = newestShown(seen);
  if (newest) seen.value = String(newest);
}, true);

// A reply box renewed out of band (a contact's name saved, an opt-out changed) keeps what is
// typed in it, also where this browser keeps no drafts, and the newest message it had seen.
document.addEventListener("htmx:oobBeforeSwap", function (event) {
  if (event.detail.target.id !== "composer") return;
  var typed = event.detail.target.querySelector("textarea[name=text]");
  var fresh = event.detail.fragment.querySelector("textarea[name=text]");
  if (typed && fresh && typed.value && !fresh.value) fresh.textContent = typed.value;
  var seen = event.detail.target.querySelector("input[name=seen_message_id]");
  var freshSeen = event.detail.fragment.querySelector("input[name=seen_message_id]");
  if (seen && freshSeen && (Number(seen.value) || 0) > (Number(freshSeen.value) || 0)) {
    freshSeen.setAttribute("value", seen.value);
  }
  // ... and the mode it was in, where the renewed box offers it.
  var note = event.detail.target.querySelector("input[name=mode][value=note]");
  var freshNote = event.detail.fragment.querySelector("input[name=mode][value=note]");
  if (note && note.checked && freshNote) {
    freshNote.setAttribute("checked", "");
    var freshReply = event.detail.fragment.querySelector("input[name=mode][value=reply]");
    if (freshReply) freshReply.removeAttribute("checked");
  }
});

function showMode(box) {
  var note = box.form.querySelector("input[name=mode][value=note]");
  var mode = note && note.checked ? "note" : "reply";
  box.placeholder = box.getAttribute("data-placeholder-" + mode) || box.placeholder;
  var described = box.getAttribute("data-described-" + mode);
  if (described) box.setAttribute("aria-describedby", described);
}

function enhanceReplyBox(root) {
  root.querySelectorAll("textarea[data-composer]").forEach(function (box) {
    var counter = document.getElementById(box.getAttribute("data-sms-counter"));
    var update = function () {
      if (counter) counter.textContent = modules.smsLength.describeLength(box.value, routeMaySendSms(box.form));
    };
    box.addEventListener("input", update);
    box.form.addEventListener("change", function (event) {
      if (event.target.name === "route") update();
      if (event.target.name === "mode") showMode(box);
    });
    showMode(box);
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

// Send later: typing a date and time of one's own picks "On" among the choices.
document.addEventListener("input", function (event) {
  var picks = event.target.getAttribute && event.target.getAttribute("data-picks");
  var radio = picks && document.getElementById(picks);
  if (radio) radio.checked = true;
});
