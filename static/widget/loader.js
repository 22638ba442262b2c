/* Lumnar chat loader: a launcher button; the chat iframe is created on first open only.
   Messages from the iframe are accepted only from Lumnar's origin and that very frame. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__lumnarChat) { return; }
  window.__lumnarChat = true;
  var origin = new URL(script.src).origin;
  var key = script.getAttribute("data-site") || "";
  var frame = null;
  var ready = false;
  var open = false;
  var storageKey = "lumnar-visitor:" + key;

  // Where the chat frame may not keep its own storage, we keep its visitor token here.
  function stored() { try { return localStorage.getItem(storageKey) || ""; } catch (e) { return ""; } }
  function store(t) {
    try { if (t) { localStorage.setItem(storageKey, t); } else { localStorage.removeItem(storageKey); } }
    catch (e) { /* storage off: the chat lasts as long as the page */ }
  }

  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "Chat with us";
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("data-lumnar-launcher", "");
  button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483000;padding:12px 18px;" +
    "border:0;border-radius:24px;background:#4338ca;color:#fff;font:600 15px system-ui,sans-serif;" +
    "box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer";
  var badge = document.createElement("span");
  badge.style.cssText = "display:none;margin-left:8px;padding:0 7px;border-radius:10px;background:#fff;color:#4338ca";
  button.appendChild(badge);

  function tell(message) {
    if (ready) { frame.contentWindow.postMessage(message, origin); }
  }

  function toggle(show) {
    open = show;
    if (show && !frame) {
      frame = document.createElement("iframe");
      frame.src = origin + "/widget/" + encodeURIComponent(key);
      frame.title = "Chat";
      frame.style.cssText = "position:fixed;right:20px;bottom:84px;z-index:2147483000;width:370px;" +
        "max-width:calc(100vw - 40px);height:560px;max-height:calc(100vh - 110px);border:0;" +
        "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.3);background:#fff";
      document.body.appendChild(frame);
    }
    if (frame) { frame.style.display = show ? "block" : "none"; }
    button.setAttribute("aria-expanded", String(show));
    tell({ type: "lumnar:visible", visible: show });
    if (show) { badge.style.display = "none"; }
  }

  button.addEventListener("click", function () { toggle(!open); });

  window.addEventListener("message", function (e) {
    if (e.origin !== origin || !frame || e.source !== frame.contentWindow) { return; }
    var data = e.data || {};
    if (data.type === "lumnar:ready") {
      ready = true;
      tell({ type: "lumnar:page", url: location.href, token: stored() });
      tell({ type: "lumnar:visible", visible: open });
    } else if (data.type === "lumnar:keep" && typeof data.token === "string") {
      store(data.token);
    } else if (data.type === "lumnar:close") {
      toggle(false);
      button.focus();
    } else if (data.type === "lumnar:unread" && !open) {
      var n = parseInt(data.count, 10) || 0;
      badge.textContent = String(n);
      badge.style.display = n > 0 ? "inline-block" : "none";
    }
  });

  function mount() { document.body.appendChild(button); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
