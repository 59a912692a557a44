// Polling: slower while the tab is hidden, at once when it is shown again, and held back while a pointer is pressed.

// A hidden tab polls, slowly (so the title's count and notifications keep up); shown again,
// it asks at once.
var HIDDEN_POLL_MS = 30000;
var lastHiddenPoll = {};

document.addEventListener("htmx:beforeRequest", function (event) {
  var poller = event.detail.elt;
  if (!document.hidden || !poller.hasAttribute("data-poll")) return;
  var now = Date.now();
  if (now - (lastHiddenPoll[poller.id] || 0) < HIDDEN_POLL_MS) {
    event.preventDefault();
  } else {
    lastHiddenPoll[poller.id] = now;
  }
});

document.addEventListener("visibilitychange", function () {
  if (document.hidden) {
    // The first poll of a hidden tab waits a whole slow interval.
    var now = Date.now();
    document.querySelectorAll("[data-poll]").forEach(function (poller) { lastHiddenPoll[poller.id] = now; });
  } else {
    document.querySelectorAll("[data-poll]").forEach(function (poller) {
      htmx.trigger(poller, "poll-now");
    });
  }
});

// A poll's news waits while a pointer is pressed: replacing what is under it between the press
// and the release would lose the click. The next poll brings the news (a poller's cursor moves
// only when its answer is swapped in). One poll at most per press, so a release never seen
// (outside the window) holds back no more.
var pressed = false;
document.addEventListener("pointerdown", function () { pressed = true; }, true);
["pointerup", "pointercancel"].forEach(function (type) {
  document.addEventListener(type, function () { pressed = false; }, true);
});

// Called by swaps.js's one htmx:beforeSwap handler.
function holdWhilePressed(event) {
  var asker = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (!pressed || !event.detail.shouldSwap || !asker || !asker.hasAttribute("data-poll")) return;
  pressed = false;
  event.preventDefault();
}

window.smsInbox.polling = { holdWhilePressed: holdWhilePressed };
