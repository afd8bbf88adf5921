/* vein2vein workspace forms: the chain-of-identity scan field and the courier's location.
   Hospital scanners type like keyboards and end with Enter. The check character (ISO/IEC
   7064 MOD 37-2) is checked as typed; the server checks it again and decides the match. */
(function () {
  "use strict";

  var CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*";
  var COI_RE = /^CH[A-NP-Z1-9][A-NP-Z0-9]{2}[0-9]{4}[A-Z0-9]{6}$/;
  var COMPOUND_RE = /^=\+(\d{2})(\d{3})/;

  function checkChar(data) {
    var p = 0;
    for (var i = 0; i < data.length; i++) {
      p = ((p + CHARSET.indexOf(data.charAt(i))) * 2) % 37;
    }
    return CHARSET.charAt((38 - p) % 37);
  }

  /* The same reading as the server's parse_scan: "ok", "nocheck", "bad" or "format". */
  function readScan(text) {
    var value = text.trim().toUpperCase();
    var m = COMPOUND_RE.exec(value);
    if (m) {
      var at = value.indexOf("&/", m[0].length);
      if (at < 0) { return "format"; }
      value = value.substr(at, 17);
    }
    if (value.indexOf("&/") === 0) { value = value.substr(2); }
    value = value.replace(/ /g, "");
    var check = null;
    if (value.length === 16) { check = value.charAt(15); value = value.substr(0, 15); }
    if (!COI_RE.test(value)) { return "format"; }
    if (check === null) { return "nocheck"; }
    return check === checkChar(value) ? "ok" : "bad";
  }

  function hint(field) {
    var out = document.getElementById("coi-hint");
    if (!field.value.trim()) {
      out.textContent = ""; out.className = "scan-hint";
      field.removeAttribute("aria-invalid"); field.setCustomValidity("");
      return "empty";
    }
    var state = readScan(field.value);
    out.textContent = field.dataset["msg" + state.charAt(0).toUpperCase() + state.slice(1)] || "";
    out.className = "scan-hint scan-" + state;
    var bad = state === "bad" || state === "format";
    if (bad) { field.setAttribute("aria-invalid", "true"); } else { field.removeAttribute("aria-invalid"); }
    field.setCustomValidity(bad ? out.textContent : "");
    return state;
  }

  function nextEmpty(form, after) {
    var fields = form.querySelectorAll("input, select, textarea");
    var seen = false;
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f === after) { seen = true; continue; }
      if (!seen || f.type === "hidden" || f.disabled || f.readOnly || !f.required) { continue; }
      if (!f.value) { return f; }
    }
    return null;
  }

  // Select the whole field, so the next scan replaces a bad one.
  function selectAll(field) { field.setSelectionRange(0, field.value.length); }

  function onScanKey(event) {
    if (event.key !== "Enter") { return; }
    var field = event.target;
    var form = field.form;
    event.preventDefault();
    var state = hint(field);
    if (state === "bad" || state === "format" || state === "empty") { selectAll(field); return; }
    var next = nextEmpty(form, field);
    if (next) { next.focus(); return; }
    if (form.hasAttribute("data-custody")) {
      var first = form.querySelector("#custody-actions button");
      if (first) { first.focus(); }
      return;
    }
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  function locate(button) {
    var status = document.getElementById("locate-status");
    if (!navigator.geolocation) { status.textContent = button.dataset.msgFail; return; }
    navigator.geolocation.getCurrentPosition(function (pos) {
      document.getElementById("lat").value = pos.coords.latitude.toFixed(6);
      document.getElementById("lon").value = pos.coords.longitude.toFixed(6);
      status.textContent = button.dataset.msgDone;
    }, function () { status.textContent = button.dataset.msgFail; }, { timeout: 10000 });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-scan]").forEach(function (field) {
      field.addEventListener("input", function () { hint(field); });
      field.addEventListener("keydown", onScanKey);
      field.addEventListener("focus", function () { selectAll(field); });
    });
    var button = document.getElementById("locate");
    if (button) { button.addEventListener("click", function () { locate(button); }); }
    window.v2vCheckChar = checkChar;
  });
})();
