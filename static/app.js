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
    var septets = 0;
    for (var character of text) {
      if (GSM_BASIC.indexOf(character) >= 0) {
        septets += 1;
      } else if (GSM_EXTENSION.indexOf(character) >= 0) {
        septets += 2;
      } else {  // one character outside GSM-7 makes the whole message UCS-2, in UTF-16 units
        return { encoding: "UCS-2", units: text.length, parts: parts(text.length, 70, 67) };
      }
    }
    return { encoding: "GSM-7", units: septets, parts: parts(septets, 160, 153) };
  }

  function parts(units, single, perPart) {
    return units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / perPart);
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
