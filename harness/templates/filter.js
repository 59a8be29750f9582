(function () {
  "use strict";
  var controls = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  function matches(element, chosen) {
    return Object.keys(chosen).every(function (key) {
      var value = element.getAttribute("data-" + key);
      return value === null || value.split("|").indexOf(chosen[key]) >= 0;
    });
  }
  function apply() {
    var chosen = {};
    controls.forEach(function (select) { if (select.value) { chosen[select.getAttribute("data-filter")] = select.value; } });
    var items = document.querySelectorAll("[data-item]");
    items.forEach(function (element) { element.hidden = !matches(element, chosen); });
    var groups = document.querySelectorAll("[data-group]");
    groups.forEach(function (group) { group.hidden = group.querySelector("[data-item]:not([hidden])") === null; });
    var units = groups.length ? groups : items;
    var shown = Array.prototype.filter.call(units, function (unit) { return !unit.hidden; }).length;
    var counter = document.getElementById("filter-count");
    if (counter) { counter.textContent = shown + " of " + units.length + " shown"; }
  }
  controls.forEach(function (select) { select.addEventListener("change", apply); });
  apply();
  document.documentElement.setAttribute("data-filters", "ready");
})();
