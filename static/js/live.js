/* Lumnar live streams.
   1. If the browser ever opens a brand-new EventSource (after a fatal error that the built-in
      reconnect cannot recover from), start it after the last event this page received, so
      nothing is lost or shown twice. Loaded before htmx's SSE extension, which then uses this
      function to open its streams.
   2. The "lumnar-live" extension drops the out-of-band pieces of a streamed event that have
      no place on the current page (the inbox row while a conversation is open, and so on),
      instead of letting htmx report each one as an error, and never adds a message that is
      on the page already.
   3. A pane swapped in by htmx (the inbox's list or conversation) was rendered at some event
      number (its data-live-after); the stream kept going meanwhile, and events for elements
      that were not on the page yet had nowhere to go. The last events received are kept, and
      those after the pane's number are applied again once it is in place. Applying an event
      twice changes nothing: pieces replace elements by id, and messages are not added twice.
   Other scripts may add transforms (LumnarLive.transforms): functions given each streamed
   event's parsed fragment before it is swapped in (static/js/inbox.js). */
(function () {
  "use strict";
  var lastIds = {};
  var sources = [];
  var recent = []; // [{id, data}], oldest first: the last events the stream delivered
  var KEPT = 200;

  window.LumnarLive = { transforms: [] };

  function key(url) { return url.split("?")[0]; }

  htmx.createEventSource = function (url) {
    var last = lastIds[key(url)];
    if (last) {
      url = url.replace(/([?&])after=\d*/, "$1after=" + last);
    }
    var source = new EventSource(url, { withCredentials: true });
    source.addEventListener("update", function (e) {
      if (!e.lastEventId || e.lumnarReplay) { return; }
      lastIds[key(url)] = e.lastEventId;
      var id = parseInt(e.lastEventId, 10);
      if (!recent.length || id > recent[recent.length - 1].id) {
        recent.push({ id: id, data: e.data });
        if (recent.length > KEPT) { recent.shift(); }
      }
    });
    sources.push(source);
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
      var content = tpl.content;
      window.LumnarLive.transforms.forEach(function (transform) { transform(content); });
      var pieces = content.querySelectorAll("[hx-swap-oob]");
      for (var i = 0; i < pieces.length; i++) {
        var selector = targetOf(pieces[i]);
        if (selector === "#" || !document.querySelector(selector)) { pieces[i].remove(); }
      }
      // A message the page shows already (rendered into a pane after it was sent, or an
      // event applied again) is not added a second time.
      content.querySelectorAll('[hx-swap-oob^="beforeend:"] > li[id^="msg-"]').forEach(function (li) {
        if (document.getElementById(li.id)) { li.remove(); }
      });
      return tpl.innerHTML;
    }
  });

  // 3. above: a pane rendered at event N gets the kept events after N, in order, through the
  // stream's own path (the SSE extension's listener: the same transforms and swaps).
  document.addEventListener("htmx:afterSwap", function (e) {
    var swapped = e.target;
    if (!swapped || swapped === document.body || !swapped.querySelector) { return; }
    var marked = swapped.matches("[data-live-after]") ? [swapped]
      : Array.prototype.slice.call(swapped.querySelectorAll("[data-live-after]"));
    if (!marked.length) { return; }
    var after = Math.min.apply(null, marked.map(function (el) {
      return parseInt(el.getAttribute("data-live-after"), 10) || 0;
    }));
    var open = sources.filter(function (s) { return s.readyState !== EventSource.CLOSED; });
    recent.forEach(function (event) {
      if (event.id <= after) { return; }
      open.forEach(function (source) {
        var again = new MessageEvent("update", { data: event.data, lastEventId: String(event.id) });
        again.lumnarReplay = true;
        source.dispatchEvent(again);
      });
    });
  });
})();
