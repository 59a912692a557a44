// Our only script: local times, polling that pauses while the tab is hidden, and the reply
// box's SMS counter and Ctrl/Cmd+Enter.
(function () {
  "use strict";

  function showLocalTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (!isNaN(moment)) {
        element.textContent = moment.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
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
