// runfleet console: live updates for server-rendered pages. No framework and
// no build step. Elements marked data-live="name" are re-rendered by the
// server: the script fetches the page again and swaps those elements' content.
// A job page (data-events) listens to the job's Server-Sent Events and updates
// its state and counts at once; other pages (data-refresh) refresh every few
// seconds. The pause button stops both.
(function () {
  'use strict';

  var control = document.querySelector('[data-live-control]');
  var statusEl = control && control.querySelector('[data-live-status]');
  var toggle = control && control.querySelector('[data-live-toggle]');
  var jobEl = document.querySelector('[data-events]');
  var periodic = document.querySelector('[data-refresh]');
  var paused = false;
  var source = null;
  var events = 0;

  function setStatus(text, cls) {
    if (!control) { return; }
    statusEl.textContent = text;
    control.classList.remove('paused', 'broken');
    if (cls) { control.classList.add(cls); }
  }

  // ---- re-rendering the live parts ----

  var inFlight = false, again = false, lastRefresh = 0, lastCost = 0, timer = null;

  function refresh() {
    if (paused) { return; }
    if (inFlight) { again = true; return; }
    inFlight = true;
    var started = Date.now();
    fetch(location.href, { credentials: 'same-origin' })
      .then(function (resp) {
        if (resp.redirected && new URL(resp.url).pathname === '/login') {
          stop();
          setStatus('Logged out: reload to log in', 'broken');
          return null;
        }
        if (!resp.ok) { throw new Error('HTTP ' + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var doc = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-live]').forEach(function (el) {
          var fresh = doc.querySelector('[data-live="' + el.getAttribute('data-live') + '"]');
          if (fresh && fresh.innerHTML !== el.innerHTML) { el.innerHTML = fresh.innerHTML; }
        });
      })
      .catch(function () { setStatus('Update failed; retrying', 'broken'); })
      .finally(function () {
        inFlight = false;
        lastRefresh = Date.now();
        lastCost = lastRefresh - started;
        if (again) { again = false; schedule(); }
      });
  }

  // schedule re-renders soon, but no more often than about once a second,
  // and less often for pages that take long to render (big jobs).
  function schedule() {
    if (paused || timer) { return; }
    var gap = Math.max(1000, 3 * lastCost);
    var wait = Math.max(0, lastRefresh + gap - Date.now());
    timer = setTimeout(function () { timer = null; refresh(); }, wait);
  }

  // ---- a job page's event stream ----

  function commas(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }

  // apply shows an update's state, counts and progress; it reports whether
  // anything shown changed.
  function apply(d) {
    var changed = false;
    var st = document.querySelector('[data-job-state]');
    if (st && st.textContent !== d.state) {
      st.textContent = d.state;
      st.className = 'state state-' + d.state;
      changed = true;
    }
    var total = document.querySelector('[data-job-total]');
    if (total && total.textContent !== commas(d.total)) { total.textContent = commas(d.total); changed = true; }
    Object.keys(d.counts || {}).forEach(function (k) {
      var el = document.querySelector('[data-count="' + k + '"]');
      if (el && el.textContent !== commas(d.counts[k])) { el.textContent = commas(d.counts[k]); changed = true; }
    });
    (d.progress || []).forEach(function (p) {
      var bar = document.querySelector('progress[data-progress="' + CSS.escape(p.label) + '"]');
      var text = document.querySelector('[data-progress-text="' + CSS.escape(p.label) + '"]');
      if (!bar) { changed = true; return; }
      if (String(p.done) !== bar.getAttribute('value') || String(p.total) !== bar.getAttribute('max')) {
        bar.setAttribute('max', p.total);
        bar.setAttribute('value', p.done);
        if (text) { text.textContent = commas(p.done) + ' / ' + commas(p.total); }
        changed = true;
      }
    });
    return changed;
  }

  function connect() {
    if (!jobEl || source) { return; }
    source = new EventSource(jobEl.getAttribute('data-events'));
    source.addEventListener('open', function () { setStatus('Live'); });
    source.addEventListener('job', function (ev) {
      events++;
      document.body.setAttribute('data-live-events', String(events));
      if (apply(JSON.parse(ev.data))) { schedule(); }
    });
    source.addEventListener('error', function () {
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (the server watches as many jobs as it will): refresh
        // every few seconds instead.
        source = null;
        setStatus('Live (every 5 s)');
        startPolling(5000);
      } else {
        setStatus('Reconnecting…', 'broken');
      }
    });
  }

  var polling = null;
  function startPolling(ms) {
    if (polling) { return; }
    polling = setInterval(function () {
      if (!paused && !document.hidden) { refresh(); }
    }, ms);
  }

  function stop() {
    if (source) { source.close(); source = null; }
    if (timer) { clearTimeout(timer); timer = null; }
  }

  if (toggle) {
    toggle.addEventListener('click', function () {
      paused = !paused;
      toggle.setAttribute('aria-pressed', String(paused));
      if (paused) {
        stop();
        toggle.textContent = 'Resume live updates';
        setStatus('Paused', 'paused');
      } else {
        toggle.textContent = 'Pause live updates';
        setStatus('Live');
        if (!polling) { connect(); }
        refresh();
      }
    });
  }

  connect();
  if (periodic && !jobEl) {
    startPolling(Number(periodic.getAttribute('data-refresh')) || 5000);
  }

  // ---- the graph of a big job, drawn after the page ----

  var deferred = document.querySelector('figure.graph[data-graph-src]');
  if (deferred) {
    var graphStatus = deferred.querySelector('[data-graph-status]');
    if (graphStatus) { graphStatus.textContent += ' Drawing…'; }
    fetch(deferred.getAttribute('data-graph-src'), { credentials: 'same-origin' })
      .then(function (resp) {
        if (!resp.ok) { throw new Error('HTTP ' + resp.status); }
        return resp.text();
      })
      .then(function (svg) {
        // jobgraph escapes every text it writes, as for the inline graph.
        var doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
        var root = doc.documentElement;
        if (root.nodeName !== 'svg') { throw new Error('not an SVG'); }
        deferred.replaceChildren(document.importNode(root, true));
      })
      .catch(function (err) {
        if (graphStatus) { graphStatus.textContent = 'The graph could not be drawn: ' + err.message; }
      });
  }

  // ---- the graph: a click on a task opens it ----

  var job = document.querySelector('[data-job]');
  document.addEventListener('click', function (ev) {
    var g = ev.target.closest && ev.target.closest('figure.graph g');
    if (!g || !job) { return; }
    var title = g.querySelector('title');
    var m = title && /^\S+ #(\d+) /.exec(title.textContent);
    if (m) { location.href = '/jobs/' + encodeURIComponent(job.getAttribute('data-job')) + '/tasks/' + m[1]; }
  });
})();
