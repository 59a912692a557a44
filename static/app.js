// Our only script: local times, two panes, polling (slower while the tab is hidden), a thread that
// opens at its newest message (with a "New messages" pill), and the reply box's SMS counter
// and Ctrl/Cmd+Enter, drafts, keyboard shortcuts and optional notifications.
(function () {
  "use strict";

  // Times in the reader's zone: today's as "14:05", other days with their date; the exact UTC
  // moment in the tooltip. The list (#conversations) shows only the day for other days.
  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  function localTime(moment, listOnly) {
    var now = new Date();
    var yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
    var time = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (sameDay(moment, now)) return time;
    var day = sameDay(moment, yesterday) ? "Yesterday"
      : moment.getFullYear() === now.getFullYear()
        ? moment.toLocaleDateString([], { day: "numeric", month: "short" })
        : moment.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" });
    return listOnly ? day : day + ", " + time;
  }

  function showLocalTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (!isNaN(moment)) {
        // In a thread the day separators say the day: a message says only its time.
        element.textContent = element.closest("#messages")
          ? moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
          : localTime(moment, !!element.closest("#conversations"));
        var utc = function (value) { return value.replace("T", " ").replace("Z", " UTC"); };
        var sent = element.getAttribute("data-sent");
        // The list and the thread show when a message arrived; the provider's clock may differ.
        // Other times (the audit trail's events, sessions) are simply the moment.
        var arrival = !!element.closest("#messages, #conversations");
        element.title = (arrival ? "Arrived " : "At ") + utc(element.getAttribute("datetime")) +
          (sent && sent.slice(0, 16) !== element.getAttribute("datetime").slice(0, 16) ? "; sent " + utc(sent) + " by the provider's clock" : "");
      }
    });
  }

  // SMS length as Messente bills a text sent as typed (autoconvert off); app/sms_length.py
  // counts the same way, and both are checked against tests/vectors/sms-length.json.
  var GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡" +
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXTENSION = "^{}\\[]~|€\f";

  function smsLength(text) {
    var gsm = [], ucs = [];  // each character's size in either encoding
    for (var character of text) {
      gsm.push(GSM_BASIC.indexOf(character) >= 0 ? 1 : GSM_EXTENSION.indexOf(character) >= 0 ? 2 : 0);
      ucs.push(character.length);  // UTF-16 units: 2 for a character outside the BMP (most emoji)
    }
    // One character outside GSM-7 makes the whole message UCS-2.
    if (gsm.indexOf(0) >= 0) {
      return { encoding: "UCS-2", units: text.length, parts: parts(ucs, 70, 67) };
    }
    return { encoding: "GSM-7", units: sum(gsm), parts: parts(gsm, 160, 153) };
  }

  function sum(sizes) {
    return sizes.reduce(function (total, size) { return total + size; }, 0);
  }

  // A part never ends inside a character (an escape and its extension character, or the two
  // halves of a surrogate pair): one that doesn't fit starts the next part.
  function parts(sizes, single, perPart) {
    var units = sum(sizes);
    if (units === 0) return 0;
    if (units <= single) return 1;
    var count = 1, used = 0;
    sizes.forEach(function (size) {
      if (used + size > perPart) {
        count += 1;
        used = 0;
      }
      used += size;
    });
    return count;
  }

  window.smsLength = smsLength;

  // SMS parts only when the reply may go by SMS (the chosen route is SMS or falls back to it,
  // `data-sms`): WhatsApp and Viber carry a text whole.
  function describeLength(text, bySms) {
    var characters = Array.from(text).length;
    var described = characters + (characters === 1 ? " character" : " characters");
    if (!bySms) return described;
    var length = smsLength(text);
    return described + " · " + length.parts + (length.parts === 1 ? " SMS" : " SMS parts") + " (" + length.encoding + ")";
  }

  function routeMaySendSms(form) {
    var route = form.elements.namedItem("route");
    if (!route) return true;
    var chosen = route.tagName === "SELECT" ? route.options[route.selectedIndex] : route;
    return !!chosen && chosen.hasAttribute("data-sms");
  }

  // What is typed in a conversation's reply box stays in this browser until it is sent: across
  // switching conversations, a reload and a forced re-login of the same person. Drafts are
  // kept per person (`data-user` on <body>) and conversation; logging out removes the person's
  // own, and any page of a signed-in person removes everyone else's (left by a session that
  // expired instead of logging out), so one person's draft never reaches another's reply box.
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

  // A reply box renewed out of band (a contact's name saved, an opt-out changed) keeps what is
  // typed in it, also where this browser keeps no drafts.
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    if (event.detail.target.id !== "composer") return;
    var typed = event.detail.target.querySelector("textarea[name=text]");
    var fresh = event.detail.fragment.querySelector("textarea[name=text]");
    if (typed && fresh && typed.value && !fresh.value) fresh.textContent = typed.value;
  });

  function enhanceReplyBox(root) {
    root.querySelectorAll("textarea[data-sms-counter]").forEach(function (box) {
      var counter = document.getElementById(box.getAttribute("data-sms-counter"));
      var update = function () { counter.textContent = describeLength(box.value, routeMaySendSms(box.form)); };
      box.addEventListener("input", update);
      box.form.addEventListener("change", function (event) {
        if (event.target.name === "route") update();
      });
      keepDraft(box);
      box.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          box.form.requestSubmit();
        }
      });
      update();
    });
  }

  // A thread reads like a chat: a separator where the day changes ("Today", "Yesterday", a
  // date, in the reader's zone), and a message's channel and number only where they change.
  function dayLabel(moment) {
    var now = new Date();
    if (sameDay(moment, now)) return "Today";
    if (sameDay(moment, new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1))) return "Yesterday";
    return moment.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long",
      year: moment.getFullYear() === now.getFullYear() ? undefined : "numeric" });
  }

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
        separator.textContent = dayLabel(moment);
        list.insertBefore(separator, item);
      }
      var route = item.querySelector(".meta .route");
      var key = route ? (item.classList.contains("out") ? "out " : "in ") + route.textContent.trim() : null;
      item.classList.toggle("same-route", key !== null && key === previousRoute);
      previousRoute = key;
    });
  }

  // Two panes: the list, and the conversation htmx swaps in beside it (`#conversation-pane`).
  // On a phone one shows at a time; `has-conversation` on #inbox says which.
  function inbox() {
    return document.getElementById("inbox");
  }

  function openConversationId() {
    var pane = document.getElementById("conversation-pane");
    return pane ? pane.getAttribute("data-conversation") : null;
  }

  function visible(element) {
    return !!element && element.getClientRects().length > 0;
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

  // The thread opens at its newest message. Messages that arrive while the reader is at the
  // bottom scroll into view; further up, a "New messages" pill appears instead of a jump.
  // A page opened around one message (a search hit) opens there; a page of newer messages at
  // its top.
  var NEAR_BOTTOM = 120;  // pixels: close enough to the end to count as reading the newest

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

  window.addEventListener("load", function () {
    var pane = document.getElementById("conversation-pane");
    if (pane && pane.hasAttribute("data-conversation") && !pane.hasAttribute("data-around") &&
        !pane.hasAttribute("data-start") && atBottom()) toBottom();
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

  var wasAtBottom = true, countBefore = 0, earlierFromBottom = null;

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") {
      wasAtBottom = atBottom();
      countBefore = event.detail.target.querySelectorAll(":scope > li.message").length;
      var elt = event.detail.requestConfig && event.detail.requestConfig.elt;  // what asked
      // Earlier messages go above: remember the distance from the bottom, which they don't change.
      earlierFromBottom = elt && elt.hasAttribute && elt.hasAttribute("data-earlier") && scroller()
        ? scroller().scrollHeight - scroller().scrollTop : null;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target) return;
    if (event.detail.target.id === "conversations" || event.detail.target.closest && event.detail.target.closest("#conversations")) {
      markCurrent();
    }
    if (event.detail.target.id !== "messages") return;
    markDaysAndRoutes();
    showLocalTimes(event.detail.target);
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

  htmx.onLoad(showLocalTimes);
  htmx.onLoad(enhanceReplyBox);

  // The reply box grows with what is typed (style.css's max-height stops it): CSS does it where
  // the browser knows `field-sizing`; elsewhere its height follows the text here.
  htmx.onLoad(function (root) {
    if (window.CSS && CSS.supports("field-sizing", "content")) return;
    root.querySelectorAll("textarea[data-grow]").forEach(function (box) {
      var grow = function () {
        box.style.height = "auto";
        box.style.height = (box.scrollHeight + box.offsetHeight - box.clientHeight) + "px";
      };
      box.addEventListener("input", grow);
      grow();
    });
  });

  // The thread header's "More" menu (a <details>): on a phone, read/unread joins it, so the
  // header is one row. It closes on Escape, on a click elsewhere and once an action in it is sent.
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

  document.addEventListener("click", function (event) {
    var menu = document.getElementById("more-actions");
    if (menu && menu.open && !menu.contains(event.target)) closeMenu(menu, false);
  });

  document.addEventListener("submit", function (event) {
    var menu = event.target.closest && event.target.closest("#more-actions");
    if (menu) closeMenu(menu, true);
  });

  document.addEventListener("keydown", function (event) {
    var menu = document.getElementById("more-actions");
    if (event.key !== "Escape" || !menu || !menu.open) return;
    event.preventDefault();  // closes the menu, not the conversation
    closeMenu(menu, true);
  });

  // Saved replies in the reply box: picked from its menu, or by typing `/` and a few letters of
  // a title (arrow keys choose, Enter or Tab inserts, Escape closes). The menu's links work
  // without JavaScript too (the reply box opens with the text); here they insert where the cursor is.
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

  // A contact's name saved in the header renames the page; the pane remembers the new title,
  // so that list polls keep the new name in front.
  htmx.onLoad(function (root) {
    var pane = document.getElementById("conversation-pane");
    if (pane && root.id === "contact" && root.hasAttribute("data-page-title")) {
      pane.setAttribute("data-title", root.getAttribute("data-page-title"));
      document.title = root.getAttribute("data-page-title");
    }
  });

  // The view filters (channel, our number) apply as soon as one is chosen.
  htmx.onLoad(function (root) {
    root.querySelectorAll("form[data-submit-on-change]").forEach(function (form) {
      form.addEventListener("change", function () { form.requestSubmit(); });
      form.querySelectorAll("[data-without-script]").forEach(function (button) { button.hidden = true; });
    });
  });

  // A hidden tab polls, slowly (so the title's count and notifications keep up); shown again,
  // it asks at once.
  var HIDDEN_POLL_MS = 30000;
  var lastHiddenPoll = {};

  document.addEventListener("htmx:beforeRequest", function (event) {
    var poller = event.detail.elt;
    if (!document.hidden || !poller.hasAttribute("data-poll")) return;
    var now = Date.now();
    if (now - (lastHiddenPoll[poller.id] || 0) < HIDDEN_POLL_MS) {
      event.preventDefault();
    } else {
      lastHiddenPoll[poller.id] = now;
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      // The first poll of a hidden tab waits a whole slow interval.
      var now = Date.now();
      document.querySelectorAll("[data-poll]").forEach(function (poller) { lastHiddenPoll[poller.id] = now; });
    } else {
      document.querySelectorAll("[data-poll]").forEach(function (poller) {
        htmx.trigger(poller, "poll-now");
      });
    }
  });

  // A poll's news waits while a pointer is pressed: replacing what is under it between the press
  // and the release would lose the click. The next poll brings the news (a poller's cursor moves
  // only when its answer is swapped in). One poll at most per press, so a release never seen
  // (outside the window) holds back no more.
  var pressed = false;
  document.addEventListener("pointerdown", function () { pressed = true; }, true);
  ["pointerup", "pointercancel"].forEach(function (type) {
    document.addEventListener(type, function () { pressed = false; }, true);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var asker = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!pressed || !event.detail.shouldSwap || !asker || !asker.hasAttribute("data-poll")) return;
    pressed = false;
    event.preventDefault();
  });

  // Settings kept in this browser.
  function setting(name, value) {
    try {
      if (value === undefined) return window.localStorage.getItem("sms-inbox:" + name);
      if (value === null) {
        window.localStorage.removeItem("sms-inbox:" + name);
      } else {
        window.localStorage.setItem("sms-inbox:" + name, value);
      }
    } catch (error) {
      return null;  // storage off (a private window's quota): the feature simply forgets
    }
    return null;
  }

  // Optional desktop notifications: asked for only when the person clicks, shown only while
  // the tab is hidden, with what the live region announces.
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

  // Keyboard: `/` search, `j`/`k` through the list, Enter opens (a link does), Esc back to the
  // list, `?` the help. Single keys never act while typing, and can be turned off.
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

  // The export dialog: a workbook is built whole before its download starts, which can take a
  // minute or more; say so once Download is pressed.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-building-notice]") : null;
    if (!button || !button.form) return;
    var notice = document.getElementById(button.getAttribute("data-building-notice"));
    if (notice) notice.hidden = !button.form.querySelector('input[name="format"][value="xlsx"]:checked');
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { setUpDrafts(); setUpNotifications(); setUpHelp(); });
  } else {
    setUpDrafts();
    setUpNotifications();
    setUpHelp();
  }
})();
