// The two panes, the list and the open conversation: which one shows, focus, the current row, the URL, the title.
// The conversation is the one htmx swaps in beside the list (`#conversation-pane`). On a phone
// one pane shows at a time; `has-conversation` on #inbox says which.
var modules = window.smsInbox;
var visible = modules.shared.visible;

function inbox() {
  return document.getElementById("inbox");
}

function openConversationId() {
  var pane = document.getElementById("conversation-pane");
  return pane ? pane.getAttribute("data-conversation") : null;
}

// The open conversation's row says so (aria-current), whichever pane or poll drew it.
function markCurrent() {
  var id = openConversationId();
  document.querySelectorAll(".conversation-list a.sender").forEach(function (link) {
    if (link.id === "conversation-link-" + id) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  });
}

var lastOpened = null;

function paneLoaded(pane) {
  var id = pane.getAttribute("data-conversation");
  if (inbox()) inbox().classList.toggle("has-conversation", !!id);
  markCurrent();
  if (!id) {
    // Back to the list: focus the row of the conversation that was open.
    var row = lastOpened && document.getElementById("conversation-link-" + lastOpened);
    if (row && (document.activeElement === document.body || !visible(document.activeElement))) row.focus();
    lastOpened = null;
    return;
  }
  lastOpened = id;
  modules.thread.opened(pane);
  // Focus stays where it was (a row in the list); when that is gone or hidden (a pager link
  // replaced with the pane, a phone's hidden list) the conversation's heading takes it.
  if (document.activeElement === document.body || !visible(document.activeElement)) {
    var heading = document.getElementById("conversation-heading");
    if (heading) heading.focus({ preventScroll: true });
  }
}

htmx.onLoad(function (root) {
  var pane = root.id === "conversation-pane" ? root : root.querySelector("#conversation-pane");
  if (pane) paneLoaded(pane);
});

document.addEventListener("htmx:afterSwap", function (event) {
  if (!event.detail.target) return;
  if (event.detail.target.id === "conversations" || event.detail.target.closest && event.detail.target.closest("#conversations")) {
    markCurrent();
  }
});

// A search typed beside an open conversation keeps the conversation in the URL (with the new
// search), so a reload or a shared link shows both again.
document.addEventListener("htmx:beforeHistoryUpdate", function (event) {
  var history = event.detail.history;
  var asker = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (!openConversationId() || !history || !asker || asker.id !== "q") return;
  var query = history.path.indexOf("?");
  history.path = location.pathname + (query >= 0 ? history.path.slice(query) : "");
});

// A list poll brings the inbox's title ("(3) Inbox"); with a conversation open it keeps its name
// in front, with the new count.
document.addEventListener("htmx:afterSettle", function () {
  var pane = document.getElementById("conversation-pane");
  var title = pane && pane.getAttribute("data-title");
  if (!title || document.title === title) return;
  var name = title.slice(0, title.indexOf(" · ") + 3);
  if (document.title.indexOf(name) !== 0) document.title = name + document.title;
});

// A contact's name saved in the header renames the page; the pane remembers the new title,
// so that list polls keep the new name in front.
htmx.onLoad(function (root) {
  var pane = document.getElementById("conversation-pane");
  if (pane && root.id === "contact" && root.hasAttribute("data-page-title")) {
    pane.setAttribute("data-title", root.getAttribute("data-page-title"));
    document.title = root.getAttribute("data-page-title");
  }
});
