// Saved replies in the reply box: picked from its menu, or by typing `/` and a few letters of a title.
// Arrow keys choose, Enter or Tab inserts, Escape closes. The menu's links work without
// JavaScript too (the reply box opens with the text); here they insert where the cursor is.
function insertIntoReplyBox(box, text, start, end) {
  box.setRangeText(text, start, end, "end");
  box.dispatchEvent(new Event("input", { bubbles: true }));  // the counter and the draft follow
  box.focus();
}

function enhanceSavedReplies(root) {
  root.querySelectorAll(".saved-replies-menu").forEach(function (menu) {
    var box = menu.parentElement.querySelector("textarea[name=text]");
    if (!box) return;
    var choices = Array.from(menu.querySelectorAll("a[data-saved-text]"));
    menu.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-saved-text]");
      if (!link) return;
      event.preventDefault();
      menu.open = false;
      insertIntoReplyBox(box, link.getAttribute("data-saved-text"), box.selectionStart, box.selectionEnd);
    });
    suggestOnSlash(box, choices);
  });
}

function suggestOnSlash(box, choices) {
  var list = document.createElement("ul");
  list.id = "saved-reply-suggestions";
  list.className = "saved-reply-suggestions";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Saved replies");
  list.hidden = true;
  box.insertAdjacentElement("afterend", list);
  box.setAttribute("aria-autocomplete", "list");
  box.setAttribute("aria-controls", list.id);
  var token = null, shown = [], active = 0;

  function close() {
    list.hidden = true;
    token = null;
    box.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    shown.forEach(function (item, n) { item.option.setAttribute("aria-selected", n === index ? "true" : "false"); });
    box.setAttribute("aria-activedescendant", shown[index].option.id);
    shown[index].option.scrollIntoView({ block: "nearest" });
  }

  function pick(index) {
    var chosen = shown[index];
    var start = token.start, end = box.selectionStart;
    close();
    insertIntoReplyBox(box, chosen.link.getAttribute("data-saved-text"), start, end);
  }

  box.addEventListener("input", function () {
    // `/` at the start or after a space, then letters up to the cursor: "/thank".
    var before = box.value.slice(0, box.selectionStart);
    var match = /(^|\s)\/([^\s\/]*)$/.exec(before);
    if (!match) return close();
    var query = match[2].toLowerCase();
    var starts = [], contains = [];
    choices.forEach(function (link) {
      var title = link.getAttribute("data-saved-title").toLowerCase();
      if (title.indexOf(query) === 0) starts.push(link);
      else if (query && title.indexOf(query) > 0) contains.push(link);
    });
    var found = starts.concat(contains);
    if (!found.length) return close();
    token = { start: before.length - match[2].length - 1 };
    list.textContent = "";
    shown = found.map(function (link, n) {
      var option = document.createElement("li");
      option.id = "saved-reply-option-" + n;
      option.setAttribute("role", "option");
      var title = document.createElement("strong");
      title.textContent = link.getAttribute("data-saved-title");
      var preview = document.createElement("span");
      preview.className = "saved-preview";
      preview.textContent = " " + link.getAttribute("data-saved-text");
      option.append(title, preview);
      option.addEventListener("mousedown", function (event) {
        event.preventDefault();  // keep the focus in the reply box
        pick(n);
      });
      list.appendChild(option);
      return { link: link, option: option };
    });
    list.hidden = false;
    highlight(0);
  });

  // Registered after composer.js's (base.html loads that module first); Ctrl/Cmd+Enter is left to it.
  box.addEventListener("keydown", function (event) {
    if (list.hidden) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      highlight((active + (event.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length);
    } else if ((event.key === "Enter" && !event.ctrlKey && !event.metaKey) || event.key === "Tab") {
      event.preventDefault();
      event.stopImmediatePropagation();
      pick(active);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  });
  box.addEventListener("blur", close);
}

htmx.onLoad(enhanceSavedReplies);
