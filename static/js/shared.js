// What the other modules share: their namespace (window.smsInbox), settings kept in this browser and small helpers.
// Each module is its own <script type="module"> with a fingerprinted URL (templates/base.html
// says why), so none imports another: each puts what others use under window.smsInbox.<name>,
// and they call it when an event comes, by which time every module has run.

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

function visible(element) {
  return !!element && element.getClientRects().length > 0;
}

// Set-up that needs the whole page. Modules run once it is parsed, so this is usually at once.
function onReady(setUp) {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
}

window.smsInbox = { shared: { setting: setting, visible: visible, onReady: onReady } };
