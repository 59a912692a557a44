// Keyboard shortcuts: `/` search, `j`/`k` through the list, `l` the conversation's labels, Esc back to the list, `?` the help dialog.
// Enter opens (a link does). Single keys never act while typing, and can be turned off.
var setting = window.smsInbox.shared.setting;
var visible = window.smsInbox.shared.visible;

function typing(element) {
  return !!element && (element.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName));
}

function singleKeysOn() {
  return setting("single-key-shortcuts") !== "off";
}

function openHelp() {
  var dialog = document.getElementById("keyboard-help");
  if (!dialog || dialog.open) return;
  document.getElementById("single-key-shortcuts").checked = singleKeysOn();
  dialog.showModal();
}

function moveInList(step) {
  var links = Array.prototype.filter.call(document.querySelectorAll(".conversation-list a.sender"), visible);
  if (!links.length) return;
  var index = links.indexOf(document.activeElement);
  if (index < 0) index = links.findIndex(function (link) { return link.hasAttribute("aria-current"); });
  var next = index < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, index + step));
  links[next].focus();
  links[next].scrollIntoView({ block: "nearest" });
}

// `l`: the open conversation's label menu, its first choice focused.
function openLabelMenu(event) {
  var menu = document.getElementById("label-menu");
  if (!menu || !visible(menu)) return;
  event.preventDefault();
  menu.open = true;
  var first = menu.querySelector(".menu button, .menu a");
  if (first) first.focus();
}

document.addEventListener("keydown", function (event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  var dialog = document.getElementById("keyboard-help");
  if ((dialog && dialog.open) || typing(document.activeElement)) return;
  if (event.key === "Escape") {
    var back = document.getElementById("back-to-list");
    if (back) {
      event.preventDefault();
      back.click();
    }
    return;
  }
  if (!singleKeysOn()) return;
  if (event.key === "/") {
    var search = document.getElementById("q");
    if (search && visible(search)) {
      event.preventDefault();
      search.focus();
      search.select();
    }
  } else if (event.key === "?") {
    event.preventDefault();
    openHelp();
  } else if (event.key === "l") {
    openLabelMenu(event);
  } else if (event.key === "j" || event.key === "k") {
    event.preventDefault();
    moveInList(event.key === "j" ? 1 : -1);
  }
});

function setUpHelp() {
  document.querySelectorAll("[data-open-dialog='keyboard-help']").forEach(function (button) {
    button.addEventListener("click", openHelp);
  });
  var toggle = document.getElementById("single-key-shortcuts");
  if (toggle) {
    toggle.addEventListener("change", function () {
      setting("single-key-shortcuts", toggle.checked ? null : "off");
    });
  }
}

window.smsInbox.shared.onReady(setUpHelp);
