/* Inside the chat iframe: the visitor token (sent as a header), the conversation with the
   loader page (origin-checked both ways), Enter to send, typing, the keyboard (focus into the
   message field on opening, Escape closes) and a polite live region that reads out the
   team's new messages.

   The token lives in this frame's localStorage. Browsers that block third-party storage
   (Chrome with third-party cookies blocked, private windows) refuse that; then the loader
   keeps it in the embedding site's own storage and hands it over by postMessage.

   A signed-in user of the site (handed over by the loader) is sent when the chat starts;
   if Lumnar verifies them, their visitor's token is kept in memory only, never stored: a
   page without that user (signed out, someone else at this computer) never finds it. */
(function () {
  "use strict";
  var body = document.body;
  // The words this script writes, in the chat's language (frame.html puts them in as data).
  var words = (function () {
    try { return JSON.parse(document.getElementById("widget-words").textContent); } catch (e) { return {}; }
  })();
  function word(key, fallback) { return typeof words[key] === "string" && words[key] ? words[key] : fallback; }
  var language = document.documentElement.lang || "en";

  // The chat's stream renders each event once for whoever watches, in English; this frame
  // puts in its own language's words as the fragments arrive (before the browser paints).
  function put(el, key) {
    var said = word(key, el.textContent);
    if (el.textContent !== said) { el.textContent = said; }  // unchanged: no new mutation
  }
  function streamedWords() {
    var seen = document.getElementById("seen");
    if (seen && seen.textContent) { put(seen, "seen"); }
    var typing = document.querySelector("#typing.active");
    if (typing) { put(typing, "typing"); }
    document.querySelectorAll("#messages > li.w-msg-visitor > .w-who").forEach(function (who) { put(who, "you"); });
    document.querySelectorAll("[data-word]").forEach(function (el) { put(el, el.getAttribute("data-word")); });
    // The satisfaction question (templates/widget/_rating.html), which the stream brings in.
    var rating = document.getElementById("rating");
    if (!rating) { return; }
    [["legend", "rating_question"], ["label[for=rating-comment]", "rating_comment"],
     ["button[type=submit]", "rating_send"]].forEach(function (pair) {
      var el = rating.querySelector(pair[0]);
      if (el) { put(el, pair[1]); }
    });
    rating.querySelectorAll("label.w-choice").forEach(function (label) {
      var input = label.querySelector("input");
      var text = label.lastChild;
      if (!input || !text || text.nodeType !== 3) { return; }
      var said = " " + word(input.value, text.nodeValue.trim());
      if (text.nodeValue !== said) { text.nodeValue = said; }
    });
  }
  if (language !== "en" && window.MutationObserver) {
    new MutationObserver(streamedWords).observe(body, { childList: true, subtree: true });
  }
  var storageKey = "lumnar-visitor:" + body.getAttribute("data-site-key");
  var allowed = (body.getAttribute("data-allowed-origins") || "").split(" ").filter(Boolean);
  var parentOrigin = null;
  // The page that framed us, if it is one of the site's: the browser's own word where it has
  // one (location.ancestorOrigins), else what the loader put in our address.
  var claimedParent = (function () {
    var a = location.ancestorOrigins;
    if (a && a.length && a[0] !== "null") { return a[0]; }
    try { return new URL(location.href).searchParams.get("host") || ""; } catch (e) { return ""; }
  })();
  var wantFocus = false;
  var pageUrl = "";
  var visible = true;
  var unread = 0;
  var started = false;
  var retried = false;
  var memoryToken = null;
  var user = null;  // the site's signed-in user, as the loader handed them over
  var verifiedToken = null;  // their visitor's token, once Lumnar verified them
  // The loader says so in our address when it has a user for us: then wait for them.
  var waitForUser = (function () {
    try { return new URL(location.href).searchParams.get("user") === "1"; } catch (e) { return false; }
  })();
  var storageOk = (function () {
    try { localStorage.setItem("lumnar-probe", "1"); localStorage.removeItem("lumnar-probe"); return true; }
    catch (e) { return false; }
  })();

  function token() {
    if (verifiedToken) { return verifiedToken; }
    return storageOk ? localStorage.getItem(storageKey) : memoryToken;
  }
  function keep(t) {
    memoryToken = t;
    if (storageOk) { localStorage.setItem(storageKey, t); } else { tellParent({ type: "lumnar:keep", token: t }); }
  }
  function forget() {
    if (verifiedToken) { verifiedToken = null; return; }  // the stored one may still be good
    memoryToken = null;
    if (storageOk) { localStorage.removeItem(storageKey); } else { tellParent({ type: "lumnar:keep", token: "" }); }
  }

  function tellParent(message) {
    if (parentOrigin) { window.parent.postMessage(message, parentOrigin); }
  }

  window.addEventListener("message", function (e) {
    // Only the page that framed us, and only if it is one of the site's allowed origins.
    if (e.source !== window.parent || allowed.indexOf(e.origin) === -1) { return; }
    parentOrigin = e.origin;
    var data = e.data || {};
    if (data.type === "lumnar:page" && typeof data.url === "string") {
      pageUrl = data.url.slice(0, 2000);
      if (!storageOk && typeof data.token === "string" && data.token) { memoryToken = data.token; }
      user = person(data.user);
      begin();
    } else if (data.type === "lumnar:user") {
      // Signed in or out while the page stays: the chat starts again as whoever it now is.
      user = person(data.user);
      verifiedToken = null;
      if (started) { start(); }
    } else if (data.type === "lumnar:visible") {
      visible = !!data.visible;
      wantFocus = visible && !!data.focus;
      if (visible) { unread = 0; tellParent({ type: "lumnar:unread", count: 0 }); }
      focusMessage();
    }
  });

  // Opening the chat puts the visitor in the message field, once it is there (the first time
  // the chat is still loading when the loader asks).
  function focusMessage() {
    if (!wantFocus || !visible) { return; }
    var field = document.getElementById("w-body");
    if (field) { wantFocus = false; field.focus(); }
  }

  // Screen readers hear the team's new messages (#announce is a polite live region), not the
  // whole chat each time it is loaded.
  function markAnnounced() {
    document.querySelectorAll("#messages > li").forEach(function (li) { li.setAttribute("data-announced", ""); });
  }

  function announceNew() {
    var region = document.getElementById("announce");
    var said = [];
    document.querySelectorAll("#messages > li:not([data-announced])").forEach(function (li) {
      li.setAttribute("data-announced", "");
      if (li.classList.contains("w-msg-visitor")) { return; }
      var who = li.querySelector(".w-who");
      var body = li.querySelector(".w-body");
      var files = Array.prototype.map.call(li.querySelectorAll(".w-file a, .w-file img"), function (f) {
        return f.getAttribute("alt") || f.textContent;
      }).filter(Boolean);
      var text = body ? body.textContent.trim() : word("sent", "sent %(files)s").replace("%(files)s", files.join(", "));
      said.push((who ? who.textContent.trim() + ": " : "") + text);
    });
    if (region && said.length) { region.textContent = said.join(" "); }
  }

  // The chat stays at its newest line (the question for an e-mail included) while the
  // visitor is there; one who scrolled up to read is left where they are.
  var main = document.getElementById("chat");
  var atEnd = true;
  main.addEventListener("scroll", function () {
    atEnd = main.scrollHeight - main.scrollTop - main.clientHeight < 48;
  });
  function keepAtEnd() { if (atEnd) { main.scrollTop = main.scrollHeight; } }

  // When the team is back (outside business hours): the server wrote it on the workspace's
  // clock, the visitor reads it on their own ("today", "tomorrow", a weekday, or the date a
  // week or more ahead: the server's rule, app/widget/hours.py reopening_text).
  var dateLocale = language === "en" ? "en-GB" : language;
  var weekday = new Intl.DateTimeFormat(dateLocale, { weekday: "long" });
  var dated = new Intl.DateTimeFormat(dateLocale, { weekday: "long", day: "numeric", month: "long" });
  var clock = new Intl.DateTimeFormat(dateLocale, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  function dayNumber(d) { return Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) / 86400000; }
  function onVisitorClock() {
    document.querySelectorAll("time[data-visitor-clock]").forEach(function (t) {
      var when = new Date(t.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      var days = dayNumber(when) - dayNumber(new Date());
      var day = days === 0 ? word("today", "today") : days === 1 ? word("tomorrow", "tomorrow") : (days < 7 ? weekday : dated).format(when);
      t.textContent = day + " " + clock.format(when) + " " + word("your_time", "(your time)");
      t.removeAttribute("data-visitor-clock");
    });
  }

  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail.target && e.detail.target.id === "chat") { markAnnounced(); atEnd = true; }
    onVisitorClock();
    keepAtEnd();
    focusMessage();
  });

  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && window.parent !== window && !e.defaultPrevented) {
      e.preventDefault();
      tellParent({ type: "lumnar:close" });
    }
  });

  document.addEventListener("htmx:configRequest", function (e) {
    var t = token();
    if (t) { e.detail.headers["X-Lumnar-Visitor"] = t; }
    if (e.detail.verb === "post" && pageUrl) { e.detail.parameters.page = pageUrl; }
  });

  // A token the server no longer accepts: start again, once, with a new visitor.
  document.addEventListener("htmx:beforeSwap", function (e) {
    if (e.detail.xhr.status === 401 && !retried) {
      retried = true;
      e.detail.shouldSwap = false;
      forget();
      start();
    }
  });

  function loadChat() {
    htmx.ajax("GET", body.getAttribute("data-chat-url"), { target: "#chat", swap: "innerHTML" });
  }

  function person(who) {
    if (!who || typeof who !== "object" || typeof who.id !== "string" || !who.id) { return null; }
    function text(v) { return typeof v === "string" ? v.slice(0, 400) : ""; }
    return { id: text(who.id), name: text(who.name), email: text(who.email), hash: text(who.hash) };
  }

  function start() {
    if (token() && !user) { loadChat(); return; }
    var form = new FormData();
    var headers = {};
    if (user) {
      ["id", "name", "email", "hash"].forEach(function (k) { form.append("user_" + k, user[k]); });
      // The anonymous visitor this browser already is: kept if the signature is refused.
      if (token()) { headers["X-Lumnar-Visitor"] = token(); }
    }
    fetch(body.getAttribute("data-visitors-url"), { method: "POST", body: form, headers: headers, credentials: "omit" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (d) {
        if (d.verified) { verifiedToken = d.token; } else { keep(d.token); }
        loadChat();
      })
      .catch(function () {
        document.getElementById("chat").textContent = word("cannot_start", "The chat cannot start right now. Please try again later.");
      });
  }

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && t.matches && t.matches("textarea[data-enter-sends]")) {
      e.preventDefault();
      if (t.form) { t.form.requestSubmit(); }
    }
  });

  // "Typing…" for the team, at most every 3 s; only once a conversation exists (before the
  // first message there is nobody to tell), and again right after each message is sent.
  var lastTyping = 0;
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "compose") { lastTyping = 0; }
  });
  document.addEventListener("input", function (e) {
    if (e.target.id !== "w-body" || !document.getElementById("live") || Date.now() - lastTyping < 3000) { return; }
    lastTyping = Date.now();
    htmx.ajax("POST", body.getAttribute("data-typing-url"), { swap: "none", source: e.target });
  });

  document.addEventListener("click", function (e) {
    if (e.target.closest("[data-close]")) { tellParent({ type: "lumnar:close" }); }
    if (e.target.closest("[data-reload-chat]")) { loadChat(); }
  });

  document.addEventListener("htmx:sseMessage", function () {
    announceNew();
    keepAtEnd();
    var last = document.querySelector("#messages > li:last-child");
    if (!visible && last && !last.classList.contains("w-msg-visitor") && !last.hasAttribute("data-counted")) {
      last.setAttribute("data-counted", "");
      unread += 1;
      tellParent({ type: "lumnar:unread", count: unread });
    }
  });

  function begin() {
    if (!started) { started = true; start(); }
  }

  if (window.parent === window) {
    begin();  // opened on its own, not framed
  } else {
    // Hello to the page that framed us, and only if it is one of the site's origins (a
    // greeting to any other origin is dropped by the browser, with a warning on the page).
    if (allowed.indexOf(claimedParent) !== -1) {
      window.parent.postMessage({ type: "lumnar:ready" }, claimedParent);
    }
    // The loader normally answers at once.
    if (storageOk && !waitForUser) { begin(); } else { setTimeout(begin, 3000); }
  }
})();
