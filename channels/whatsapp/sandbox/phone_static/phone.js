// The sandbox phone's live updates, no build step: every element with data-live="URL" and
// data-version="N" asks URL?v=N each second; a 204 means nothing changed, a 200 brings the
// fresh element (with its new version), which replaces the old one. The chat stays scrolled
// to the newest bubble. Without JavaScript the page works; reload to see new messages.
"use strict";
(function () {
  function bottom() {
    var el = document.getElementById("bubbles");
    if (el) { el.scrollTop = el.scrollHeight; window.scrollTo(0, document.body.scrollHeight); }
  }

  function poll(id) {
    var el = document.getElementById(id);
    if (!el || document.hidden) { return; }
    var url = el.getAttribute("data-live") + "?v=" + encodeURIComponent(el.getAttribute("data-version"));
    fetch(url, { headers: { "X-Studio-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.status === 200 ? r.text() : null;
      })
      .then(function (html) {
        if (!html) { return; }
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.firstElementChild;
        var open = el.querySelectorAll("details[open]").length > 0;
        if (fresh && !open) { el.replaceWith(fresh); if (id === "bubbles") { bottom(); } }
      })
      .catch(function () { /* the next tick tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    bottom();
    setInterval(function () { poll("bubbles"); poll("chats"); }, 1000);
  });
})();
