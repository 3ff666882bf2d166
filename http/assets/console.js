/* radprep console — a little plain JavaScript: the pages work without it.
 * - The overview refreshes its numbers from /api/v1/status every 5 s (elements with
 *   data-k="path.to.field" take the value; data-fmt="bytes" or "rate" formats it).
 * - Times with data-t (seconds since the epoch) get a "3 min ago" tooltip.
 */
(function () {
  "use strict";

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }

  function bytes(n) {
    if (n < 0) return "—";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + u[i];
  }

  function fmt(v, kind) {
    if (v === undefined || v === null) return "—";
    if (kind === "bytes") return bytes(v);
    if (kind === "rate") return (Math.round(v * 10) / 10).toFixed(1);
    if (kind === "mbps") return (v / 1048576).toFixed(2);
    if (kind === "duration") {
      var s = Math.floor(v), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
          m = Math.floor(s % 3600 / 60);
      return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
    }
    return String(v);
  }

  function ago(t) {
    var s = Date.now() / 1000 - t;
    if (s < 0) return "in " + Math.round(-s) + " s";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  function tooltips() {
    document.querySelectorAll("[data-t]").forEach(function (el) {
      var t = parseFloat(el.getAttribute("data-t"));
      if (t > 0) el.title = ago(t);
    });
  }

  function refresh() {
    var fields = document.querySelectorAll("[data-k]");
    if (!fields.length || !document.body.hasAttribute("data-live")) return;
    fetch("/api/v1/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (!j) return;
        fields.forEach(function (el) {
          var v = get(j, el.getAttribute("data-k"));
          if (v !== undefined) el.textContent = fmt(v, el.getAttribute("data-fmt"));
        });
        var m = document.querySelector("meter[data-k-free]");
        if (m && j.total_bytes > 0) m.value = j.free_bytes / j.total_bytes;
      })
      .catch(function () { /* the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tooltips();
    if (document.body.hasAttribute("data-live")) setInterval(refresh, 5000);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  });
})();
