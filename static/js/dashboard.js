/* Dashboard behaviour that plain HTML cannot express: the unread count in the tab title,
   Enter to send, saved replies, "typing…" notices and marking an open conversation read. */
(function () {
  "use strict";
  var baseTitle = document.title.replace(/^\(\d+\)\s*/, "");

  function updateTitle() {
    var badge = document.getElementById("unread-count");
    var n = badge ? parseInt(badge.getAttribute("data-unread") || "0", 10) : 0;
    document.title = (n > 0 ? "(" + n + ") " : "") + baseTitle;
  }

  document.addEventListener("htmx:sseMessage", updateTitle);

  // Enter sends, Shift+Enter makes a new line.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && t.matches && t.matches("textarea[data-enter-sends]")) {
      e.preventDefault();
      if (t.form) { t.form.requestSubmit(); }
    }
  });

  // Saved replies: pick from the list, or type /shortcut followed by a space.
  document.addEventListener("change", function (e) {
    var select = e.target;
    if (!select.matches("select[data-saved-replies]") || !select.value) { return; }
    var box = document.getElementById("reply-body");
    box.value = box.value ? box.value + "\n" + select.value : select.value;
    select.value = "";
    box.focus();
  });

  var lastTyping = 0;
  document.addEventListener("input", function (e) {
    var box = e.target;
    if (box.id !== "reply-body") { return; }
    var m = box.value.match(/(^|\s)\/([a-z0-9_-]+) $/i);
    if (m) {
      var option = document.querySelector('select[data-saved-replies] option[data-shortcut="' + m[2].toLowerCase() + '"]');
      if (option) { box.value = box.value.slice(0, box.value.length - m[2].length - 2) + option.value; }
    }
    var now = Date.now();
    var form = box.form;
    if (form && now - lastTyping > 3000) {
      lastTyping = now;
      htmx.ajax("POST", form.getAttribute("data-typing-url"), { swap: "none", source: form });
    }
  });

  // A visitor message arriving in the conversation on screen is read at once.
  document.addEventListener("htmx:sseMessage", function () {
    var section = document.querySelector("[data-conversation-id]");
    if (!section || document.visibilityState !== "visible") { return; }
    var last = section.querySelector(".messages > li:last-child");
    if (last && last.classList.contains("msg-visitor") && !last.hasAttribute("data-read")) {
      last.setAttribute("data-read", "");
      htmx.ajax("POST", "/dashboard/conversations/" + section.getAttribute("data-conversation-id") + "/read", { swap: "none", source: section });
    }
  });
})();
