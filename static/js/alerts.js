/* Alerts while the dashboard is out of sight (app/dashboard/alerts.py): a desktop notification
   and one short sound, the moment the stream brings

   - a visitor's message that opens a new conversation (data-opens),
   - a visitor's message in a conversation assigned to this person (its inbox row's
     data-assignee, in the same event), or
   - a message whose data-mentions names this person (a teammate's private note),

   never for this person's own messages (data-author), nor for a site they muted. The stream
   is rendered once for the whole team, so the decision is made here, from the message's data
   attributes (templates/chat/_message.html) and this person's choices, which every dashboard
   page carries (#alert-prefs, templates/accounts/_alert_prefs.html).

   "Out of sight": the tab is hidden, or the window has not the focus (another program or
   window in front). The browser's permission is asked only when the person clicks "Turn on
   desktop notifications" (in the settings, or the line under the dashboard's navigation).
   Clicking a notification brings this tab forward with the conversation open.

   One notification per conversation at a time (its tag): a newer message replaces the one
   shown, so a stream catching up after the computer slept does not pile them up, and several
   dashboard tabs (each deciding alone) show one. The tone is played by one tab, once a second
   at most (a Web Lock). */
(function () {
  "use strict";
  var KEPT = 500;
  var alerted = []; // ids of the messages alerted for: an event may be applied twice (live.js)
  var audio = null;

  function prefs() {
    var el = document.getElementById("alert-prefs");
    if (!el) { return null; }
    return {
      el: el,
      user: el.getAttribute("data-user") || "",
      sound: el.getAttribute("data-sound") === "1",
      notify: el.getAttribute("data-notify") === "1",
      muted: words(el, "data-muted")
    };
  }

  function words(el, name) {
    return (el.getAttribute(name) || "").split(/\s+/).filter(Boolean);
  }

  function outOfSight() {
    return document.visibilityState !== "visible" || !document.hasFocus();
  }

  function canNotify() {
    return "Notification" in window && Notification.permission === "granted";
  }

  // What a streamed message means to this person: "new", "assigned", "mention" or null.
  function reason(li, content, p) {
    if (!p.user || li.getAttribute("data-author") === p.user) { return null; }
    if (p.muted.indexOf(li.getAttribute("data-site")) !== -1) { return null; }
    if (li.hasAttribute("data-mentions")) {
      return words(li, "data-mentions").indexOf(p.user) !== -1 ? "mention" : null;
    }
    if (li.getAttribute("data-sender") !== "visitor") { return null; }
    if (li.hasAttribute("data-opens")) { return "new"; }
    var row = content.querySelector("#conv-" + li.getAttribute("data-conversation") + " [data-assignee]");
    return row && row.getAttribute("data-assignee") === p.user ? "assigned" : null;
  }

  function textOf(el) {
    return el ? el.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function title(why, who) {
    if (why === "new") { return "New conversation: " + who; }
    if (why === "mention") { return who + " mentioned you"; }
    return who + " wrote";
  }

  function notify(li, why) {
    var conversation = parseInt(li.getAttribute("data-conversation"), 10);
    var body = textOf(li.querySelector(".body")) || (li.querySelector(".file") ? "Sent a file." : "");
    if (body.length > 160) { body = body.slice(0, 159) + "…"; }
    var shown;
    try {
      shown = new Notification(title(why, textOf(li.querySelector(".who")) || "A visitor"),
                               { body: body, tag: "lumnar-conversation-" + conversation });
    } catch (err) {
      return; // a browser that shows notifications only through a service worker (Android)
    }
    shown.addEventListener("click", function () {
      window.focus();
      shown.close();
      if (conversation) { window.location.assign("/dashboard/conversations/" + conversation); }
    });
  }

  // One short tone, made here (no sound file). A browser may keep audio suspended until the
  // person has used the page: started on the first click or key press (unlock), and resumed
  // before each tone, which then plays as soon as the browser lets it.
  function context() {
    var Make = window.AudioContext || window.webkitAudioContext;
    if (!audio && Make) { audio = new Make(); }
    if (audio && audio.state === "suspended" && audio.resume) {
      var resumed = audio.resume();
      if (resumed && resumed.catch) { resumed.catch(function () {}); }
    }
    return audio;
  }

  function tone() {
    var ctx = context();
    if (!ctx) { return; }
    var at = ctx.currentTime;
    var osc = ctx.createOscillator();
    var gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.setValueAtTime(880, at);
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.2, at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.25);
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(at);
    osc.stop(at + 0.3);
  }

  function sound() {
    if (!navigator.locks || !navigator.locks.request) { tone(); return; }
    navigator.locks.request("lumnar-alert-sound", { ifAvailable: true }, function (lock) {
      if (!lock) { return null; } // another tab has just played it
      tone();
      return new Promise(function (done) { setTimeout(done, 1000); });
    }).catch(function () {});
  }

  function remember(id) {
    if (alerted.indexOf(id) !== -1) { return false; }
    alerted.push(id);
    if (alerted.length > KEPT) { alerted.shift(); }
    return true;
  }

  // Each streamed event's fragment, before it is swapped in (and before live.js drops the
  // pieces this page has no place for: the alert does not depend on what page is open).
  window.LumnarLive.transforms.push(function (content) {
    var p = prefs();
    if (!p || (!p.sound && !p.notify)) { return; }
    content.querySelectorAll('[hx-swap-oob^="beforeend:#messages-"] > li[id^="msg-"]').forEach(function (li) {
      var why = reason(li, content, p);
      if (!why || !outOfSight() || !remember(li.id)) { return; }
      if (p.notify && canNotify()) { notify(li, why); }
      if (p.sound) { sound(); }
    });
  });

  // --- asking the browser, on a click only ---------------------------------------------------

  var STATES = {
    granted: "This browser shows Lumnar's notifications.",
    denied: "This browser blocks Lumnar's notifications. To allow them, open the site settings " +
            "(the icon left of the address) and allow notifications.",
    "default": "This browser has not been asked yet.",
    unsupported: "This browser cannot show notifications; the sound still plays."
  };

  function permission() {
    return "Notification" in window ? Notification.permission : "unsupported";
  }

  function showPermission() {
    var state = permission();
    var section = document.getElementById("alerts");
    if (section) {
      var line = section.querySelector("[data-alerts-state]");
      if (line) { line.textContent = STATES[state] || ""; }
      section.querySelectorAll("[data-alerts-ask]").forEach(function (p) { p.hidden = state !== "default"; });
      section.querySelectorAll("[data-alerts-try]").forEach(function (p) { p.hidden = false; });
    }
    // The line under the navigation: for someone who wants notifications and was never
    // asked, on every page but the settings (whose section has the same button).
    var p = prefs();
    if (p) { p.el.hidden = !(p.notify && state === "default" && !section); }
  }

  function ask() {
    if (!("Notification" in window)) { return; }
    var asked = Notification.requestPermission(showPermission);
    if (asked && asked.then) { asked.then(showPermission, showPermission); }
  }

  document.addEventListener("click", function (e) {
    var target = e.target.closest ? e.target : null;
    if (!target) { return; }
    if (target.closest("[data-alerts-permission]")) { ask(); }
    if (target.closest("[data-alerts-sound]")) { tone(); }
  });

  function unlock() {
    var p = prefs();
    if (p && p.sound) { context(); }
    document.removeEventListener("pointerdown", unlock, true);
    document.removeEventListener("keydown", unlock, true);
  }
  document.addEventListener("pointerdown", unlock, true);
  document.addEventListener("keydown", unlock, true);

  document.addEventListener("DOMContentLoaded", showPermission);
  document.addEventListener("htmx:afterSettle", showPermission);
})();
