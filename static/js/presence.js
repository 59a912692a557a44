// Presence: the thread's poll says this page is viewing its conversation, and whether the reply box is being typed in.
// The server shows it to the others who have the conversation open ("alice is typing…", in
// #presence, templates/inbox/_presence.html). No loop of its own: the thread's poller carries it.
// A hidden tab says nothing, so it drops out of the others' line when its last word expires;
// typing stops counting TYPING_MS after the last keystroke, or at once when the reply is sent.
var TYPING_MS = 5000;
var lastInput = 0, typedIn = null;  // when, and in which conversation

function paneConversation() {
  var pane = document.getElementById("conversation-pane");
  return pane ? pane.getAttribute("data-conversation") : null;
}

document.addEventListener("input", function (event) {
  if (!event.target.closest || !event.target.closest("#composer")) return;
  lastInput = Date.now();
  typedIn = paneConversation();
});

document.addEventListener("submit", function (event) {
  if (event.target.closest && event.target.closest("#composer")) lastInput = 0;
}, true);

document.addEventListener("htmx:configRequest", function (event) {
  if (event.detail.elt.id !== "thread-poller" || document.hidden) return;
  var typing = typedIn === paneConversation() && Date.now() - lastInput < TYPING_MS;
  event.detail.parameters.viewing = "1";
  event.detail.parameters.typing = typing ? "1" : "0";
});
