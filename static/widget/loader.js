/* Lumnar chat loader, on the customer's page.

   Before it shows anything it asks Lumnar (/widget/<key>/status) whether this page's origin
   is one of the site's allowed origins, and gets the chat button's label and colours (this
   file carries none). Not allowed: nothing is shown, and one console message names the origin
   to add. A site that waits for consent: nothing is shown and nothing stored until the page
   calls Lumnar.start() (or set window.Lumnar = {consented: true} before this file ran).

   A site whose users sign in may say who the user is: data-user-id, -name, -email and -hash
   on this script tag, window.Lumnar = {user: {id, name, email, hash}} before this file ran,
   or Lumnar.identify({...}) later (Lumnar.identify(null) when they sign out). The hash is the
   site's server's HMAC of the id; Lumnar checks it, this file only hands it to the frame.

   Then a launcher button; the chat iframe is created on first open only. Messages from the
   iframe are accepted only from Lumnar's origin and that very frame, and only while it shows
   Lumnar. Keyboard: opening moves focus into the chat's message field; Escape closes it and
   focus returns to the button. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__lumnarChat) { return; }
  window.__lumnarChat = true;
  var origin = new URL(script.src).origin;
  var key = script.getAttribute("data-site") || "";
  var here = location.origin;
  var storageKey = "lumnar-visitor:" + key;

  // The page's handle: Lumnar.start() after the visitor's consent. A page that got consent
  // before this file loaded says so with window.Lumnar = {consented: true}.
  var api = (window.Lumnar && typeof window.Lumnar === "object") ? window.Lumnar : {};
  window.Lumnar = api;
  var consented = api.consented === true;
  var user = person(api.user) || person({
    id: script.getAttribute("data-user-id"), name: script.getAttribute("data-user-name"),
    email: script.getAttribute("data-user-email"), hash: script.getAttribute("data-user-hash")
  });
  var settings = null;
  var button = null;
  var badge = null;
  var frame = null;
  var frameLoads = 0;
  var ready = false;
  var open = false;

  api.start = function () {
    consented = true;
    mount();
  };

  api.identify = function (who) {
    user = person(who);
    tell({ type: "lumnar:user", user: user });
  };

  // Ids are often numbers in the page's own code: the signature is over their text.
  function person(who) {
    if (!who || typeof who !== "object") { return null; }
    function text(v) { return (typeof v === "string" || typeof v === "number") ? String(v) : ""; }
    var found = { id: text(who.id), name: text(who.name), email: text(who.email), hash: text(who.hash) };
    return found.id ? found : null;
  }

  // Where the chat frame may not keep its own storage, we keep its visitor token here.
  function stored() { try { return localStorage.getItem(storageKey) || ""; } catch (e) { return ""; } }
  function store(t) {
    try { if (t) { localStorage.setItem(storageKey, t); } else { localStorage.removeItem(storageKey); } }
    catch (e) { /* storage off: the chat lasts as long as the page */ }
  }

  function tell(message) {
    // Only while the frame shows Lumnar: posting to a frame that went elsewhere would only
    // make the browser complain on the customer's console.
    if (ready && frame) { frame.contentWindow.postMessage(message, origin); }
  }

  function focusRing(show) {
    var theme = settings.theme;
    // Two rings, the text colour against the button and a dark one around it: visible on any
    // accent and on any page. The transparent outline shows in forced-colours modes.
    button.style.boxShadow = show
      ? "0 0 0 3px " + theme.text + ", 0 0 0 6px " + theme.ring + ", 0 4px 14px " + theme.shadow
      : "0 4px 14px " + theme.shadow;
    button.style.outline = show ? "3px solid transparent" : "none";
  }

  function keyboardFocus() {
    try { return button.matches(":focus-visible"); } catch (e) { return true; }
  }

  function toggle(show) {
    open = show;
    if (show && !frame) {
      frame = document.createElement("iframe");
      // The page's origin goes along, so that the frame greets only this page (not every
      // allowed origin: the others' greetings would each be a console warning here).
      // With a signed-in user the frame waits for them before it starts a chat.
      frame.src = origin + "/widget/" + encodeURIComponent(key) + "?host=" + encodeURIComponent(here) +
        (user ? "&user=1" : "");
      frame.title = "Chat";
      frame.style.cssText = "position:fixed;right:20px;bottom:84px;z-index:2147483000;width:370px;" +
        "max-width:calc(100vw - 40px);height:560px;max-height:calc(100vh - 110px);border:0;" +
        "border-radius:12px";
      frame.style.boxShadow = "0 8px 30px " + settings.theme.shadow;
      frame.addEventListener("load", function () {
        // A second load is the frame navigating (away from Lumnar, or reloading): until it
        // greets again it is not the chat.
        frameLoads += 1;
        if (frameLoads > 1) { ready = false; }
      });
      document.body.appendChild(frame);
    }
    if (frame) { frame.style.display = show ? "block" : "none"; }
    button.setAttribute("aria-expanded", String(show));
    if (show) {
      badge.style.display = "none";
      frame.focus();
    }
    tell({ type: "lumnar:visible", visible: show, focus: show });
  }

  function close() {
    toggle(false);
    button.focus();
  }

  function mount() {
    if (button || !settings || (settings.consent && !consented)) { return; }
    if (!document.body) { document.addEventListener("DOMContentLoaded", mount); return; }
    var theme = settings.theme;
    button = document.createElement("button");
    button.type = "button";
    button.textContent = settings.label;
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("data-lumnar-launcher", "");
    button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483000;padding:12px 18px;" +
      "border:0;border-radius:24px;font:600 15px system-ui,sans-serif;cursor:pointer";
    button.style.background = theme.accent;
    button.style.color = theme.text;
    badge = document.createElement("span");
    badge.style.cssText = "display:none;margin-left:8px;padding:0 7px;border-radius:10px";
    badge.style.background = theme.text;
    badge.style.color = theme.accent;
    button.appendChild(badge);
    focusRing(false);
    button.addEventListener("click", function () { toggle(!open); });
    button.addEventListener("focus", function () { focusRing(keyboardFocus()); });
    button.addEventListener("blur", function () { focusRing(false); });
    button.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && open) { e.preventDefault(); close(); }
    });
    window.addEventListener("message", listen);
    document.body.appendChild(button);
  }

  function listen(e) {
    if (e.origin !== origin || !frame || e.source !== frame.contentWindow) { return; }
    var data = e.data || {};
    if (data.type === "lumnar:ready") {
      ready = true;
      tell({ type: "lumnar:page", url: location.href, token: stored(), user: user });
      tell({ type: "lumnar:visible", visible: open, focus: open });
    } else if (!ready) {
      return;
    } else if (data.type === "lumnar:keep" && typeof data.token === "string") {
      store(data.token);
    } else if (data.type === "lumnar:close") {
      close();
    } else if (data.type === "lumnar:unread" && !open) {
      var n = parseInt(data.count, 10) || 0;
      badge.textContent = String(n);
      badge.style.display = n > 0 ? "inline-block" : "none";
    }
  }

  // The one question before anything shows. Sent without cookies; Lumnar reads the page's
  // origin from the browser's Origin header (`origin` is for a page on Lumnar's own origin,
  // whose same-origin request carries none).
  fetch(origin + "/widget/" + encodeURIComponent(key) + "/status?origin=" + encodeURIComponent(here),
        { credentials: "omit", cache: "no-store" })
    .then(function (r) { return r.json(); })
    .then(function (answer) {
      if (!answer.allowed) {
        console.error(answer.message);
        return;
      }
      settings = answer;
      mount();
    })
    .catch(function () { /* Lumnar unreachable: the browser has said so; show nothing */ });
})();
