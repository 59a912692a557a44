// Our only script: local times, and polling that pauses while the tab is hidden.
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

  htmx.onLoad(showLocalTimes);

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
