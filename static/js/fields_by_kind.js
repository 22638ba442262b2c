/* A form whose <select name="kind"> decides which fields apply shows only those: each
   wrapper lists its kinds in data-kinds. Forms swapped in by htmx (a refused save, a replace
   form) are set up as they arrive. Without JavaScript every field shows. */
(function () {
  "use strict";

  function apply(select) {
    var form = select.form;
    if (!form) { return; }
    form.querySelectorAll("[data-kinds]").forEach(function (wrapper) {
      var wanted = wrapper.getAttribute("data-kinds").split(/\s+/).indexOf(select.value) !== -1;
      wrapper.hidden = !wanted;
    });
  }

  function setUp(root) {
    root.querySelectorAll("form select[name='kind']").forEach(apply);
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.name === "kind") { apply(target); }
  });
  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:load", function (event) { setUp(event.target); });
}());
