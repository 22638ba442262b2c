/* Dashboard behaviour that plain HTML cannot express: the unread count in the tab title,
   Enter to send, saved replies and "typing…" notices. The inbox's panes, shortcuts and
   read state are static/js/inbox.js. */
(function () {
  "use strict";
  var PREFIX = /^\(\d+\)\s*/;
  var baseTitle = document.title.replace(PREFIX, "");

  function updateTitle() {
    var badge = document.getElementById("unread-count");
    var n = badge ? parseInt(badge.getAttribute("data-unread") || "0", 10) : 0;
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
  }

  document.addEventListener("htmx:sseMessage", updateTitle);
  // A pane swapped in by htmx brings its own title (the conversation's visitor).
  document.addEventListener("htmx:afterSettle", function () {
    baseTitle = document.title.replace(PREFIX, "");
    updateTitle();
  });

  // Enter sends, Shift+Enter makes a new line.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && t.matches && t.matches("textarea[data-enter-sends]")) {
      e.preventDefault();
      if (t.form) { t.form.requestSubmit(); }
    }
  });

  // --- saved replies -------------------------------------------------------------------------
  // The picker (templates/chat/_saved_reply_picker.html) asks for matches as the agent types;
  // each match is a button. Here: put a match's text into the reply, and let the arrow keys
  // go from the search field through the matches and back.

  function insertReply(text) {
    var box = document.getElementById("reply-body");
    if (!box) { return; }
    box.value = box.value ? box.value.replace(/\s*$/, "") + "\n" + text : text;
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function options() {
    return Array.prototype.slice.call(document.querySelectorAll("#saved-results .saved-option"));
  }

  document.addEventListener("click", function (e) {
    var option = e.target.closest && e.target.closest("#saved-results .saved-option");
    if (!option) { return; }
    insertReply(option.getAttribute("data-insert"));
    var find = document.querySelector("[data-saved-find]");
    if (find) { find.value = ""; }
    document.getElementById("saved-results").replaceChildren();
  });

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    var list = options();
    if (t.matches && t.matches("[data-saved-find]")) {
      if (e.key === "ArrowDown" && list.length) { e.preventDefault(); list[0].focus(); }
      // Enter with matches shown takes the first one.
      if (e.key === "Enter" && list.length) { e.preventDefault(); list[0].click(); }
      return;
    }
    var at = list.indexOf(t);
    if (at === -1) { return; }
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      var next = at + (e.key === "ArrowDown" ? 1 : -1);
      if (next < 0) {
        document.querySelector("[data-saved-find]").focus();
      } else if (next < list.length) {
        list[next].focus();
      }
    } else if (e.key === "Escape") {
      e.preventDefault();
      document.querySelector("[data-saved-find]").focus();
    }
  });

  // In the reply, "/shortcut" and a space puts that saved reply's text in its place.
  var SHORTCUT = /(^|\s)\/([a-z0-9_-]+) $/i;

  function expandShortcut(box) {
    var m = box.value.match(SHORTCUT);
    if (!m) { return; }
    var typed = m[0].slice(m[1].length);
    var url = "/dashboard/saved-replies/shortcut?name=" + encodeURIComponent(m[2].toLowerCase());
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (reply) {
        // Only if the reply still ends with what was typed (the agent may have gone on).
        if (!reply || !box.value.endsWith(typed)) { return; }
        box.value = box.value.slice(0, box.value.length - typed.length) + reply.body;
      }, function () {});
  }

  var lastTyping = 0;
  document.addEventListener("input", function (e) {
    var box = e.target;
    if (box.id !== "reply-body") { return; }
    expandShortcut(box);
    var now = Date.now();
    var form = box.form;
    if (form && now - lastTyping > 3000) {
      lastTyping = now;
      htmx.ajax("POST", form.getAttribute("data-typing-url"), { swap: "none", source: form });
    }
  });
})();
