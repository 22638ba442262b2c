/* The dashboard's site pages: "Copy" buttons (with a "Copied" confirmation) and the accent
   colour's live contrast check and chat button preview. Listeners sit on the document, so a
   form swapped in by htmx (a refused save) keeps working. */
(function () {
  "use strict";

  // --- copy buttons: data-copy names the field to copy, data-copied the status to fill ---
  function say(statusId, text) {
    var status = document.getElementById(statusId);
    if (!status) { return; }
    status.textContent = text;
    clearTimeout(status.lumnarTimer);
    status.lumnarTimer = setTimeout(function () { status.textContent = ""; }, 4000);
  }

  function copyBySelecting(field) {
    field.focus();
    field.select();
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("[data-copy]");
    if (!button) { return; }
    var field = document.getElementById(button.getAttribute("data-copy"));
    var statusId = button.getAttribute("data-copied");
    if (!field) { return; }
    var done = function () { say(statusId, "Copied"); };
    var fallback = function () {
      if (copyBySelecting(field)) { done(); } else { say(statusId, "Selected: press Ctrl+C (⌘C on a Mac) to copy."); }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, fallback);
    } else {
      fallback();
    }
  });

  // --- the accent colour: WCAG contrast of white text, the same sum as app/widget/colours.py ---
  function luminance(hex) {
    var channels = [1, 3, 5].map(function (i) {
      var c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  }

  function contrastWithWhite(hex) { return 1.05 / (luminance(hex) + 0.05); }

  function showContrast(input) {
    var out = document.getElementById(input.getAttribute("data-contrast-out"));
    var hex = input.value;
    if (!out || !/^#[0-9a-fA-F]{6}$/.test(hex)) { return; }
    var ratio = contrastWithWhite(hex);
    var shown = (Math.floor(ratio * 10) / 10).toFixed(1);
    var ok = ratio >= 4.5;
    out.textContent = "White text on this colour: contrast " + shown + ":1, " +
      (ok ? "easy to read (4.5:1 needed)." : "too hard to read: 4.5:1 is needed. Choose a darker colour.");
    out.classList.toggle("too-low", !ok);
    paintPreview(input);
  }

  function paintPreview(input) {
    // No id on the preview: htmx, swapping a refused form in, copies the style attribute of
    // the elements it finds by id, and that copy is an inline style the CSP refuses.
    var preview = document.querySelector("[data-preview-of='" + input.getAttribute("data-preview") + "']");
    if (!preview || !/^#[0-9a-fA-F]{6}$/.test(input.value)) { return; }
    // The page's own script sets these through the style object, which the CSP allows. A
    // colour too light for white text (refused on saving) is previewed with dark text, as
    // the chat button would show a colour saved before that check (app/widget/colours.py).
    preview.style.background = input.value;
    preview.style.color = contrastWithWhite(input.value) >= 4.5 ? "#ffffff" : "#1b1f24";
  }

  function showLabel(field) {
    document.querySelectorAll("[data-label-from='" + field.id + "']").forEach(function (preview) {
      preview.textContent = field.value.trim() || preview.getAttribute("data-default-label");
    });
  }

  document.addEventListener("input", function (e) {
    var t = e.target;
    if (t.matches && t.matches("input[data-contrast-out]")) { showContrast(t); }
    if (t.id && document.querySelector("[data-label-from='" + t.id + "']")) { showLabel(t); }
  });

  function paintAll() {
    document.querySelectorAll("input[data-contrast-out]").forEach(paintPreview);
  }
  document.addEventListener("DOMContentLoaded", paintAll);
  document.addEventListener("htmx:afterSettle", paintAll);
})();
