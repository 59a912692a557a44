// Drafts: what is typed in a conversation's reply box stays in this browser until it is sent.
// It stays across switching conversations, a reload and a forced re-login of the same person.
// Drafts are kept per person (`data-user` on <body>) and conversation; logging out removes the
// person's own, and any page of a signed-in person removes everyone else's (left by a session
// that expired instead of logging out), so one person's draft never reaches another's reply box.
var setting = window.smsInbox.shared.setting;
var DRAFT = "draft:";

function currentUser() {
  return document.body ? document.body.getAttribute("data-user") : null;
}

function draftKeys() {
  var keys = [];
  try {
    for (var n = 0; n < window.localStorage.length; n++) {
      var key = window.localStorage.key(n);
      if (key && key.indexOf("sms-inbox:" + DRAFT) === 0) keys.push(key.slice("sms-inbox:".length));
    }
  } catch (error) {
    return [];  // storage off: there are no drafts
  }
  return keys;
}

// Drafts whose owner `keep` says to remove; `keep(user)` is true for the ones to leave. A key
// without a person ("draft:<conversation>") is whose nobody knows: it always goes.
function removeDrafts(keep) {
  draftKeys().forEach(function (name) {
    var parts = name.slice(DRAFT.length).split(":");
    if (parts.length < 2 || !keep(parts[0])) setting(name, null);
  });
}

// Called by composer.js for each reply box, before its counter first counts.
function keepDraft(box) {
  var pane = box.closest("[data-conversation]");
  var user = currentUser();
  if (!pane || !user) return;
  var name = DRAFT + user + ":" + pane.getAttribute("data-conversation");
  var save = function () { setting(name, box.value.trim() ? box.value : null); };
  if (box.value) {
    save();  // the server gave the text back (a refused reply): that is the draft now
  } else if (setting(name)) {
    box.value = setting(name);
  }
  box.addEventListener("input", save);
  box.form.addEventListener("submit", function () { setting(name, null); });
}

function setUpDrafts() {
  var user = currentUser();
  if (user) removeDrafts(function (owner) { return owner === user; });
  document.querySelectorAll("form[data-logout]").forEach(function (form) {
    form.addEventListener("submit", function () {
      removeDrafts(function (owner) { return owner !== user; });
    });
  });
}

window.smsInbox.shared.onReady(setUpDrafts);

window.smsInbox.drafts = { keepDraft: keepDraft };
