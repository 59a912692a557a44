// The thread header's "More" menu (a <details>): read/unread joins it on a phone, and it closes by itself.
// With read/unread in the menu a phone's header is one row. The menu closes on Escape, on a
// click elsewhere and once an action in it is sent.
var PHONE = window.matchMedia("(max-width: 48rem)");

function placeReadState() {
  var menu = document.getElementById("more-actions-menu");
  var readState = document.getElementById("read-state");
  if (!menu || !readState) return;
  if (PHONE.matches && readState.parentElement !== menu) {
    menu.insertBefore(readState, menu.firstChild);
  } else if (!PHONE.matches && readState.parentElement === menu) {
    menu.parentElement.parentElement.insertBefore(readState, menu.parentElement);
  }
}

function closeMenu(menu, focusSummary) {
  if (!menu || !menu.open) return;
  menu.open = false;
  if (focusSummary) menu.querySelector("summary").focus();
}

htmx.onLoad(function (root) {
  if (root.id === "conversation-pane" || root.querySelector("#more-actions") || root.id === "read-state") placeReadState();
});
PHONE.addEventListener("change", placeReadState);

// The header's menus: More, and Snooze (templates/inbox/_snooze.html), which behaves the same.
var MENUS = ["more-actions", "snooze-menu"];

function openMenus() {
  return MENUS.map(function (id) { return document.getElementById(id); }).filter(function (menu) { return menu && menu.open; });
}

document.addEventListener("click", function (event) {
  openMenus().forEach(function (menu) {
    if (!menu.contains(event.target)) closeMenu(menu, false);
  });
});

document.addEventListener("submit", function (event) {
  var menu = event.target.closest && event.target.closest("#more-actions, #snooze-menu");
  if (menu) closeMenu(menu, true);
});

// Registered before keyboard.js's keydown listener (base.html loads this module first), which
// then sees the Escape as handled and leaves the conversation open.
document.addEventListener("keydown", function (event) {
  var menu = openMenus()[0];
  if (event.key !== "Escape" || !menu) return;
  event.preventDefault();  // closes the menu, not the conversation
  closeMenu(menu, true);
});
