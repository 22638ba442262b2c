/* The inbox's two panes (templates/chat/inbox.html): the list's row of the conversation open
   in the right-hand pane says so (aria-current, and a mark), whichever way it was opened and
   whatever the stream has done to the list since. */
(function () {
  "use strict";

  function openSection() {
    return document.querySelector("#conversation-pane [data-conversation-id]");
  }

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

})();
