/* The inbox's two panes (templates/chat/inbox.html): which row is open, keyboard shortcuts,
   and keeping the conversation on screen read.

   Shortcuts: j / k next and previous conversation, r reply, e resolve, / search, ? the list
   of them (a modal <dialog>). None fires while typing in a field (Escape leaves the reply or
   search field first), with Ctrl, Alt or Meta held, or with Shift held (but "?", which needs
   it on most keyboards).

   A conversation open on screen stays read. The server counts a visitor's message as unread
   when it stores it (one UPDATE in the chat writer's batch, for every agent alike) and renders
   the event once for all agents' streams, so it cannot know which agent is looking at what.
   The page that shows the conversation knows: when an event brings a visitor's message (or an
   unread row) for the conversation open here while the tab is visible, this page

   - shows that row without its unread mark and the unread badge one lower (the server's total
     counts this conversation, until it hears otherwise), so neither ever goes up here, and
   - asks the server once to mark it read (POST .../read, the same request as before). The
     server's "read" event then brings the row and the badge as the server counts them, to
     every agent, and this page stops adjusting.

   If that request fails, the page stops adjusting at once (the count then shows what the
   server says). A tab in the background leaves the count alone and marks the conversation
   read when it is looked at again. */
(function () {
  "use strict";

  function openSection() {
    return document.querySelector("#conversation-pane [data-conversation-id]");
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (err) {
      return "";
    }
  }

  // --- the open conversation stays read ------------------------------------------------------

  var adjusting = null; // the id of the open conversation whose read is on its way, or null

  // `adjust`: this page is hiding a raise of the unread count until the server's "read"
  // event; when the server had nothing to mark (its answer says "unchanged"), no such event
  // comes and there is nothing to hide any more.
  function markRead(section, adjust) {
    var id = section.getAttribute("data-conversation-id");
    if (adjust) { adjusting = id; }
    function stop() { if (adjusting === id) { adjusting = null; } }
    fetch(section.getAttribute("data-read-url"), {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" }
    }).then(function (answer) {
      if (!answer.ok || answer.headers.get("Lumnar-Read") === "unchanged") { stop(); }
    }, stop);
  }

  window.LumnarLive.transforms.push(function (content) {
    var section = openSection();
    if (!section || document.visibilityState !== "visible") { return; }
    var id = section.getAttribute("data-conversation-id");
    if (adjusting !== null && adjusting !== id) { adjusting = null; } // another one opened since
    var unreadHere = !!content.querySelector('[hx-swap-oob="beforeend:#messages-' + id + '"] > li.msg-visitor');
    content.querySelectorAll("li#conv-" + id + ".conv-row").forEach(function (row) {
      if (row.classList.contains("unread")) {
        unreadHere = true;
        row.classList.remove("unread");
        var badge = row.querySelector(".badge");
        if (badge) { badge.remove(); }
      } else if (adjusting === id) {
        adjusting = null; // the server has it read now: its numbers are right again
      }
    });
    if (unreadHere && adjusting === null) { markRead(section, true); }
    if (adjusting !== null) {
      var total = content.querySelector("#unread-count");
      if (total) {
        var n = Math.max(0, parseInt(total.getAttribute("data-unread") || "0", 10) - 1);
        total.setAttribute("data-unread", String(n));
        total.classList.toggle("zero", n === 0);
        total.textContent = n ? String(n) : "";
        if (n) {
          var words = document.createElement("span");
          words.className = "visually-hidden";
          words.textContent = " unread";
          total.appendChild(words);
        }
      }
    }
  });

  // Back on a tab that was in the background: what arrived meanwhile is read now (unless its
  // row in the list says nothing is unread).
  document.addEventListener("visibilitychange", function () {
    var section = openSection();
    if (!section || document.visibilityState !== "visible") { return; }
    var row = document.getElementById("conv-" + section.getAttribute("data-conversation-id"));
    if (!row || row.classList.contains("unread")) { markRead(section, false); }
  });

  // --- which row is open -----------------------------------------------------------------------

  function listLinks() {
    return Array.prototype.slice.call(document.querySelectorAll(
      "#inbox .conversations > li > a, #inbox .results > li > a"));
  }

  function linkPath(a) {
    return a.pathname.replace(/\/$/, "");
  }

  // The open conversation's row (or first search result) says so: aria-current and a mark.
  function markCurrent() {
    var section = openSection();
    var path = section ? "/dashboard/conversations/" + section.getAttribute("data-conversation-id") : null;
    var found = false;
    listLinks().forEach(function (a) {
      var current = !found && path !== null && linkPath(a) === path;
      if (current) {
        found = true;
        a.setAttribute("aria-current", "true");
      } else {
        a.removeAttribute("aria-current");
      }
    });
  }

  document.addEventListener("htmx:afterSettle", markCurrent);
  document.addEventListener("htmx:sseMessage", markCurrent);
  document.addEventListener("DOMContentLoaded", markCurrent);

  // After j or k opened a conversation: its row keeps the focus (or, on a phone, where the
  // list is out of sight, the conversation's heading), so the next key goes on from there.
  // Found again by its row's id: a live event may have replaced the row meanwhile.
  var focusAfterOpen = null;

  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.target.id !== "conversation-pane" || !focusAfterOpen) { return; }
    var row = document.getElementById(focusAfterOpen);
    var link = row && row.querySelector("a");
    focusAfterOpen = null;
    // The agent already went on (r put them in the reply field before the swap settled):
    // taking the focus back would send their next keys to the list.
    if (typingIn(document.activeElement)) { return; }
    if (link && link.offsetParent !== null) {
      link.focus();
      link.scrollIntoView({ block: "nearest" });
    } else {
      var heading = document.getElementById("conv-title");
      if (heading) { heading.focus(); }
    }
  });

  // --- keyboard shortcuts ------------------------------------------------------------------------

  function typingIn(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function step(by) {
    var links = listLinks();
    if (!links.length) { return; }
    var at = -1;
    links.forEach(function (a, i) { if (a.getAttribute("aria-current") === "true") { at = i; } });
    var next = at === -1 ? 0 : Math.min(links.length - 1, Math.max(0, at + by));
    if (next === at) { return; }
    var row = links[next].closest("li");
    if (!row.id) { row.id = "result-" + next; } // a search result's row
    focusAfterOpen = row.id;
    links[next].click();
  }

  function showShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) { dialog.showModal(); }
  }

  var keys = {
    j: function () { step(1); },
    k: function () { step(-1); },
    r: function () {
      var box = document.getElementById("reply-body");
      if (box) { box.focus(); }
    },
    e: function () {
      var section = openSection();
      var resolve = section && section.querySelector("button[data-resolve]");
      if (resolve) { resolve.click(); }
    },
    "/": function () {
      var search = document.getElementById("q");
      if (search) { search.focus(); search.select(); }
    },
    "?": showShortcuts
  };

  document.addEventListener("keydown", function (e) {
    if (!document.getElementById("inbox")) { return; } // not the inbox page
    if (e.defaultPrevented || e.isComposing || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var target = e.target;
    if (typingIn(target)) {
      if (e.key === "Escape" && (target.id === "reply-body" || target.id === "q")) { target.blur(); }
      return;
    }
    if (document.querySelector("dialog[open]")) { return; } // the dialog has its own keys
    if (e.shiftKey && e.key !== "?") { return; }
    var action = Object.prototype.hasOwnProperty.call(keys, e.key) ? keys[e.key] : null;
    if (!action) { return; }
    e.preventDefault();
    if (e.key !== "j" && e.key !== "k") { focusAfterOpen = null; } // a later key wins
    action();
  });

  document.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest("[data-open-shortcuts]")) { showShortcuts(); }
  });

  // --- label chips -----------------------------------------------------------------------------

  // A chip's colours come as data attributes (the CSP allows no style attribute); set through
  // the CSSOM, which it allows, on every chip that arrives: in the page, a pane, a stream event.
  function paintChips(root) {
    if (!root || !root.querySelectorAll) { return; }
    var chips = Array.prototype.slice.call(root.querySelectorAll("[data-label-colour]"));
    if (root.matches && root.matches("[data-label-colour]")) { chips.push(root); }
    chips.forEach(function (chip) {
      chip.style.backgroundColor = chip.getAttribute("data-label-colour");
      chip.style.color = chip.getAttribute("data-label-ink");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { paintChips(document); });
  document.addEventListener("htmx:load", function (e) { paintChips(e.target); });
  document.addEventListener("htmx:sseMessage", function () { paintChips(document); });

  // The button that opens the list works only with this script: shown by it.
  function revealButtons() {
    document.querySelectorAll("[data-open-shortcuts][hidden]").forEach(function (b) { b.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", revealButtons);
  document.addEventListener("htmx:afterSettle", revealButtons);
})();
