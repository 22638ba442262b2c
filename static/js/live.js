/* Lumnar live streams.
   1. If the browser ever opens a brand-new EventSource (after a fatal error that the built-in
      reconnect cannot recover from), start it after the last event this page received, so
      nothing is lost or shown twice. Loaded before htmx's SSE extension, which then uses this
      function to open its streams.
   2. The "lumnar-live" extension drops the out-of-band pieces of a streamed event that have
      no place on the current page (the inbox row while a conversation is open, and so on),
      instead of letting htmx report each one as an error. */
(function () {
  "use strict";
  var lastIds = {};

  function key(url) { return url.split("?")[0]; }

  htmx.createEventSource = function (url) {
    var last = lastIds[key(url)];
    if (last) {
      url = url.replace(/([?&])after=\d*/, "$1after=" + last);
    }
    var source = new EventSource(url, { withCredentials: true });
    source.addEventListener("update", function (e) {
      if (e.lastEventId) { lastIds[key(url)] = e.lastEventId; }
    });
    return source;
  };

  function targetOf(el) {
    var spec = el.getAttribute("hx-swap-oob");
    var colon = spec.indexOf(":");
    return colon === -1 ? "#" + el.id : spec.slice(colon + 1);
  }

  htmx.defineExtension("lumnar-live", {
    transformResponse: function (text) {
      var tpl = document.createElement("template");
      tpl.innerHTML = text;
      var pieces = tpl.content.querySelectorAll("[hx-swap-oob]");
      for (var i = 0; i < pieces.length; i++) {
        var selector = targetOf(pieces[i]);
        if (selector === "#" || !document.querySelector(selector)) { pieces[i].remove(); }
      }
      return tpl.innerHTML;
    }
  });
})();
