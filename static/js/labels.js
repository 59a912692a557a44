// The label menus (the thread header's, the list's filter): <details> disclosures that close on
// Escape (focus back on their button) and on a click elsewhere. The header's menu stays open while
// labels are ticked in it: htmx swaps it open, and gives focus back to the button pressed.
var MENUS = ["label-menu", "label-filter"];

function openMenus() {
  return MENUS.map(function (id) { return document.getElementById(id); }).filter(function (menu) { return menu && menu.open; });
}

document.addEventListener("click", function (event) {
  openMenus().forEach(function (menu) {
    if (!menu.contains(event.target)) menu.open = false;
  });
});

// Registered before keyboard.js's keydown listener (base.html loads this module first), which
// then sees the Escape as handled and leaves the conversation open.
document.addEventListener("keydown", function (event) {
  if (event.key !== "Escape") return;
  openMenus().forEach(function (menu) {
    event.preventDefault();
    menu.open = false;
    menu.querySelector("summary").focus();
  });
});
