// Times in the reader's zone: <time> elements, and the thread's day separators' labels.

// Today's as "14:05", other days with their date; the exact UTC moment in the tooltip. The list
// (#conversations) shows only the day for other days.
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
    // A time in the team's zone (a scheduled message's "Tue 09:00") stays as the server wrote it.
    if (element.hasAttribute("data-team-time")) return;
    var moment = new Date(element.getAttribute("datetime"));
    if (!isNaN(moment)) {
      // In a thread the day separators say the day: a message says only its time.
      // A moment to come (data-moment: when a snooze ends) always says its day and time.
      var planned = element.hasAttribute("data-moment");
      element.textContent = element.closest("#messages") && !planned
        ? moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : localTime(moment, !planned && !!element.closest("#conversations"));
      var utc = function (value) { return value.replace("T", " ").replace("Z", " UTC"); };
      var sent = element.getAttribute("data-sent");
      // The list and the thread show when a message arrived; the provider's clock may differ.
      // Other times (the audit trail's events, sessions) are simply the moment.
      var arrival = !planned && !!element.closest("#messages, #conversations");
      element.title = (arrival ? "Arrived " : "At ") + utc(element.getAttribute("datetime")) +
        (sent && sent.slice(0, 16) !== element.getAttribute("datetime").slice(0, 16) ? "; sent " + utc(sent) + " by the provider's clock" : "");
    }
  });
}

// A day separator in a thread: "Today", "Yesterday" or the date.
function dayLabel(moment) {
  var now = new Date();
  if (sameDay(moment, now)) return "Today";
  if (sameDay(moment, new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1))) return "Yesterday";
  return moment.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long",
    year: moment.getFullYear() === now.getFullYear() ? undefined : "numeric" });
}

// The snooze menu's note that its times are the team's: shown only where the reader's zone is another.
function showZoneNotes(root) {
  var mine = Intl.DateTimeFormat().resolvedOptions().timeZone;
  root.querySelectorAll("[data-team-zone]").forEach(function (note) {
    note.hidden = note.getAttribute("data-team-zone") === mine;
  });
}

htmx.onLoad(showLocalTimes);
htmx.onLoad(showZoneNotes);

window.smsInbox.times = { showLocalTimes: showLocalTimes, dayLabel: dayLabel };
