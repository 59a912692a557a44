// The one htmx:beforeSwap handler: the thread notes where the reader is, then a poll's news may wait for a press to end.
// One handler, so the order is written down here rather than left to the order modules load in.
var modules = window.smsInbox;

document.addEventListener("htmx:beforeSwap", function (event) {
  modules.thread.beforeSwap(event);
  modules.polling.holdWhilePressed(event);
});
