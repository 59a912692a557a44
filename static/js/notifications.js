// Optional desktop notifications: asked for only when the person clicks, shown only while the tab is hidden.
// A notification says what the live region announces, or what the bell's newest notification is.
var setting = window.smsInbox.shared.setting;

function setUpNotifications() {
  var button = document.getElementById("notify");
  if (!button || !("Notification" in window)) return;
  var show = function () {
    var on = setting("notify") === "on" && Notification.permission === "granted";
    button.setAttribute("aria-pressed", on ? "true" : "false");  // a toggle: one name, its state
  };
  button.hidden = false;
  show();
  button.addEventListener("click", function () {
    if (button.getAttribute("aria-pressed") === "true") {
      setting("notify", null);
      show();
      return;
    }
    Notification.requestPermission().then(function (permission) {
      setting("notify", permission === "granted" ? "on" : null);
      show();
    });
  });
  var notify = function (text) {
    if (text && document.hidden && setting("notify") === "on" && Notification.permission === "granted") {
      // One tag: a message that both the live region and the bell tell of shows once, the bell's way.
      new Notification(text, { body: document.title, tag: "sms-inbox" });
    }
  };
  var announcer = document.getElementById("announcer");
  if (announcer) {
    new MutationObserver(function () { notify(announcer.textContent.trim()); })
      .observe(announcer, { childList: true, characterData: true, subtree: true });
  }
  // The bell (a poll swaps it in when the person's unread count changed): a rise is a new
  // notification of a kind the person chose on their account page, and says what it is.
  var bell = document.getElementById("bell");
  if (!bell) return;
  var count = function () {
    var shown = document.getElementById("showing-bell");
    return shown ? Number(shown.value) : 0;
  };
  var last = count();
  new MutationObserver(function () {
    var now = count();
    var link = document.querySelector("#bell a");
    if (now > last && link) notify(link.getAttribute("data-newest"));
    last = now;
  }).observe(bell.parentNode, { childList: true });
}

window.smsInbox.shared.onReady(setUpNotifications);
