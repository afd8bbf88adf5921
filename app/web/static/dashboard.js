/* vein2vein dashboard: draws the charts (plotly.js, served locally) and refreshes the live
   regions ([data-live]) every data-refresh seconds without reloading the page. */
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id + "-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  var CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function legendSwatch(name, colour) {
    return { x: [null], y: [null], mode: "markers", name: name, hoverinfo: "skip",
      marker: { symbol: "square", size: 12, color: colour } };
  }

  function temperature(el, d) {
    var shapes = [{ type: "rect", name: "band", xref: "paper", x0: 0, x1: 1, yref: "y",
      y0: d.band[0], y1: d.band[1], fillcolor: "rgba(27,94,32,0.12)", line: { width: 0 }, layer: "below" }];
    d.excursions.forEach(function (e) {
      shapes.push({ type: "rect", name: "excursion-" + e.id, xref: "x", x0: e.x0, x1: e.x1, yref: "paper",
        y0: 0, y1: 1, fillcolor: e.severity === "critical" ? "rgba(163,18,26,0.30)" : "rgba(211,47,47,0.22)",
        line: { width: 0 }, layer: "below" });
    });
    var traces = [
      { x: d.x, y: d.min, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      { x: d.x, y: d.max, mode: "lines", fill: "tonexty", fillcolor: "rgba(11,92,173,0.18)",
        line: { width: 0 }, name: d.labels.range },
      { x: d.x, y: d.mean, mode: "lines", line: { color: "#0b3d7a", width: 2 }, name: d.labels.mean },
      legendSwatch(d.labels.band, "rgba(27,94,32,0.35)"),
      legendSwatch(d.labels.excursion, "rgba(211,47,47,0.5)")
    ];
    var layout = { height: 320, margin: { l: 60, r: 12, t: 8, b: 40 }, shapes: shapes,
      xaxis: { title: { text: d.labels.axis_t }, tickformat: d.tickformat },
      yaxis: { title: { text: d.labels.axis_c } },
      legend: { orientation: "h", y: 1.12 }, hovermode: "x unified" };
    return window.Plotly.react(el, traces, layout, CONFIG).then(function () {
      el.dataset.shaded = String(d.excursions.length);
    });
  }

  function distribution(el, d) {
    var traces = d.routes.map(function (r) {
      return { type: "box", y: r.days, name: r.route, boxpoints: "all", jitter: 0.4, pointpos: 0,
        marker: { size: 4, color: r.kind === "local" ? "#1b5e20" : "#0b4a8a" },
        line: { color: r.kind === "local" ? "#1b5e20" : "#0b4a8a" } };
    });
    var layout = { height: 340, margin: { l: 60, r: 12, t: 8, b: 40 }, showlegend: false,
      yaxis: { title: { text: d.labels.axis }, rangemode: "tozero" } };
    return window.Plotly.react(el, traces, layout, CONFIG);
  }

  function legs(el, d) {
    var palette = ["#0b4a8a", "#5a8fc7", "#1b5e20", "#b26a00", "#7b1fa2"];
    var traces = d.legs.map(function (leg, i) {
      return { type: "bar", orientation: "h", y: d.routes, x: leg.days, name: leg.name,
        marker: { color: palette[i % palette.length] } };
    });
    var layout = { height: 340, barmode: "stack", margin: { l: 120, r: 12, t: 8, b: 40 },
      xaxis: { title: { text: d.labels.axis } }, legend: { orientation: "h", y: -0.25 } };
    return window.Plotly.react(el, traces, layout, CONFIG);
  }

  var DRAW = { temperature: temperature, distribution: distribution, legs: legs };

  function drawCharts(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var d = data(el.id);
      var draw = DRAW[el.dataset.chart];
      if (d && draw) { draw(el, d); }
    });
  }

  function refresh(region) {
    // Never pull a region out from under the keyboard focus (an acknowledge button).
    if (document.hidden || region.contains(document.activeElement)) { return; }
    fetch(region.dataset.live, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        region.dataset.polled = String(Date.now());
        if (html === null || html === region.dataset.html) { return; }
        region.dataset.html = html;
        region.innerHTML = html;
        drawCharts(region);
      })
      .catch(function () { /* offline for a moment: the next poll retries */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    var seconds = Number(document.body.dataset.refresh || "15");
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
    regions.forEach(function (region) { region.dataset.html = region.innerHTML; });
    if (regions.length) {
      window.setInterval(function () { regions.forEach(refresh); }, seconds * 1000);
    }
  });
})();
