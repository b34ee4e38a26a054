/* Hourglass tracker. Cookieless: no storage, no identifiers; the edge derives
 * a daily visitor hash. Sends Plausible-compatible bodies to /api/event as
 * text/plain (a "simple" CORS request: no preflight).
 *
 *   <script defer data-domain="example.com" src="https://EDGE/js/script.js"></script>
 *   hourglass('Signup', {props: {plan: 'pro'}, revenue: {amount: 9.5, currency: 'EUR'}})
 *
 * Tracks pageviews (and SPA history changes), custom events, outbound links
 * and file downloads. data-api overrides the endpoint.
 */
(function () {
  'use strict';
  var w = window, d = document, l = w.location;
  var script = d.currentScript;
  if (!script) return;
  var domain = script.getAttribute('data-domain') || l.hostname;
  var endpoint = script.getAttribute('data-api') || new URL('/api/event', script.src).href;
  var fileTypes = /\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pp[st]x?|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma|dmg|iso|msi)$/i;

  function send(name, options) {
    options = options || {};
    if (/^localhost$|^127\.|^\[::1\]$/.test(l.hostname) && !script.hasAttribute('data-local')) return;
    if (w.__hourglass_ignore || (w.localStorage && w.localStorage.hourglass_ignore === 'true')) return;
    var body = {n: name, u: options.u || l.href, d: domain, r: d.referrer || null};
    if (options.props) body.p = options.props;
    if (options.revenue) body.revenue = options.revenue;
    if (options.interactive === false) body.interactive = false;
    var payload = JSON.stringify(body);
    if (options.beacon && w.navigator.sendBeacon &&
        w.navigator.sendBeacon(endpoint, new Blob([payload], {type: 'text/plain'}))) {
      if (options.callback) options.callback();
      return;
    }
    var req = new XMLHttpRequest();
    req.open('POST', endpoint, true);
    req.setRequestHeader('Content-Type', 'text/plain');
    req.onreadystatechange = function () {
      if (req.readyState === 4 && options.callback) options.callback({status: req.status});
    };
    req.send(payload);
  }

  var lastPage;
  function pageview() {
    if (lastPage === l.pathname + l.search) return;
    lastPage = l.pathname + l.search;
    send('pageview');
  }

  function linkClick(event) {
    if (event.type === 'auxclick' && event.button !== 1) return;
    var a = event.target.closest && event.target.closest('a[href]');
    if (!a) return;
    var outbound = a.host && a.host !== l.host;
    var download = fileTypes.test(a.pathname);
    if (!outbound && !download) return;
    send(outbound ? 'Outbound Link: Click' : 'File Download', {props: {url: a.href}, beacon: true});
  }

  var queued = (w.hourglass && w.hourglass.q) || [];
  w.hourglass = function (name, options) { send(name, options); };
  for (var i = 0; i < queued.length; i++) w.hourglass.apply(this, queued[i]);

  var push = w.history.pushState;
  if (push) {
    w.history.pushState = function () { push.apply(this, arguments); pageview(); };
    w.addEventListener('popstate', pageview);
  }
  d.addEventListener('click', linkClick);
  d.addEventListener('auxclick', linkClick);
  if (d.visibilityState === 'prerender') {
    d.addEventListener('visibilitychange', function once() {
      if (d.visibilityState === 'visible') { d.removeEventListener('visibilitychange', once); pageview(); }
    });
  } else {
    pageview();
  }
})();
