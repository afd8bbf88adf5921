/* vein2vein dashboard: draws the route comparison's charts (plotly.js, served locally and
   loaded only on pages that have one; temperature traces come drawn as SVG by the server and
   a live region's refresh brings the new drawing), refreshes the live regions ([data-live])
   every data-refresh seconds without reloading the page, and puts the keyboard focus back where the person was after an action
   that reloads the page (Acknowledge, a signed disposition, a hold). */
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id + "-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  // No toolbar: its eight buttons per chart sat in the keyboard's tab order between the
  // page's real controls. Dragging still zooms and a double click resets.
  var CONFIG = { responsive: true, displaylogo: false, displayModeBar: false };

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

  // The temperature traces come drawn from the server (inline SVG); only the route
  // comparison's charts are drawn here.
  var DRAW = { distribution: distribution, legs: legs };

  var plotlyLoading = null;

  // After the page's load event: plotly.js is 4.8 MB of script, and compiling it the first
  // time takes a second or more on a busy ward PC. The page (facts, tables, forms) is usable
  // at once and each chart box says it is being drawn until it is.
  function pageLoaded() {
    return new Promise(function (resolve) {
      if (document.readyState === "complete") { resolve(); return; }
      window.addEventListener("load", function () { resolve(); });
    });
  }

  function withPlotly(then) {
    if (window.Plotly) { then(); return; }
    if (!plotlyLoading) {
      plotlyLoading = pageLoaded().then(function () { return new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = document.body.dataset.plotly;
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      }); });
    }
    plotlyLoading.then(then, function () { plotlyLoading = null; });
  }

  function drawCharts(root) {
    var charts = root.querySelectorAll("[data-chart]");
    if (!charts.length) { return; }
    withPlotly(function () {
      charts.forEach(function (el) {
        var d = data(el.id);
        var draw = DRAW[el.dataset.chart];
        if (d && draw) { draw(el, d); }
      });
    });
  }

  // ---- focus after an action that reloads the page ----

  var FOCUS_KEY = "v2v-focus";

  function rowId(row) { return row ? row.getAttribute("data-alert-id") : null; }

  function remember(event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || (form.method || "").toLowerCase() !== "post") { return; }
    var row = form.closest("[data-alert-id]");
    var section = form.closest("section[id], article[id]");
    var note = { path: window.location.pathname + window.location.search, at: Date.now(),
      alert: rowId(row), section: section ? section.id : null, form: form.id || null };
    if (row) {
      // The next alert's button, so a coordinator can acknowledge a run of them in turn.
      note.next = rowId(row.nextElementSibling) || rowId(row.previousElementSibling);
    }
    try { window.sessionStorage.setItem(FOCUS_KEY, JSON.stringify(note)); } catch (e) { /* private mode */ }
  }

  function focusOn(el) {
    if (!el) { return false; }
    if (!el.matches("a[href], button, input, select, textarea, [tabindex]")) { el.setAttribute("tabindex", "-1"); }
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "center" });
    return document.activeElement === el;
  }

  function byAlert(id, inside) {
    return id ? document.querySelector("[data-alert-id=\"" + CSS.escape(id) + "\"]" + (inside || "")) : null;
  }

  function restoreFocus() {
    var note = null;
    try {
      note = JSON.parse(window.sessionStorage.getItem(FOCUS_KEY) || "null");
      window.sessionStorage.removeItem(FOCUS_KEY);
    } catch (e) { note = null; }
    var hash = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
    if (!note || Date.now() - note.at > 60000) { if (hash) { focusOn(hash); } return; }
    var message = document.querySelector("main [role=alert], .flash[role=alert], main .outcome, .flash");
    var candidates = note.alert ? [
      byAlert(note.next, " button"), byAlert(note.alert, " button"), byAlert(note.alert), message
    ] : [
      note.form && document.getElementById(note.form), message, hash,
      note.section && document.getElementById(note.section)
    ];
    for (var i = 0; i < candidates.length; i++) { if (focusOn(candidates[i])) { return; } }
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

  document.addEventListener("submit", remember, true);

  document.addEventListener("DOMContentLoaded", function () {
    restoreFocus();
    drawCharts(document);
    var seconds = Number(document.body.dataset.refresh || "15");
    var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
    regions.forEach(function (region) { region.dataset.html = region.innerHTML; });
    if (regions.length) {
      window.setInterval(function () { regions.forEach(refresh); }, seconds * 1000);
    }
  });
})();
