// Chasqui Studio's progressive enhancement, written here, no build step. Pages work without it.
// - data-live="URL" data-every="SECONDS": the element is replaced by the HTML fragment at URL
//   every few seconds (progress bars, counts); stops when the fragment says data-live-done.
// - data-search="URL" data-target="#id": typing fills #id with the fragment for URL?q=...
// - data-confirm="question": a form asks before it is sent.
"use strict";
(function () {
  function fetchFragment(url) {
    return fetch(url, { headers: { "X-Studio-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      });
  }

  function live(el) {
    var every = Math.max(1, Number(el.getAttribute("data-every") || "2")) * 1000;
    var timer = setInterval(function () {
      if (document.hidden) { return; }
      fetchFragment(el.getAttribute("data-live")).then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.firstElementChild;
        if (!fresh) { return; }
        el.replaceWith(fresh);
        clearInterval(timer);
        if (fresh.hasAttribute("data-live") && !fresh.hasAttribute("data-live-done")) { live(fresh); }
      }).catch(function () { /* the next tick tries again */ });
    }, every);
  }

  function search(input) {
    var target = document.querySelector(input.getAttribute("data-target"));
    var pending = null;
    input.addEventListener("input", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        var url = new URL(input.getAttribute("data-search"), window.location.href);
        url.searchParams.set("q", input.value);
        fetchFragment(url.toString()).then(function (html) {
          if (target) { target.innerHTML = html; }
        }).catch(function () {});
      }, 200);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (!el.hasAttribute("data-live-done")) { live(el); }
    });
    document.querySelectorAll("[data-search]").forEach(search);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
})();
