// bijli dashboard: the project's own few lines (no library). Every page works without them:
// they only refresh numbers in place (overview, a job's progress, a receipt's delivery status)
// and wire the print button.
(function () {
  "use strict";
  function age(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function num(n) { return (n === null || n === undefined) ? "-" : Number(n).toLocaleString("en-US"); }
  function poll(url, every, apply) {
    var stopped = false;
    function tick() {
      if (stopped) return;
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (data) { if (apply(data) === false) { stopped = true; } })
        .catch(function () { /* keep the last numbers; try again later */ })
        .then(function () { if (!stopped) setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }
  var cards = document.querySelector("[data-live-url]");
  if (cards) {
    var status = document.querySelector("[data-live-status]");
    poll(cards.getAttribute("data-live-url"), 3000, function (d) {
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var k = el.getAttribute("data-live");
        if (!(k in d)) return;
        el.textContent = el.getAttribute("data-format") === "age" ? age(d[k]) : num(d[k]);
      });
      document.querySelectorAll("[data-live-job]").forEach(function (el) {
        var j = d.jobs[el.getAttribute("data-live-job")];
        if (!j) return;
        var bar = el.querySelector("progress"), text = el.querySelector(".progress-text");
        if (bar) { bar.max = j.total || 1; bar.value = j.ended; }
        if (text) text.textContent = j.ended + " / " + j.total + (j.total ? " (" + Math.round(100 * j.ended / j.total) + " %)" : "");
      });
      if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString();
    });
  }
  var job = document.querySelector("[data-job]");
  if (job && /^(running|paused)$/.test(job.getAttribute("data-job-state"))) {
    // a running job's page reloads itself while its steps move (the table is the point)
    poll("/jobs/" + job.getAttribute("data-job") + "/progress.json", 2000, function (d) {
      var bar = job.querySelector("progress"), text = job.querySelector(".progress-text");
      if (bar) { bar.max = d.total || 1; bar.value = d.ended; }
      if (text) text.textContent = d.ended + " / " + d.total + (d.total ? " (" + Math.round(100 * d.ended / d.total) + " %)" : "");
      if (d.state !== "running" && d.state !== "paused") { window.location.reload(); return false; }
    });
  }
  var receipt = document.querySelector("[data-receipt]");
  if (receipt && receipt.textContent.trim().indexOf("delivered") !== 0) {
    poll("/receipt.json?ref=" + encodeURIComponent(receipt.getAttribute("data-receipt")), 1500, function (d) {
      receipt.textContent = d.state + (d.outcome ? " (" + d.outcome + ")" : "");
      receipt.className = "state s-" + d.state;
      return d.state === "pending" || d.state === "running";
    });
  }
  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
})();
