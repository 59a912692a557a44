// Optional desktop notifications: asked for only when the person clicks, shown only while the tab is hidden.
// A notification says what the live region announces.
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
  var announcer = document.getElementById("announcer");
  if (!announcer) return;
  new MutationObserver(function () {
    var text = announcer.textContent.trim();
    if (text && document.hidden && setting("notify") === "on" && Notification.permission === "granted") {
      new Notification(text, { body: document.title, tag: "sms-inbox" });
    }
  }).observe(announcer, { childList: true, characterData: true, subtree: true });
}

window.smsInbox.shared.onReady(setUpNotifications);
