// attnkit course site: search over the index that the page loaded as a script (search-LANG.js
// sets window.ATTNKIT_INDEX), so it works from file:// as well as over http. No network.
// Tokens are the same as tools/site.py's: Latin letters and digits in lower case, and Chinese
// character bigrams (a lone character stays one token). Every query token must be in a section
// (the last Latin one may be a prefix, for typing); sections are ranked by summed weight x idf.
(function () {
  "use strict";
  var CJK = /[\u3400-\u9fff\uf900-\ufaff]+/g;
  var LATIN = /[a-z0-9]+/g;

  function tokens(text) {
    text = text.toLowerCase();
    var out = [], m, run, i;
    while ((m = LATIN.exec(text)) !== null) out.push({tok: m[0], latin: true});
    while ((m = CJK.exec(text)) !== null) {
      run = m[0];
      if (run.length === 1) out.push({tok: run, latin: false});
      for (i = 0; i + 1 < run.length; i++) out.push({tok: run.slice(i, i + 2), latin: false});
    }
    return out;
  }

  function postings(index, tok, prefix) {
    if (!prefix) return index.terms[tok] || [];
    var merged = {}, key, list, j;
    for (key in index.terms) {
      if (key.lastIndexOf(tok, 0) !== 0) continue;
      list = index.terms[key];
      for (j = 0; j < list.length; j++) merged[list[j][0]] = (merged[list[j][0]] || 0) + list[j][1];
    }
    return Object.keys(merged).map(function (d) { return [Number(d), merged[d]]; });
  }

  function search(index, query) {
    var toks = tokens(query), scores = null, n = index.docs.length, i, k, lastLatin = -1;
    for (i = 0; i < toks.length; i++) if (toks[i].latin) lastLatin = i;
    for (i = 0; i < toks.length; i++) {
      var list = postings(index, toks[i].tok, i === lastLatin && i === toks.length - 1);
      var idf = Math.log(1 + n / (1 + list.length)), next = {};
      for (k = 0; k < list.length; k++) {
        var d = list[k][0];
        if (scores === null || d in scores) next[d] = (scores === null ? 0 : scores[d]) + list[k][1] * idf;
      }
      scores = next;
    }
    if (scores === null) return [];
    return Object.keys(scores).map(Number)
      .sort(function (a, b) { return scores[b] - scores[a] || a - b; });
  }

  function setup() {
    var form = document.getElementById("search"), input = document.getElementById("search-input");
    var status = document.getElementById("search-status"), list = document.getElementById("search-results");
    var index = window.ATTNKIT_INDEX, root = document.body.getAttribute("data-root") || "";
    if (!form || !input || !index) return;
    function show() {
      var q = input.value.trim();
      list.innerHTML = "";
      if (!q) { status.textContent = ""; return; }
      var hits = search(index, q);
      status.textContent = hits.length ? index.ui.results.replace("{n}", hits.length) : index.ui.none;
      hits.slice(0, 20).forEach(function (d) {
        var doc = index.docs[d], li = document.createElement("li"), a = document.createElement("a");
        a.href = root + doc[0];
        a.textContent = doc[2] === doc[1] ? doc[1] : doc[1] + " › " + doc[2];  // a chapter's opening: its title once
        li.appendChild(a);
        if (doc[3]) { var p = document.createElement("p"); p.textContent = doc[3]; li.appendChild(p); }
        list.appendChild(li);
      });
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); show(); });
    input.addEventListener("input", show);
  }

  window.attnkitSearch = {tokens: tokens, search: search};
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
