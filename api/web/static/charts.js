// Draws every chart of a page: an element with class "chart" carries its whole Apache ECharts option as JSON in
// data-chart (built on the server, api/web/charts.py), so pages need no script of their own. Charts inside a
// fragment that htmx swaps in are drawn too, and every chart follows its element's size (laptop or phone).
(function () {
  "use strict";
  function draw(root) {
    if (typeof echarts === "undefined") return;
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(JSON.parse(el.dataset.chart), true);
      if (!el.dataset.sized) {
        el.dataset.sized = "1";
        new ResizeObserver(function () { chart.resize(); }).observe(el);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target); });
})();
