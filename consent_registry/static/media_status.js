// Keeps the analysis status of media on the page up to date while any item is queued or being
// analysed, by asking /media/status.json every few seconds. A media page reloads itself once its
// item is done, so the faces and voices found appear. Without JavaScript the page refreshes itself
// (a <noscript> meta refresh) instead.
(function () {
  "use strict";
  var script = document.currentScript;
  var url = script && script.getAttribute("data-url");
  var cells = Array.prototype.slice.call(document.querySelectorAll("[data-media-status]"));
  var EVERY_MS = 3000;

  function busy() {
    return cells.filter(function (cell) {
      var state = cell.getAttribute("data-state");
      return state === "queued" || state === "analysing";
    });
  }

  function show(cell, item) {
    cell.setAttribute("data-state", item.status);
    cell.textContent = item.status === "analysing"
      ? item.status_label + " (" + item.progress + "%)" : item.status_label;
    if (item.done && cell.hasAttribute("data-reload-when-done")) {
      window.location.reload();
    }
  }

  function poll() {
    var waiting = busy();
    if (!url || waiting.length === 0) { return; }
    var ids = waiting.map(function (cell) { return cell.getAttribute("data-media-status"); });
    fetch(url + "?ids=" + ids.join(","), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body) {
          body.items.forEach(function (item) {
            cells.filter(function (cell) { return cell.getAttribute("data-media-status") === String(item.id); })
              .forEach(function (cell) { show(cell, item); });
          });
        }
        window.setTimeout(poll, EVERY_MS);
      })
      .catch(function () { window.setTimeout(poll, EVERY_MS * 3); });
  }

  window.setTimeout(poll, EVERY_MS);
}());
