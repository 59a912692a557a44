// The open thread: day separators and routes, opening at the newest message, and the "New messages" pill.
// A thread reads like a chat: a separator where the day changes ("Today", "Yesterday", a date, in
// the reader's zone), and a message's channel and number only where they change.
// It opens at its newest message. Messages that arrive while the reader is at the bottom scroll
// into view; further up, a "New messages" pill appears instead of a jump. A page opened around
// one message (a search hit) opens there; a page of newer messages at its top.
var modules = window.smsInbox;
var NEAR_BOTTOM = 120;  // pixels: close enough to the end to count as reading the newest

function markDaysAndRoutes() {
  var list = document.getElementById("messages");
  if (!list) return;
  list.querySelectorAll(":scope > li.day").forEach(function (separator) { separator.remove(); });
  var previousDay = null, previousRoute = null;
  list.querySelectorAll(":scope > li.message").forEach(function (item) {
    var time = item.querySelector(".meta time");
    var moment = time ? new Date(time.getAttribute("datetime")) : null;
    if (moment && !isNaN(moment) && moment.toDateString() !== previousDay) {
      previousDay = moment.toDateString();
      previousRoute = null;  // a new day says again how the conversation goes
      var separator = document.createElement("li");
      separator.className = "day";
      separator.textContent = modules.times.dayLabel(moment);
      list.insertBefore(separator, item);
    }
    if (item.classList.contains("note")) return;  // a team's note leaves how the conversation goes as it was
    var route = item.querySelector(".meta .route");
    var key = route ? (item.classList.contains("out") ? "out " : "in ") + route.textContent.trim() : null;
    item.classList.toggle("same-route", key !== null && key === previousRoute);
    previousRoute = key;
  });
}

function scroller() {
  return document.getElementById("thread-scroll");
}

function atBottom() {
  var box = scroller();
  return !box || box.scrollHeight - (box.scrollTop + box.clientHeight) <= NEAR_BOTTOM;
}

function toBottom() {
  var box = scroller();
  if (box) box.scrollTop = box.scrollHeight;
}

function pill() {
  return document.getElementById("new-messages");
}

function placeReader(pane) {
  var box = scroller();
  if (!box) return;
  var around = pane.getAttribute("data-around");
  var target = around && document.getElementById(around);
  if (target) {
    target.scrollIntoView({ block: "center" });
  } else if (pane.getAttribute("data-start") === "top") {
    box.scrollTop = 0;
  } else {
    toBottom();
  }
}

// A conversation's pane has been swapped in (panes.js tells, before it places the focus).
function opened(pane) {
  markDaysAndRoutes();
  if ("scrollRestoration" in history) history.scrollRestoration = "manual";
  placeReader(pane);
  var box = scroller();
  box.addEventListener("scroll", function () {
    if (pill() && atBottom()) pill().hidden = true;
  }, { passive: true });
  var button = pill();
  if (button) {
    button.addEventListener("click", function () {
      button.hidden = true;
      toBottom();
      var last = document.getElementById("messages").lastElementChild;
      if (last) {
        last.setAttribute("tabindex", "-1");
        last.focus({ preventScroll: true });
      }
    });
  }
}

window.addEventListener("load", function () {
  var pane = document.getElementById("conversation-pane");
  if (pane && pane.hasAttribute("data-conversation") && !pane.hasAttribute("data-around") &&
      !pane.hasAttribute("data-start") && atBottom()) toBottom();
});

var wasAtBottom = true, countBefore = 0, earlierFromBottom = null;

// Before htmx swaps anything (swaps.js's one htmx:beforeSwap handler calls this first): where the
// reader is, before messages are added to the thread.
function beforeSwap(event) {
  if (event.detail.target && event.detail.target.id === "messages") {
    wasAtBottom = atBottom();
    countBefore = event.detail.target.querySelectorAll(":scope > li.message").length;
    var elt = event.detail.requestConfig && event.detail.requestConfig.elt;  // what asked
    // Earlier messages go above: remember the distance from the bottom, which they don't change.
    earlierFromBottom = elt && elt.hasAttribute && elt.hasAttribute("data-earlier") && scroller()
      ? scroller().scrollHeight - scroller().scrollTop : null;
  }
}

document.addEventListener("htmx:afterSwap", function (event) {
  if (!event.detail.target || event.detail.target.id !== "messages") return;
  markDaysAndRoutes();
  modules.times.showLocalTimes(event.detail.target);
  if (earlierFromBottom !== null) {
    scroller().scrollTop = scroller().scrollHeight - earlierFromBottom;
    earlierFromBottom = null;
    var more = document.querySelector("#earlier-pager a");
    (more || document.getElementById("conversation-heading")).focus({ preventScroll: true });
    return;
  }
  if (event.detail.target.querySelectorAll(":scope > li.message").length <= countBefore) return;  // only changes
  if (wasAtBottom) {
    toBottom();
  } else if (pill()) {
    pill().hidden = false;
  }
});

window.smsInbox.thread = { opened: opened, beforeSwap: beforeSwap };
