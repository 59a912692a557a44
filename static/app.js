// Our only script: local times, polling that pauses while the tab is hidden, a thread that
// opens at its newest message (with a "New messages" pill), and the reply box's SMS counter
// and Ctrl/Cmd+Enter.
(function () {
  "use strict";

  // Times in the reader's zone: today's as "14:05", other days with their date; the exact UTC
  // moment in the tooltip. The list (data-format="list") shows only the day for other days.
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
          : localTime(moment, element.getAttribute("data-format") === "list");
        element.title = element.getAttribute("datetime").replace("T", " ").replace("Z", " UTC");
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

  function describeLength(text) {
    var length = smsLength(text);
    var characters = Array.from(text).length;
    return characters + (characters === 1 ? " character" : " characters") + " · " + length.parts +
      (length.parts === 1 ? " SMS" : " SMS parts") + " (" + length.encoding + ")";
  }

  function enhanceReplyBox(root) {
    root.querySelectorAll("textarea[data-sms-counter]").forEach(function (box) {
      var counter = document.getElementById(box.getAttribute("data-sms-counter"));
      var update = function () { counter.textContent = describeLength(box.value); };
      box.addEventListener("input", update);
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

  // The thread opens at its newest message. Messages that arrive while the reader is at the
  // bottom scroll into view; further up, a "New messages" pill appears instead of a jump.
  var NEAR_BOTTOM = 120;  // pixels: close enough to the end to count as reading the newest

  function atBottom() {
    var page = document.scrollingElement || document.documentElement;
    return page.scrollHeight - (page.scrollTop + window.innerHeight) <= NEAR_BOTTOM;
  }

  function toBottom() {
    var page = document.scrollingElement || document.documentElement;
    page.scrollTop = page.scrollHeight;
  }

  function pill() {
    return document.getElementById("new-messages");
  }

  var wasAtBottom = true, countBefore = 0;

  function openThread() {
    var messages = document.getElementById("messages");
    if (!messages) return;
    markDaysAndRoutes();
    if (location.hash) return;
    if ("scrollRestoration" in history) history.scrollRestoration = "manual";
    toBottom();
    window.addEventListener("load", function () { if (window.scrollY === 0 || atBottom()) toBottom(); });
    var button = pill();
    if (button) {
      button.addEventListener("click", function () {
        button.hidden = true;
        toBottom();
        var last = messages.lastElementChild;
        if (last) {
          last.setAttribute("tabindex", "-1");
          last.focus({ preventScroll: true });
        }
      });
    }
    window.addEventListener("scroll", function () {
      if (pill() && atBottom()) pill().hidden = true;
    }, { passive: true });
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "messages") {
      wasAtBottom = atBottom();
      countBefore = event.detail.target.querySelectorAll(":scope > li.message").length;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== "messages") return;
    markDaysAndRoutes();
    if (event.detail.target.querySelectorAll(":scope > li.message").length <= countBefore) return;  // only changes
    if (wasAtBottom) {
      toBottom();
    } else if (pill()) {
      pill().hidden = false;
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", openThread);
  } else {
    openThread();
  }

  htmx.onLoad(showLocalTimes);
  htmx.onLoad(enhanceReplyBox);

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (document.hidden && event.detail.elt.hasAttribute("data-poll")) {
      event.preventDefault();
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      document.querySelectorAll("[data-poll]").forEach(function (poller) {
        htmx.trigger(poller, "poll-now");
      });
    }
  });
})();
