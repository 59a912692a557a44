// Mentions in a note: `@` in the box in Note mode offers the teammates it can mention (the box's
// `data-mentionable`, rendered by the server), narrowed by the letters typed after it. The box
// keeps the focus and points at the option chosen (aria-activedescendant) in a listbox it
// controls; arrow keys choose, Enter or Tab puts `@username ` in, Escape closes. A live region
// says how many there are. The server finds the mentions in the note's text itself: typing
// `@username` by hand mentions as well.
var MOST = 8;  // options shown at once: the first ones that fit what is typed

function inNoteMode(box) {
  var note = box.form && box.form.querySelector("input[name=mode][value=note]");
  return !!note && note.checked;
}

function enhanceMentions(root) {
  root.querySelectorAll("textarea[data-mentionable]").forEach(function (box) {
    var names = [];
    try {
      names = JSON.parse(box.getAttribute("data-mentionable")) || [];
    } catch (error) {
      names = [];
    }
    if (!names.length) return;
    offerTeammates(box, names);
  });
}

function offerTeammates(box, names) {
  var list = document.createElement("ul");
  list.id = "mention-suggestions";
  list.className = "mention-suggestions";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "Teammates to mention");
  list.hidden = true;
  box.insertAdjacentElement("afterend", list);
  var status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  box.form.appendChild(status);
  var token = null, shown = [], active = 0, controlled = null;

  function close() {
    if (list.hidden) return;
    list.hidden = true;
    token = null;
    box.removeAttribute("aria-activedescendant");
    // The saved replies' list (saved-replies.js) is the one the box controls otherwise.
    if (controlled) box.setAttribute("aria-controls", controlled);
    else box.removeAttribute("aria-controls");
    status.textContent = "";
  }

  function highlight(index) {
    active = index;
    shown.forEach(function (option, n) { option.setAttribute("aria-selected", n === index ? "true" : "false"); });
    box.setAttribute("aria-activedescendant", shown[index].id);
    shown[index].scrollIntoView({ block: "nearest" });
  }

  function pick(index) {
    var name = shown[index].getAttribute("data-name");
    var start = token.start, end = box.selectionStart;
    close();
    box.setRangeText("@" + name + " ", start, end, "end");
    box.dispatchEvent(new Event("input", { bubbles: true }));  // the draft follows
    box.focus();
  }

  box.addEventListener("input", function () {
    if (!inNoteMode(box)) return close();
    // `@` at the start or after anything but a letter, digit or _, then what is typed up to the cursor.
    var before = box.value.slice(0, box.selectionStart);
    var match = /(^|[^\p{L}\p{N}_])@([^@\n]{0,80})$/u.exec(before);
    if (!match) return close();
    var query = match[2].toLowerCase();
    var starts = [], contains = [];
    names.forEach(function (name) {
      var folded = name.toLowerCase();
      if (folded.indexOf(query) === 0) starts.push(name);
      else if (query && query.indexOf(" ") < 0 && folded.indexOf(query) > 0) contains.push(name);
    });
    var found = starts.concat(contains).slice(0, MOST);
    if (!found.length) return close();
    token = { start: before.length - match[2].length - 1 };
    list.textContent = "";
    shown = found.map(function (name, n) {
      var option = document.createElement("li");
      option.id = "mention-option-" + n;
      option.setAttribute("role", "option");
      option.setAttribute("data-name", name);
      option.textContent = "@" + name;
      option.addEventListener("mousedown", function (event) {
        event.preventDefault();  // keep the focus in the box
        pick(n);
      });
      list.appendChild(option);
      return option;
    });
    if (list.hidden) {
      controlled = box.getAttribute("aria-controls");
      list.hidden = false;
    }
    box.setAttribute("aria-autocomplete", "list");
    box.setAttribute("aria-controls", list.id);
    highlight(0);
    status.textContent = found.length + (found.length === 1 ? " teammate" : " teammates") +
      " to mention: arrow keys choose, Enter picks, Escape closes.";
  });

  // Registered after composer.js's and saved-replies.js's (base.html's order); Ctrl/Cmd+Enter is left to composer.js.
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
      event.stopPropagation();  // closes the list, not the conversation
      close();
    }
  });
  box.addEventListener("blur", close);
  box.form.addEventListener("change", function (event) {
    if (event.target.name === "mode") close();
  });
}

htmx.onLoad(enhanceMentions);
