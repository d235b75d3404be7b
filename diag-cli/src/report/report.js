// diag report: sortable tables, and zoom and search in the flamegraphs. No network, no
// dependencies; every flamegraph is handled on its own.
(function () {
  "use strict";
  var each = function (list, f) { Array.prototype.forEach.call(list, f); };

  function key(td) {
    if (!td) { return ""; }
    var v = td.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(Number(v))) { return Number(v); }
    return td.textContent.trim().toLowerCase();
  }

  function sortBy(th) {
    var row = th.parentNode;
    var idx = Array.prototype.indexOf.call(row.children, th);
    var tbody = th.closest("table").tBodies[0];
    var asc = th.getAttribute("data-dir") === "desc";
    each(row.children, function (h) { h.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[idx]), y = key(b.cells[idx]);
      var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
      return asc ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  each(document.querySelectorAll("table.sortable th"), function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });

  function Flame(box) {
    var svg = box.querySelector("svg.flame");
    if (!svg) { return; }
    var W = Number(svg.getAttribute("width"));
    var info = box.querySelector(".finfo");
    var template = svg.querySelector("text");
    var frames = [];
    each(svg.querySelectorAll("g.f"), function (g) {
      var t = g.querySelector("title");
      var f = {
        g: g, x: Number(g.getAttribute("data-x")), w: Number(g.getAttribute("data-w")),
        d: Number(g.getAttribute("data-d")), r: g.querySelector("rect"),
        t: g.querySelector("text"), hover: t ? t.textContent : "",
      };
      f.name = f.hover.split("\n")[0];
      f.fill = f.r.getAttribute("fill");
      f.y = Number(f.r.getAttribute("y"));
      frames.push(f);
      g.addEventListener("click", function () { zoom(f); });
      g.addEventListener("mouseenter", function () {
        if (info) { info.textContent = f.hover.replace(/\n/g, "  |  "); }
      });
    });

    function label(f, px) {
      var room = Math.floor((px - 6) / 6.4);
      if (px < 22 || room < 3) { if (f.t) { f.t.style.display = "none"; } return; }
      if (!f.t) {
        f.t = template.cloneNode(false);
        f.t.removeAttribute("text-anchor");
        f.t.removeAttribute("font-size");
        f.t.setAttribute("y", String(f.y + 11.5));
        f.g.appendChild(f.t);
      }
      f.t.style.display = "";
      f.t.textContent = f.name.length <= room ? f.name : f.name.slice(0, room - 2) + "..";
    }

    function place(f, x, w) {
      var px = w * W;
      if (px < 0.5) { f.g.style.display = "none"; return; }
      f.g.style.display = "";
      f.r.setAttribute("x", (x * W).toFixed(1));
      f.r.setAttribute("width", px.toFixed(1));
      label(f, px);
      if (f.t) { f.t.setAttribute("x", (x * W + 3).toFixed(1)); }
    }

    function zoom(z) {
      var eps = 1e-9;
      frames.forEach(function (f) {
        var inside = f.x >= z.x - eps && f.x + f.w <= z.x + z.w + eps;
        if (f.d < z.d && f.x <= z.x + eps && f.x + f.w >= z.x + z.w - eps) {
          place(f, 0, 1);
          f.g.style.opacity = "0.6";
        } else if (f.d >= z.d && inside) {
          place(f, (f.x - z.x) / z.w, f.w / z.w);
          f.g.style.opacity = "";
        } else {
          f.g.style.display = "none";
        }
      });
    }

    function reset() {
      frames.forEach(function (f) { place(f, f.x, f.w); f.g.style.opacity = ""; });
    }

    function search(text) {
      var re = null;
      if (text) {
        try { re = new RegExp(text, "i"); } catch (e) { re = null; }
        if (!re) { info.textContent = "not a regular expression: " + text; return; }
      }
      var hits = [];
      frames.forEach(function (f) {
        var hit = re !== null && re.test(f.name);
        f.r.setAttribute("fill", hit ? "#d0f" : f.fill);
        if (hit) { hits.push([f.x, f.x + f.w]); }
      });
      if (!re) { info.textContent = "hover a frame; click to zoom"; return; }
      hits.sort(function (a, b) { return a[0] - b[0]; });
      var covered = 0, end = 0;
      hits.forEach(function (h) {
        if (h[1] > end) { covered += h[1] - Math.max(h[0], end); end = h[1]; }
      });
      info.textContent = hits.length + " frames match, " + (covered * 100).toFixed(1) + "% of the width";
    }

    var input = box.querySelector("input");
    if (input) { input.addEventListener("input", function () { search(input.value); }); }
    var button = box.querySelector("button.reset");
    if (button) { button.addEventListener("click", reset); }
  }

  each(document.querySelectorAll(".flamebox"), Flame);
  // Tests read this in the rendered DOM: the script ran to its end.
  document.documentElement.setAttribute("data-js", "ok");
}());
