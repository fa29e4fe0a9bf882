'use strict';
// The Herald manager console: a single-page app over the admin API (producers/admin/web/openapi.json).
// Plain DOM: every value from the API is inserted as a text node or a property, never parsed as HTML.
(() => {
  const Charts = window.HeraldCharts;
  // The API lives next to /console/ (also behind a path prefix, e.g. /herald/console/ → /herald/v1/...).
  const API = (location.pathname.match(/^(.*?)\/console(?:\/|$)/) || ['', ''])[1];
  const TOKEN_KEY = 'herald.console.token';
  const S = { token: null, scope: null, types: null };
  const canWrite = () => S.scope === 'write';
  const enc = encodeURIComponent;
  const $ = (sel) => document.querySelector(sel);

  // ---------------------------------------------------------------- DOM helpers
  const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'readOnly', 'hidden', 'srcdoc', 'open']);
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'test') el.dataset.test = v;
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) el.append(k instanceof Node ? k : String(k));
    return el;
  }
  // Replaces an element's content; like h(), arrays are flattened and null / false skipped.
  function put(el, ...kids) {
    el.replaceChildren(...kids.flat(Infinity).filter((k) => k != null && k !== false));
    return el;
  }
  const option = (value, label, selected) => h('option', { value, selected: !!selected }, label ?? value);
  const go = (hash) => { location.hash = hash; };
  let uid = 0;
  function debounce(fn, ms) {
    let t;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  }
  // An element whose content is rebuilt only when its data changed (no flicker on polling).
  function slot(props) {
    const el = h('div', props);
    let last;
    el.update = (data, build) => {
      const sig = JSON.stringify(data);
      if (sig === last) return;
      last = sig;
      put(el, ...[build(data)].flat().filter((x) => x != null));
    };
    el.reset = () => { last = undefined; };
    return el;
  }

  // ---------------------------------------------------------------- formatting
  const nf = new Intl.NumberFormat();
  const fmtNum = (n) => nf.format(n || 0);
  const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const dtfSec = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const dtfShort = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  function fmtDate(iso, seconds) {
    if (!iso) return '—';
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : (seconds ? dtfSec : dtf).format(d);
  }
  function fmtMs(ms) {
    if (ms == null) return '—';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    return `${(ms / 60000).toFixed(1)} min`;
  }
  const isoZ = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const pad = (n) => String(n).padStart(2, '0');
  function toLocalInput(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function fromLocalInput(v) {
    if (!v) return null;
    const d = new Date(v); // a datetime-local value is local time
    return isNaN(d) ? v : isoZ(d.getTime());
  }
  const splitList = (s) => String(s || '').split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
  const utcOffset = () => {
    const m = -new Date().getTimezoneOffset();
    return `UTC${m < 0 ? '−' : '+'}${pad(Math.floor(Math.abs(m) / 60))}:${pad(Math.abs(m) % 60)}`;
  };

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }
  // The one API helper: bearer token, JSON in and out, errors as ApiError; 401 → back to login.
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: 'application/json', Authorization: `Bearer ${opts.token || S.token}` };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, { error: `cannot reach the Herald API (${e.message})` });
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 300) }; }
    }
    if (res.ok) return data;
    const err = new ApiError(res.status, data && typeof data === 'object' ? data : { error: `${res.status} ${res.statusText}` });
    if (res.status === 401 && !opts.login) {
      err.handled = true;
      showLogin('Your token is no longer accepted: sign in again.');
    }
    throw err;
  }
  function errText(e) {
    if (!(e instanceof ApiError)) return String((e && e.message) || e);
    if (e.status === 0) return e.message;
    if (e.status === 403) return 'This token has the read scope; the action needs write.';
    if (e.status === 503) return `Service unavailable, try again shortly: ${e.message}`;
    return e.message;
  }
  const fieldErrors = (e) => (e.body.errors && e.body.errors.length ? e.body.errors
    : e.body.field ? [{ field: e.body.field, error: e.body.error }] : []);
  function showError(e, what) {
    if (e && e.handled) return;
    flash(`${what ? what + ': ' : ''}${errText(e)}`, 'error');
  }
  const errorBox = (e, what) => h('div', { class: 'box error', role: 'alert', test: 'page-error' }, `${what || 'Could not load'}: ${errText(e)}`);
  async function eventTypes() {
    if (!S.types) {
      const r = await api('GET', '/v1/event-types');
      S.types = r.event_types.slice().sort((a, b) => (b.marketing - a.marketing) || a.name.localeCompare(b.name));
    }
    return S.types;
  }

  // ---------------------------------------------------------------- flash, dialog, page context
  let flashTimer;
  function flash(msg, kind = 'ok') {
    const el = $('#flash');
    clearTimeout(flashTimer);
    el.className = `flash ${kind}`;
    put(el, h('span', { class: 'msg', test: 'flash-message' }, msg),
      h('button', { type: 'button', class: 'ghost small', 'aria-label': 'Dismiss message', onclick: clearFlash }, '×'));
    el.hidden = false;
    if (kind !== 'error') flashTimer = setTimeout(clearFlash, 8000);
  }
  function clearFlash() {
    const el = $('#flash');
    el.hidden = true;
    put(el);
  }
  function confirmDialog(message, okLabel, danger = true) {
    return new Promise((resolve) => {
      const ok = h('button', { type: 'button', class: danger ? 'danger' : '', test: 'confirm-ok' }, okLabel || 'OK');
      const back = h('button', { type: 'button', class: 'ghost', test: 'confirm-cancel' }, 'Back');
      const dlg = h('dialog', { class: 'dialog', test: 'confirm', 'aria-labelledby': 'dlg-msg' },
        h('p', { id: 'dlg-msg' }, message), h('div', { class: 'row end' }, back, ok));
      const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
      ok.addEventListener('click', () => done(true));
      back.addEventListener('click', () => done(false));
      dlg.addEventListener('cancel', (ev) => { ev.preventDefault(); done(false); });
      document.body.append(dlg);
      dlg.showModal();
      back.focus();
    });
  }
  let ctx = null;
  function newCtx() {
    if (ctx) ctx.dispose();
    ctx = {
      alive: true, timers: [], offs: [],
      every(ms, fn) { this.timers.push(setInterval(() => { if (!document.hidden) fn(); }, ms)); },
      on(target, ev, fn) { target.addEventListener(ev, fn); this.offs.push(() => target.removeEventListener(ev, fn)); },
      dispose() { this.alive = false; this.timers.forEach(clearInterval); this.offs.forEach((f) => f()); },
    };
    return ctx;
  }
  // Polls `fn` every `ms` without overlapping; a failure shows in `status` until the next success.
  // run(true) (the first load) throws instead, so the page shows the error.
  function poller(c, ms, fn, status) {
    let busy = false, again = false;
    const run = async (strict) => {
      if (!c.alive) return;
      if (busy) { again = true; return; } // e.g. a filter changed mid-request: run once more after
      busy = true;
      again = false;
      try {
        await fn();
        if (status) status.hidden = true;
      } catch (e) {
        if (strict === true || !status) throw e;
        if (!c.alive || e.handled) return;
        status.textContent = `Could not refresh (retrying): ${errText(e)}`;
        status.hidden = false;
      } finally {
        busy = false;
        if (again) setTimeout(run, 0);
      }
    };
    if (ms) c.every(ms, () => { if (!busy) run(); });
    return run;
  }

  // ---------------------------------------------------------------- shared widgets
  const STATES = ['draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'];
  const ACTIONS = {
    draft: ['launch', 'edit', 'delete'], scheduled: ['pause', 'cancel', 'edit'], running: ['pause', 'cancel'],
    paused: ['resume', 'cancel', 'edit'], completed: ['delete'], cancelled: ['delete'],
  };
  const LABEL = { launch: 'Launch', pause: 'Pause', resume: 'Resume', cancel: 'Cancel', edit: 'Edit', delete: 'Delete' };
  const DONE = { launch: 'launched', pause: 'paused', resume: 'resumed', cancel: 'cancelled' };
  const badge = (state) => h('span', { class: `badge st-${state}`, test: 'state' }, state);
  const SEGS = ['sent', 'failed', 'suppressed', 'expired', 'cancelled', 'pending'];

  function progress(p, big) {
    p = p || {};
    const v = (k) => Number(p[k]) || 0;
    const planned = v('planned');
    const done = SEGS.slice(0, 5).reduce((a, k) => a + v(k), 0);
    const pct = planned > 0 ? Math.max(0, Math.min(100, Math.floor((done * 100) / planned))) : 0;
    const scale = Math.max(planned, done + v('pending'), 1);
    const bar = h('div', { class: 'pbar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
      'aria-label': planned ? `${pct}% of ${fmtNum(planned)} done` : 'nothing planned yet' });
    for (const k of SEGS) {
      if (!v(k)) continue;
      const seg = h('span', { class: `seg c-${k}`, title: `${k}: ${fmtNum(v(k))}` });
      seg.style.width = `${(v(k) * 100) / scale}%`;
      bar.append(seg);
    }
    return h('div', { class: `progress${big ? ' big' : ''}`, test: 'progress', 'data-planned': planned, 'data-sent': v('sent'), 'data-done-percent': pct },
      h('div', { class: 'ptop' }, h('strong', {}, planned ? `${pct}%` : '—'),
        h('span', { class: 'muted' }, planned ? ` of ${fmtNum(planned)} planned` : ' nothing planned yet',
          big && p.fanout_complete === false && planned ? ' (fan-out in progress)' : '')),
      bar,
      h('ul', { class: 'pnums' }, SEGS.map((k) => h('li', { 'data-key': k }, h('span', { class: `sw c-${k}` }), `${k} `, h('b', {}, fmtNum(v(k)))))));
  }

  function actionButtons(cmp, after) {
    if (!canWrite()) return null;
    return (ACTIONS[cmp.state] || []).map((a) => h('button', {
      type: 'button', class: `small ${a === 'delete' || a === 'cancel' ? 'danger' : a === 'edit' ? 'ghost' : ''}`,
      test: `btn-${a}`, 'aria-label': `${LABEL[a]} ${cmp.name}`,
      onclick: (ev) => campaignAction(cmp, a, ev.currentTarget, after),
    }, LABEL[a]));
  }
  async function campaignAction(cmp, a, btn, after) {
    if (a === 'edit') return go(`#/campaigns/${enc(cmp.id)}/edit`);
    if (a === 'cancel' && !(await confirmDialog(`Cancel campaign “${cmp.name}”? Nothing more will be sent; this cannot be undone.`, 'Cancel campaign'))) return;
    if (a === 'delete' && !(await confirmDialog(`Delete campaign “${cmp.name}”?`, 'Delete'))) return;
    btn.disabled = true;
    try {
      if (a === 'delete') {
        await api('DELETE', `/v1/campaigns/${enc(cmp.id)}`);
        flash(`Campaign “${cmp.name}” deleted.`);
      } else {
        const r = await api('POST', `/v1/campaigns/${enc(cmp.id)}/${a}`);
        flash(`Campaign “${cmp.name}” ${DONE[a]}: it is now ${r.state}.`);
      }
      if (after) await after(a);
    } catch (e) {
      showError(e, `Could not ${a} “${cmp.name}”`);
      if (after && e.status === 409) after('conflict');
    } finally { btn.disabled = false; }
  }

  function latencyTiles(lat, test) {
    lat = lat || {};
    return h('div', { class: 'tiles', test },
      ['p50', 'p90', 'p99', 'max'].map((k) => h('div', { class: 'tile', test: `latency-${k}` },
        h('span', { class: 'tile-label' }, k === 'max' ? 'max latency' : `${k} latency`), h('strong', {}, fmtMs(lat[k])))),
      h('div', { class: 'tile' }, h('span', { class: 'tile-label' }, 'measured sends'), h('strong', {}, fmtNum(lat.count))));
  }
  function statusTiles(by) {
    by = by || {};
    const keys = Charts.STATUSES.filter((k) => by[k] || ['sent', 'failed', 'suppressed'].includes(k));
    return h('div', { class: 'tiles', test: 'stats-status' },
      keys.map((k) => h('div', { class: 'tile', 'data-key': k },
        h('span', { class: 'tile-label' }, h('span', { class: `sw c-${k}` }), k), h('strong', {}, fmtNum(by[k])))));
  }
  function table(cols, rows, props) {
    return h('div', { class: 'table-wrap' }, h('table', props || {},
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'Nothing yet.')))));
  }
  // Counts keyed by channel (or provider) × status, with totals.
  function matrix(byKey, keyLabel, test) {
    const keys = Object.keys(byKey || {}).sort();
    const seen = new Set(keys.flatMap((k) => Object.keys(byKey[k] || {})));
    const statuses = [...Charts.STATUSES.filter((s) => seen.has(s)), ...[...seen].filter((s) => !Charts.STATUSES.includes(s))];
    const cols = [{ label: keyLabel }, ...statuses.map((s) => ({ label: s, num: true })), { label: 'total', num: true }];
    return table(cols, keys.map((k) => {
      const row = byKey[k] || {};
      const total = Object.values(row).reduce((a, n) => a + (n || 0), 0);
      return h('tr', {}, h('th', { scope: 'row' }, k), statuses.map((s) => h('td', { class: 'num' }, fmtNum(row[s]))),
        h('td', { class: 'num' }, h('b', {}, fmtNum(total))));
    }), { test });
  }
  const RANGES = {
    '1h': { label: 'Last hour', ms: 3600e3, step: 60 },
    '24h': { label: 'Last 24 hours', ms: 86400e3, step: 900 },
    '7d': { label: 'Last 7 days', ms: 7 * 86400e3, step: 3600 },
  };
  const rangeSelect = (id, value) => h('select', { id, test: id }, Object.entries(RANGES).map(([k, r]) => option(k, r.label, k === value)));
  async function fetchTimeline(rangeKey, campaignId) {
    const r = RANGES[rangeKey] || RANGES['24h'];
    const to = Math.ceil(Date.now() / (r.step * 1000)) * r.step * 1000;
    const q = new URLSearchParams({ from: isoZ(to - r.ms), to: isoZ(to), step: String(r.step) });
    if (campaignId) q.set('campaign_id', campaignId);
    const t = await api('GET', `/v1/stats/timeline?${q}`);
    return { points: t.points || [], from: isoZ(to - r.ms), to: isoZ(to), step: t.step_s || r.step };
  }
  const chartWidth = (el) => Math.max(260, (el.clientWidth || 600) - 2);
  function charts(tl, width, which) {
    return which.map((by) => Charts.timeline(tl.points, { ...tl, by, width, title: `Transitions by ${by}` }));
  }

  // ---------------------------------------------------------------- login, header, router
  function showLogin(message) {
    S.token = S.scope = S.types = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (ctx) ctx.dispose();
    $('#nav').hidden = $('#nav-toggle').hidden = true;
    const input = h('input', { id: 'login-token', type: 'password', test: 'login-token', autocomplete: 'off', spellcheck: 'false',
      required: true, 'aria-describedby': 'login-error' });
    const err = h('p', { class: 'err', id: 'login-error', test: 'login-error', role: 'alert', hidden: !message }, message || '');
    const btn = h('button', { type: 'submit', test: 'login-submit' }, 'Sign in');
    const form = h('form', { class: 'card login', test: 'login', novalidate: true },
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'Use an admin API token. A read token can look at everything; a write token can also change things.'),
      h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Admin token'), input, err), btn);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      const fail = (msg) => { err.textContent = msg; err.hidden = false; input.setAttribute('aria-invalid', 'true'); input.focus(); };
      if (!token) return fail('Enter a token.');
      btn.disabled = true;
      try {
        const r = await api('GET', '/v1/whoami', undefined, { token, login: true });
        sessionStorage.setItem(TOKEN_KEY, token);
        enter(token, r.scope);
      } catch (e) {
        fail(e.status === 401 ? 'This token is not valid.' : errText(e));
      } finally { btn.disabled = false; }
    });
    put($('#main'), form);
    input.focus();
  }
  function enter(token, scope) {
    S.token = token;
    S.scope = scope === 'write' ? 'write' : 'read';
    $('#nav').hidden = $('#nav-toggle').hidden = false;
    const sc = $('#scope');
    sc.textContent = S.scope === 'write' ? 'write access' : 'read-only';
    sc.dataset.scope = S.scope;
    clearFlash();
    route();
  }
  function closeNav() {
    document.body.classList.remove('nav-open');
    $('#nav-toggle').setAttribute('aria-expanded', 'false');
  }
  const ROUTES = [
    [/^#\/campaigns\/?$/, 'campaigns', pageCampaigns],
    [/^#\/campaigns\/new$/, 'campaigns', (c, m) => pageCampaignForm(c, m, null)],
    [/^#\/campaigns\/([^/]+)\/edit$/, 'campaigns', pageCampaignForm],
    [/^#\/campaigns\/([^/]+)$/, 'campaigns', pageCampaign],
    [/^#\/templates\/?$/, 'templates', pageTemplates],
    [/^#\/templates\/new$/, 'templates', (c, m) => pageTemplate(c, m)],
    [/^#\/templates\/([^/]+)\/([^/]+)\/([^/]+)$/, 'templates', pageTemplate],
    [/^#\/stats(?:\?campaign=([^&]*))?$/, 'stats', pageStats],
    [/^#\/dead-letters\/?$/, 'dead-letters', pageDeadLetters],
  ];
  async function route() {
    if (!S.scope) return;
    closeNav();
    const hash = location.hash || '#/campaigns';
    for (const [re, nav, page] of ROUTES) {
      const m = hash.match(re);
      if (!m) continue;
      for (const a of document.querySelectorAll('#nav a')) {
        if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      }
      const c = newCtx();
      const main = $('#main');
      put(main, h('p', { class: 'muted' }, 'Loading…'));
      try {
        await page(c, main, ...m.slice(1).map((x) => (x === undefined ? undefined : decodeURIComponent(x))));
      } catch (e) {
        if (c.alive && !e.handled) {
          c.dispose();
          put(main, errorBox(e));
        }
      }
      return;
    }
    location.replace('#/campaigns');
  }

  // ---------------------------------------------------------------- campaigns list
  async function pageCampaigns(c, main) {
    const stateSel = h('select', { id: 'campaign-state', test: 'campaign-state-filter' }, option('', 'All states'), STATES.map((s) => option(s)));
    const tbody = h('tbody');
    const status = h('p', { class: 'box warn', test: 'page-status', role: 'status', hidden: true });
    const empty = h('p', { class: 'muted', test: 'campaigns-empty', hidden: true }, 'No campaigns yet.');
    const count = h('span', { class: 'muted', test: 'campaigns-count' });
    const cols = ['Name', 'Event type', 'State', 'Runs', 'Next run', 'Progress', canWrite() ? 'Actions' : null].filter(Boolean);
    put(main,
      h('div', { class: 'page-head' }, h('h1', {}, 'Campaigns'), count,
        canWrite() && h('button', { type: 'button', test: 'new-campaign', onclick: () => go('#/campaigns/new') }, 'New campaign')),
      h('div', { class: 'toolbar' }, h('label', { for: 'campaign-state' }, 'State'), stateSel),
      status,
      h('div', { class: 'table-wrap' }, h('table', { class: 'campaigns stack', test: 'campaigns' },
        h('thead', {}, h('tr', {}, cols.map((x) => h('th', { scope: 'col' }, x)))), tbody)),
      empty);
    const rows = new Map();
    const refresh = poller(c, 2000, async () => {
      const q = stateSel.value ? `&state=${enc(stateSel.value)}` : '';
      const list = await api('GET', `/v1/campaigns?limit=100${q}`);
      const stats = await Promise.all(list.campaigns.map((x) => (x.state === 'draft' ? null
        : api('GET', `/v1/campaigns/${enc(x.id)}/stats`).catch((e) => { if (e.handled) throw e; return null; }))));
      if (!c.alive) return;
      const seen = new Set();
      let prev = null;
      list.campaigns.forEach((cmp, i) => {
        const p = stats[i] && stats[i].progress;
        const sig = JSON.stringify([cmp, p]);
        let r = rows.get(cmp.id);
        if (!r || r.sig !== sig) {
          const tr = campaignRow(cmp, p, refresh);
          if (r) {
            const focus = r.tr.contains(document.activeElement) ? document.activeElement.dataset.test : null;
            r.tr.replaceWith(tr);
            const f = focus && tr.querySelector(`[data-test="${focus}"]`);
            if (f) f.focus();
          }
          r = { tr, sig };
          rows.set(cmp.id, r);
        }
        seen.add(cmp.id);
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== r.tr) tbody.insertBefore(r.tr, want);
        prev = r.tr;
      });
      for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
      empty.hidden = list.campaigns.length > 0;
      count.textContent = list.total > list.campaigns.length ? `${list.campaigns.length} of ${fmtNum(list.total)} (newest first)` : `${fmtNum(list.total)} in total`;
    }, status);
    stateSel.addEventListener('change', refresh);
    await refresh(true);
  }
  function campaignRow(cmp, p, after) {
    return h('tr', { test: 'campaign-row', 'data-id': cmp.id, 'data-state': cmp.state },
      h('td', { class: 'name', 'data-label': 'Name' }, h('a', { href: `#/campaigns/${enc(cmp.id)}`, test: 'campaign-link' }, cmp.name)),
      h('td', { 'data-label': 'Event type' }, h('code', {}, cmp.event_type)),
      h('td', { 'data-label': 'State' }, badge(cmp.state)),
      h('td', { class: 'num', 'data-label': 'Runs' }, fmtNum(cmp.runs)),
      h('td', { class: 'nowrap', 'data-label': 'Next run' }, cmp.next_run_at ? fmtDate(cmp.next_run_at) : '—'),
      h('td', { class: 'progress-cell', 'data-label': 'Progress' }, progress(p)),
      canWrite() && h('td', { class: 'actions' }, actionButtons(cmp, after)));
  }

  // ---------------------------------------------------------------- campaign detail
  function describeSegment(seg) {
    seg = seg || {};
    const n = seg.users && seg.users.length;
    if (seg.users) return `${fmtNum(n)} user${n === 1 ? '' : 's'}: ${seg.users.slice(0, 20).join(', ')}${n > 20 ? ', …' : ''}`;
    const parts = [['tags', seg.tags], ['time zones', seg.timezones], ['locales', seg.locales]].filter(([, v]) => v && v.length).map(([k, v]) => `${k}: ${v.join(', ')}`);
    return parts.length ? parts.join(' · ') : 'everyone';
  }
  async function pageCampaign(c, main, id) {
    const head = slot({ class: 'page-head', test: 'campaign-head' });
    const actions = slot({ class: 'row wrap actions-bar' });
    const status = h('p', { class: 'box warn', role: 'status', hidden: true });
    const prog = slot({ test: 'campaign-progress' });
    const lat = slot();
    const byChannel = slot();
    const byProvider = slot();
    const settings = slot();
    const chart = slot({ class: 'charts', test: 'campaign-chart' });
    const range = rangeSelect('campaign-range', '24h');
    let tl = null;
    put(main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/campaigns' }, '← Campaigns')), head, actions, status,
      h('section', { class: 'card' }, h('h2', {}, 'Progress'), prog),
      h('section', { class: 'card' }, h('h2', {}, 'Latency (event created → sent)'), lat),
      h('div', { class: 'cols' },
        h('section', { class: 'card' }, h('h2', {}, 'By channel and status'), byChannel),
        h('section', { class: 'card' }, h('h2', {}, 'By provider'), byProvider)),
      h('section', { class: 'card' }, h('div', { class: 'row between wrap' }, h('h2', {}, 'Timeline'),
        h('span', { class: 'row' }, h('label', { for: 'campaign-range' }, 'Range'), range,
          h('a', { class: 'nowrap', href: `#/stats?campaign=${enc(id)}` }, 'More statistics'))), chart),
      h('section', { class: 'card' }, h('h2', {}, 'Settings'), settings));
    const refresh = poller(c, 2000, async () => {
      let cmp, st;
      try {
        [cmp, st] = await Promise.all([api('GET', `/v1/campaigns/${enc(id)}`), api('GET', `/v1/campaigns/${enc(id)}/stats`)]);
      } catch (e) {
        if (e.status !== 404 || !c.alive) throw e;
        c.dispose(); // deleted meanwhile: stop polling
        return put(main, h('div', { class: 'box warn', test: 'page-error' }, `Campaign ${id} does not exist (any more). `,
          h('a', { href: '#/campaigns' }, 'Back to campaigns')));
      }
      if (!c.alive) return;
      head.update(cmp, () => [h('h1', {}, cmp.name), badge(cmp.state)]);
      actions.update([cmp.state, cmp.version], () => actionButtons(cmp, (a) => (a === 'delete' ? go('#/campaigns') : refresh())));
      main.querySelector('.page-head').dataset.state = cmp.state;
      prog.update(st.progress, (p) => progress(p, true));
      lat.update(st.latency_ms, (l) => latencyTiles(l, 'campaign-latency'));
      byChannel.update(st.by_channel, (b) => matrix(b, 'channel', 'campaign-by-channel'));
      byProvider.update(st.by_provider, (b) => matrix(b, 'provider', 'campaign-by-provider'));
      settings.update(cmp, () => campaignSettings(cmp));
    }, status);
    const drawChart = () => chart.update({ tl, w: chartWidth(chart) }, () => (tl ? charts(tl, chartWidth(chart), ['status', 'channel']) : null));
    const loadChart = poller(c, 15000, async () => {
      const t = await fetchTimeline(range.value, id);
      if (c.alive) { tl = t; drawChart(); }
    }, status);
    range.addEventListener('change', loadChart);
    c.on(window, 'resize', debounce(drawChart, 200));
    await refresh(true);
    if (c.alive) loadChart();
  }
  function campaignSettings(cmp) {
    const dw = cmp.deliver_window;
    const rows = [
      ['Id', h('code', {}, cmp.id)], ['Event type', h('code', {}, cmp.event_type)], ['Recipients', describeSegment(cmp.segment)],
      ['Channels', (cmp.channels || []).join(', ')], ['Priority', cmp.priority],
      ['Delivery window', dw ? `${dw.from}–${dw.to} (recipient's local time)` : "the type's"],
      ['Content', (cmp.content || []).join(', ') || '—'],
      ['Data', h('pre', { class: 'code' }, JSON.stringify(cmp.data || {}, null, 2))],
      ['Start', fmtDate(cmp.start_at)], ['End', fmtDate(cmp.end_at)],
      ['Schedule', cmp.cron ? h('span', {}, h('code', {}, cmp.cron), ` (${cmp.timezone})`) : 'one run'],
      ['Runs', fmtNum(cmp.runs)], ['Next run', fmtDate(cmp.next_run_at)], ['Version', String(cmp.version)],
      ['Created', `${fmtDate(cmp.created_at)} by ${cmp.created_by}`], ['Updated', fmtDate(cmp.updated_at)],
    ];
    return h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  // ---------------------------------------------------------------- forms
  // Per-field error elements (`<prefix>-error-<key>`) plus a summary box for unmapped errors.
  function formErrors(prefix) {
    const els = {}, inputs = {};
    const summary = h('div', { class: 'box error', test: `${prefix}-error-summary`, role: 'alert', hidden: true });
    const self = {
      summary,
      el(key, input, pointer) {
        const e = h('p', { class: 'err', id: `${prefix}-err-${key}`, test: `${prefix}-error-${key}`, 'data-field': pointer, hidden: true });
        els[key] = e;
        if (input) {
          inputs[key] = input;
          input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), e.id].filter(Boolean).join(' '));
        }
        return e;
      },
      clear() {
        for (const e of Object.values(els)) { e.hidden = true; e.textContent = ''; }
        for (const i of Object.values(inputs)) i.removeAttribute('aria-invalid');
        summary.hidden = true;
        put(summary);
      },
      set(key, msg) {
        const e = els[key];
        if (!e) return false;
        e.textContent = e.textContent ? `${e.textContent}; ${msg}` : msg;
        e.hidden = false;
        if (inputs[key]) inputs[key].setAttribute('aria-invalid', 'true');
        return true;
      },
      note(title, list) {
        put(summary, h('strong', {}, title), list && list.length ? h('ul', {}, list.map((x) => h('li', {}, x))) : null);
        summary.hidden = false;
      },
      // Shows API field errors: each next to its field (mapped from the JSON pointer), the rest in the summary.
      show(errors, keyOf, title) {
        const rest = [];
        for (const { field, error } of errors) {
          const idx = String(field || '').match(/\/(\d+)(?:\/|$)/);
          const msg = idx ? `item ${Number(idx[1]) + 1}: ${error}` : error;
          if (!self.set(keyOf(field), msg)) rest.push(field ? `${field}: ${error}` : error);
        }
        if (rest.length || !errors.length) self.note(title, rest);
        const first = Object.entries(inputs).find(([k]) => !els[k].hidden);
        (first ? first[1] : summary).focus();
      },
    };
    summary.tabIndex = -1;
    return self;
  }
  function field(label, control, err, hint, cls) {
    if (!control.id) control.id = `f${++uid}`;
    const kids = [h('label', { for: control.id }, label), control];
    if (hint) {
      const hid = `${control.id}-hint`;
      kids.push(h('p', { class: 'hint', id: hid }, hint));
      control.setAttribute('aria-describedby', [hid, control.getAttribute('aria-describedby')].filter(Boolean).join(' '));
    }
    if (err) kids.push(err);
    return h('div', { class: `field ${cls || ''}` }, kids);
  }
  const readOnlyNotice = () => h('div', { class: 'box warn', test: 'read-only' }, 'Your token has the read scope: this page needs write access.');

  // ---------------------------------------------------------------- campaign form
  const CF_KEYS = { name: 'name', event_type: 'event-type', channels: 'channels', priority: 'priority', content: 'content',
    data: 'data', start_at: 'start', end_at: 'end', cron: 'cron', timezone: 'timezone' };
  function cfKey(pointer) {
    const [a, b] = String(pointer || '').split('/').slice(1);
    if (a === 'segment') return { tags: 'tags', timezones: 'timezones', locales: 'locales', users: 'users' }[b] || 'segment';
    if (a === 'deliver_window') return b === 'to' ? 'window-to' : 'window-from';
    return CF_KEYS[a] || null;
  }
  async function pageCampaignForm(c, main, id) {
    if (!canWrite()) return put(main, readOnlyNotice());
    const [types, cmp] = await Promise.all([eventTypes(), id ? api('GET', `/v1/campaigns/${enc(id)}`) : null]);
    if (!c.alive) return;
    const back = id ? `#/campaigns/${enc(id)}` : '#/campaigns';
    if (cmp && !['draft', 'scheduled', 'paused'].includes(cmp.state)) {
      return put(main, h('div', { class: 'box warn' }, `A ${cmp.state} campaign cannot be edited. `, h('a', { href: back }, 'Back to the campaign')));
    }
    const v = cmp || { name: '', event_type: types[0] && types[0].name, segment: {}, channels: null, priority: '',
      deliver_window: null, content: [], data: {}, start_at: null, end_at: null, cron: null, timezone: 'UTC' };
    const seg = v.segment || {};
    const E = formErrors('cf');
    const input = (test, props) => h('input', { type: 'text', id: test, test, autocomplete: 'off', ...props });
    const name = input('cf-name', { value: v.name, maxlength: 200, required: true });
    const type = h('select', { id: 'cf-event-type', test: 'cf-event-type' },
      [['Marketing', true], ['Other', false]].map(([label, mk]) => {
        const list = types.filter((t) => !!t.marketing === mk);
        return list.length ? h('optgroup', { label }, list.map((t) => option(t.name, `${t.name} — ${t.title}`, t.name === v.event_type))) : null;
      }));
    const typeHint = h('p', { class: 'hint', id: 'cf-type-hint' });
    const usersMode = Array.isArray(seg.users);
    const modeTags = h('input', { type: 'radio', name: 'cf-mode', id: 'cf-mode-tags', test: 'cf-segment-mode-tags', value: 'filter', checked: !usersMode });
    const modeUsers = h('input', { type: 'radio', name: 'cf-mode', id: 'cf-mode-users', test: 'cf-segment-mode-users', value: 'users', checked: usersMode });
    const tags = input('cf-tags', { value: (seg.tags || []).join(', '), placeholder: 'drama-fans, premium' });
    const tzs = input('cf-timezones', { value: (seg.timezones || []).join(', '), placeholder: 'Europe/Moscow' });
    const locs = input('cf-locales', { value: (seg.locales || []).join(', '), placeholder: 'ru, en' });
    const users = h('textarea', { id: 'cf-users', test: 'cf-users', rows: 3, value: (seg.users || []).join(', '), placeholder: 'u-100231, u-100232' });
    const filterBox = h('div', { class: 'grid3' },
      field('Tags', tags, E.el('tags', tags, '/segment/tags'), 'comma-separated'),
      field('Time zones', tzs, E.el('timezones', tzs, '/segment/timezones'), 'IANA zones, comma-separated'),
      field('Locales', locs, E.el('locales', locs, '/segment/locales'), 'ru, en'));
    const usersBox = field('User ids', users, E.el('users', users, '/segment/users'), 'comma- or newline-separated');
    const syncMode = () => { filterBox.hidden = modeUsers.checked; usersBox.hidden = !modeUsers.checked; };
    modeTags.addEventListener('change', syncMode);
    modeUsers.addEventListener('change', syncMode);
    syncMode();
    const checks = h('div', { class: 'checks', role: 'group', 'aria-labelledby': 'cf-channels-legend' });
    const chErr = E.el('channels', null, '/channels');
    const prio = h('select', { id: 'cf-priority', test: 'cf-priority' });
    const typeInfo = () => types.find((t) => t.name === type.value);
    function syncType(initial) {
      const t = typeInfo();
      const chs = t ? t.channels : [];
      // Keep the previous choice where the new type has the channel; "all" stays "all".
      const prev = new Set([...checks.querySelectorAll('input:checked')].map((x) => x.value));
      const all = !checks.querySelector('input:not(:checked)');
      const on = (ch) => (initial === true ? !v.channels || v.channels.includes(ch)
        : all || !chs.some((x) => prev.has(x)) || prev.has(ch));
      put(checks, ...chs.map((ch) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', value: ch, test: `cf-channel-${ch}`, checked: on(ch) }), ` ${ch}`)));
      const cur = initial === true ? v.priority || '' : prio.value;
      put(prio, option('', `Type default (${t ? t.priority : 'normal'})`), ['high', 'normal', 'low'].map((p) => option(p, p, p === cur)));
      typeHint.textContent = t ? `${t.title}. ${t.marketing ? 'Marketing (needs consent). ' : ''}Category ${t.category}.` +
        (t.data_fields.length ? ` Data fields: ${t.data_fields.join(', ')}.` : '') + ` Template variables: ${t.variables.join(', ')}.` : '';
    }
    type.addEventListener('change', syncType);
    syncType(true);
    const wFrom = input('cf-window-from', { value: v.deliver_window ? v.deliver_window.from : '', placeholder: 'HH:MM', inputmode: 'numeric', maxlength: 5 });
    const wTo = input('cf-window-to', { value: v.deliver_window ? v.deliver_window.to : '', placeholder: 'HH:MM', inputmode: 'numeric', maxlength: 5 });
    const content = input('cf-content', { value: (v.content || []).join(', '), placeholder: 'movie-8812, movie-9034' });
    const data = h('textarea', { id: 'cf-data', test: 'cf-data', rows: 5, spellcheck: 'false', class: 'mono', value: JSON.stringify(v.data || {}, null, 2) });
    const start = h('input', { type: 'datetime-local', id: 'cf-start', test: 'cf-start', value: toLocalInput(v.start_at) });
    const end = h('input', { type: 'datetime-local', id: 'cf-end', test: 'cf-end', value: toLocalInput(v.end_at) });
    const cron = input('cf-cron', { value: v.cron || '', placeholder: '0 10 * * 1', spellcheck: 'false' });
    const tz = input('cf-timezone', { value: v.timezone || 'UTC', list: 'cf-tz-list', spellcheck: 'false' });
    const tzList = h('datalist', { id: 'cf-tz-list' }, (Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : ['UTC']).map((z) => option(z)));
    const save = h('button', { type: 'submit', test: 'cf-save' }, id ? 'Save changes' : 'Create campaign');
    const conflict = h('div', { class: 'box error', test: 'cf-conflict', role: 'alert', hidden: true });
    const form = h('form', { class: 'card form', test: 'campaign-form', novalidate: true },
      conflict, E.summary,
      field('Name', name, E.el('name', name, '/name')),
      field('Event type', type, E.el('event-type', type, '/event_type')), typeHint,
      h('fieldset', {}, h('legend', {}, 'Recipients'),
        h('div', { class: 'row wrap' }, h('label', { class: 'check' }, modeTags, ' By tags, time zones and locales'),
          h('label', { class: 'check' }, modeUsers, ' Explicit user ids')),
        filterBox, usersBox, E.el('segment', null, '/segment')),
      h('fieldset', {}, h('legend', { id: 'cf-channels-legend' }, 'Channels'), checks, chErr),
      h('div', { class: 'grid3' },
        field('Priority', prio, E.el('priority', prio, '/priority')),
        field('Deliver from', wFrom, E.el('window-from', wFrom, '/deliver_window/from'), "HH:MM, recipient's local time; empty: the type's window"),
        field('Deliver until', wTo, E.el('window-to', wTo, '/deliver_window/to'), 'HH:MM')),
      field('Content ids', content, E.el('content', content, '/content'), 'movie / episode ids, comma-separated'),
      field('Data (JSON object)', data, E.el('data', data, '/data'), 'template variables'),
      h('div', { class: 'grid2' },
        field('Start at', start, E.el('start', start, '/start_at'), `your local time (${utcOffset()}); empty: at launch`),
        field('End at', end, E.el('end', end, '/end_at'), 'no run starts after it; undelivered messages expire')),
      h('div', { class: 'grid2' },
        field('Cron (recurring)', cron, E.el('cron', cron, '/cron'), '5 fields, e.g. "0 10 * * 1"; empty: one run'),
        field('Cron time zone', tz, E.el('timezone', tz, '/timezone'), 'IANA zone, e.g. Europe/London'), tzList),
      h('div', { class: 'row' }, save, h('a', { href: back, class: 'button ghost' }, 'Cancel')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      E.clear();
      conflict.hidden = true;
      let d;
      try {
        d = data.value.trim() ? JSON.parse(data.value) : {};
      } catch (e) {
        d = e;
      }
      if (!d || typeof d !== 'object' || Array.isArray(d) || d instanceof Error) {
        E.set('data', d instanceof Error ? `not valid JSON: ${d.message}` : 'must be a JSON object');
        return data.focus();
      }
      const segment = modeUsers.checked ? { users: splitList(users.value) } : {};
      if (!modeUsers.checked) {
        for (const [k, el] of [['tags', tags], ['timezones', tzs], ['locales', locs]]) if (splitList(el.value).length) segment[k] = splitList(el.value);
      }
      const body = {
        name: name.value.trim(), event_type: type.value, segment,
        channels: [...checks.querySelectorAll('input:checked')].map((x) => x.value),
        deliver_window: wFrom.value.trim() || wTo.value.trim() ? { from: wFrom.value.trim(), to: wTo.value.trim() } : null,
        content: splitList(content.value), data: d,
        start_at: fromLocalInput(start.value), end_at: fromLocalInput(end.value),
        cron: cron.value.trim() || null, timezone: tz.value.trim() || 'UTC',
      };
      if (prio.value) body.priority = prio.value;
      if (cmp) body.version = cmp.version;
      save.disabled = true;
      try {
        const r = cmp ? await api('PUT', `/v1/campaigns/${enc(cmp.id)}`, body) : await api('POST', '/v1/campaigns', body);
        flash(cmp ? `Campaign “${r.name}” saved.` : `Campaign “${r.name}” created as a draft.`);
        go(`#/campaigns/${enc(r.id)}`);
      } catch (e) {
        if (e.handled) return;
        if (e.status === 400) E.show(fieldErrors(e), cfKey, `The campaign was not saved: ${e.message}`);
        else if (e.status === 409 && cmp) {
          put(conflict, h('strong', {}, 'This campaign changed meanwhile'),
            ` (${e.body.state ? `it is now ${e.body.state}: ` : ''}${e.message}). Reload to edit the current version; your changes here are not saved. `,
            h('button', { type: 'button', class: 'small', test: 'cf-reload', onclick: () => route() }, 'Reload'));
          conflict.hidden = false;
          conflict.scrollIntoView({ block: 'center' });
        } else E.note(errText(e));
      } finally { save.disabled = false; }
    });
    put(main, h('p', { class: 'crumbs' }, h('a', { href: back }, '← Back')),
      h('h1', {}, cmp ? `Edit “${cmp.name}”` : 'New campaign'), form);
    name.focus();
  }

  // ---------------------------------------------------------------- templates
  const tplHash = (t, ch, l) => `#/templates/${enc(t)}/${enc(ch)}/${enc(l)}`;
  async function pageTemplates(c, main) {
    const [types, r] = await Promise.all([eventTypes(), api('GET', '/v1/templates')]);
    if (!c.alive) return;
    const list = r.templates.slice().sort((a, b) => a.event_type.localeCompare(b.event_type) || a.channel.localeCompare(b.channel) || a.locale.localeCompare(b.locale));
    const q = h('input', { type: 'search', id: 'tpl-filter', test: 'tpl-filter', placeholder: 'type, channel, locale, author…' });
    const typeSel = h('select', { id: 'tpl-type', test: 'tpl-type-filter' }, option('', 'All event types'), types.map((t) => option(t.name)));
    const rows = list.map((t) => h('tr', { test: 'template-row', 'data-key': `${t.event_type}/${t.channel}/${t.locale}` },
      h('td', {}, h('a', { href: tplHash(t.event_type, t.channel, t.locale) }, t.event_type)),
      h('td', {}, t.channel), h('td', {}, t.locale), h('td', { class: 'num' }, `v${t.version}`),
      h('td', {}, t.created_by), h('td', { class: 'nowrap' }, fmtDate(t.created_at))));
    const none = h('p', { class: 'muted', hidden: true }, 'No template matches.');
    const apply = () => {
      const words = q.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      rows.forEach((tr, i) => {
        const t = list[i];
        const hay = `${t.event_type} ${t.channel} ${t.locale} ${t.created_by} v${t.version}`.toLowerCase();
        tr.hidden = (typeSel.value && t.event_type !== typeSel.value) || !words.every((w) => hay.includes(w));
        if (!tr.hidden) shown++;
      });
      none.hidden = shown > 0;
    };
    q.addEventListener('input', apply);
    typeSel.addEventListener('change', apply);
    put(main,
      h('div', { class: 'page-head' }, h('h1', {}, 'Templates'), h('span', { class: 'muted' }, `${list.length} live`),
        canWrite() && h('button', { type: 'button', test: 'new-template', onclick: () => go('#/templates/new') }, 'New template')),
      h('div', { class: 'toolbar' }, h('label', { for: 'tpl-filter' }, 'Filter'), q, h('label', { for: 'tpl-type' }, 'Event type'), typeSel),
      table(['Event type', 'Channel', 'Locale', 'Version', 'Author', 'Saved'].map((label) => ({ label })), rows, { test: 'templates' }), none);
    apply();
  }

  async function pageTemplate(c, main, type, channel, locale) {
    const isNew = !type;
    const [types, r] = await Promise.all([eventTypes(), api('GET', '/v1/templates')]);
    if (!c.alive) return;
    const live = new Map(r.templates.map((t) => [`${t.event_type}/${t.channel}/${t.locale}`, t]));
    const key = { type: type || (types[0] && types[0].name), channel, locale: locale || 'en' };
    const info = () => types.find((t) => t.name === key.type);
    if (!info()) return put(main, h('div', { class: 'box error' }, `Unknown event type “${key.type}”. `, h('a', { href: '#/templates' }, 'Back to templates')));
    if (!key.channel) key.channel = info().channels[0];
    const ro = !canWrite();
    const E = formErrors('tf');
    const selType = h('select', { id: 'tf-type', test: 'tf-type' }, types.map((t) => option(t.name, t.name, t.name === key.type)));
    const selCh = h('select', { id: 'tf-channel', test: 'tf-channel' });
    const locales = [...new Set(['en', 'ru', ...r.templates.map((t) => t.locale), key.locale])].sort();
    const selLoc = h('select', { id: 'tf-locale', test: 'tf-locale' }, locales.map((l) => option(l, l, l === key.locale)));
    const fillChannels = () => {
      const chs = info().channels.includes(key.channel) ? info().channels : [...info().channels, key.channel];
      put(selCh, ...chs.map((ch) => option(ch, live.has(`${key.type}/${ch}/${key.locale}`) ? ch : `${ch} (none yet)`, ch === key.channel)));
    };
    fillChannels();
    const subj = h('input', { type: 'text', id: 'tf-subject', test: 'tf-subject', maxlength: 998, readOnly: ro });
    const text = h('textarea', { id: 'tf-text', test: 'tf-text', rows: 8, readOnly: ro });
    const html = h('textarea', { id: 'tf-html', test: 'tf-html', rows: 10, readOnly: ro, spellcheck: 'false', class: 'mono' });
    const subjLabel = h('span');
    const subjField = field(subjLabel, subj, E.el('subject', subj, '/subject'));
    const htmlField = field('HTML body', html, E.el('html', html, '/html'), 'variables are HTML-escaped');
    const textField = field('Text', text, E.el('text', text, '/text'));
    const vars = h('p', { class: 'hint vars', test: 'tf-variables' });
    const note = h('p', { class: 'box info', test: 'tf-note', hidden: true });
    const banner = h('div', { class: 'box warn', test: 'tf-version-banner', hidden: true });
    const history = h('ol', { class: 'history', test: 'tf-history' });
    const pErr = h('div', { class: 'box error', test: 'tf-preview-error', role: 'status', hidden: true });
    const pSubject = h('p', { class: 'p-subject', test: 'tf-preview-subject', hidden: true });
    const pText = h('pre', { class: 'p-text', test: 'tf-preview-text' });
    const frame = h('iframe', { sandbox: '', title: 'HTML preview', test: 'tf-preview-html', hidden: true, referrerpolicy: 'no-referrer' });
    const pState = h('span', { class: 'muted small' });
    const save = !ro && h('button', { type: 'submit', test: 'tf-save' }, 'Save');
    const del = !ro && h('button', { type: 'button', class: 'danger ghost', test: 'tf-delete', hidden: true }, 'Delete');
    let base = { subject: '', text: '', html: '' }, draft = null, viewing = null, lastFocus = text;
    const values = () => ({ subject: subj.value, text: text.value, html: html.value });
    const fill = (v) => { subj.value = v.subject || ''; text.value = v.text || ''; html.value = v.html || ''; };
    const dirty = () => !viewing && JSON.stringify(values()) !== JSON.stringify(base);
    function bodyOf(v) {
      const b = { text: v.text };
      if (key.channel === 'email' || (key.channel === 'push' && v.subject)) b.subject = v.subject;
      if (key.channel === 'email' && v.html) b.html = v.html;
      return b;
    }
    function syncKey() {
      subjLabel.textContent = key.channel === 'push' ? 'Title' : 'Subject';
      subjField.hidden = !['email', 'push'].includes(key.channel);
      htmlField.hidden = key.channel !== 'email';
      put(vars, 'Variables: ', info().variables.map((v) => (ro ? h('code', {}, `{{${v}}}`)
        : h('button', { type: 'button', class: 'chip', title: 'Insert at the cursor', onclick: () => insertVar(v) }, `{{${v}}}`))));
      const t = live.get(`${key.type}/${key.channel}/${key.locale}`);
      note.hidden = isNew ? !t : !!t;
      note.textContent = t ? `A template exists for this key (v${t.version}): saving adds a new version.`
        : `No template for ${key.type} / ${key.channel} / ${key.locale} yet${ro ? '.' : ': saving creates it.'}`;
      if (del) del.hidden = isNew || !t;
    }
    function insertVar(v) {
      const el = lastFocus.readOnly || lastFocus.closest('[hidden]') ? text : lastFocus;
      if (el.readOnly) return;
      const s = el.selectionStart ?? el.value.length, e = el.selectionEnd ?? s;
      el.setRangeText(`{{${v}}}`, s, e, 'end');
      el.focus();
      schedulePreview();
    }
    let seq = 0;
    async function runPreview() {
      const my = ++seq;
      const v = viewing || values();
      if (viewing && viewing.deleted) return showPreview({ error: 'This version is a deletion marker: nothing to render.' });
      if (!v.text) return showPreview({ error: 'The text is empty: nothing to render yet.' });
      pState.textContent = 'Rendering…';
      try {
        const res = await api('POST', '/v1/templates/preview', { event_type: key.type, channel: key.channel, locale: key.locale, template: bodyOf(v) });
        if (my !== seq || !c.alive) return;
        showPreview((res.previews && res.previews[0]) || { error: 'The API returned no preview.' });
      } catch (e) {
        if (my !== seq || !c.alive || e.handled) return;
        const list = fieldErrors(e).map((x) => `${x.field}: ${x.error}`);
        showPreview({ error: errText(e), extra: list });
      }
    }
    function showPreview(p) {
      pState.textContent = '';
      const unknown = p.unknown_variables && p.unknown_variables.length ? `Unknown variables: ${p.unknown_variables.join(', ')}` : null;
      const problems = [p.error, ...(p.extra || []), unknown].filter(Boolean);
      put(pErr, ...problems.map((x) => h('p', {}, x)));
      pErr.hidden = !problems.length;
      put(pSubject, h('span', { class: 'muted' }, key.channel === 'push' ? 'Title: ' : 'Subject: '), p.subject || '');
      pSubject.hidden = !p.subject;
      pText.textContent = p.text || '';
      pText.hidden = !p.text;
      frame.hidden = !p.html;
      if (p.html) frame.srcdoc = p.html;
    }
    const schedulePreview = debounce(runPreview, 400);
    function setReadOnly(on) { for (const el of [subj, text, html]) el.readOnly = on || ro; }
    function viewVersion(v) {
      if (!viewing) draft = values();
      viewing = v;
      fill(v);
      setReadOnly(true);
      put(banner, h('span', {}, `Viewing version ${v.version} (${fmtDate(v.created_at)}, ${v.created_by})${v.deleted ? ' — a deletion marker' : ''}: read-only. `),
        !ro && !v.deleted && h('button', { type: 'button', class: 'small', test: 'tf-restore',
          onclick: () => { const x = viewing; leaveVersion(); fill(x); runPreview(); } }, 'Restore into editor'),
        h('button', { type: 'button', class: 'small ghost', test: 'tf-back', onclick: () => { leaveVersion(); fill(draft); runPreview(); } }, 'Back to the draft'));
      banner.hidden = false;
      markHistory();
      runPreview();
    }
    function leaveVersion() { viewing = null; setReadOnly(false); banner.hidden = true; markHistory(); }
    function markHistory() {
      for (const b of history.querySelectorAll('button')) b.setAttribute('aria-pressed', String(!!viewing && Number(b.dataset.version) === viewing.version));
    }
    async function loadHistory() {
      if (!live.has(`${key.type}/${key.channel}/${key.locale}`)) return put(history, h('li', { class: 'muted' }, 'No versions yet.'));
      const res = await api('GET', `/v1/templates/${enc(key.type)}/${enc(key.channel)}/${enc(key.locale)}/versions`);
      if (!c.alive) return;
      put(history, ...res.versions.map((v, i) => h('li', {}, h('button', {
        type: 'button', class: 'link', test: 'tf-version', 'data-version': v.version, onclick: () => viewVersion(v),
      }, h('b', {}, `v${v.version}`), ` ${fmtDate(v.created_at)} · ${v.created_by}`, v.deleted ? h('span', { class: 'badge st-cancelled' }, 'deleted') : null,
      i === 0 && !v.deleted ? h('span', { class: 'badge st-running' }, 'live') : null))));
      markHistory();
    }
    async function switchKey(next) {
      if (isNew) {
        Object.assign(key, next);
        if (!info().channels.includes(key.channel)) key.channel = info().channels[0];
        fillChannels();
        syncKey();
        return schedulePreview();
      }
      if (dirty() && !(await confirmDialog('Discard the unsaved changes to this template?', 'Discard'))) {
        selType.value = key.type; selCh.value = key.channel; selLoc.value = key.locale;
        return;
      }
      const t = next.type || key.type;
      const ti = types.find((x) => x.name === t);
      const ch = next.channel || (ti.channels.includes(key.channel) ? key.channel : ti.channels[0]);
      go(tplHash(t, ch, next.locale || key.locale));
    }
    selType.addEventListener('change', () => switchKey({ type: selType.value }));
    selCh.addEventListener('change', () => switchKey({ channel: selCh.value }));
    selLoc.addEventListener('change', () => switchKey({ locale: selLoc.value }));
    for (const el of [subj, text, html]) {
      el.addEventListener('input', () => { if (!viewing) schedulePreview(); });
      el.addEventListener('focus', () => { lastFocus = el; });
    }
    const form = h('form', { class: 'card form', test: 'template-form', novalidate: true },
      E.summary, note, banner,
      h('div', { class: 'grid3' }, field('Event type', selType), field('Channel', selCh), field('Locale', selLoc)),
      subjField, textField, htmlField, vars,
      !ro && h('div', { class: 'row' }, save, del));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (ro || viewing) return;
      E.clear();
      save.disabled = true;
      try {
        const t = await api('PUT', `/v1/templates/${enc(key.type)}/${enc(key.channel)}/${enc(key.locale)}`, bodyOf(values()));
        flash(`Saved ${key.type} / ${key.channel} / ${key.locale} as version ${t.version}.`);
        if (isNew) return go(tplHash(key.type, key.channel, key.locale));
        base = values();
        live.set(`${key.type}/${key.channel}/${key.locale}`, t);
        syncKey();
        await loadHistory();
      } catch (e) {
        if (e.handled) return;
        const tfKey = (f) => ({ subject: 'subject', text: 'text', html: 'html' })[String(f || '').split('/')[1]] || null;
        if (e.status === 400) E.show(fieldErrors(e), tfKey, `Not saved: ${e.message}`);
        else E.note(`Not saved: ${errText(e)}`);
      } finally { save.disabled = false; }
    });
    if (del) {
      del.addEventListener('click', async () => {
        if (!(await confirmDialog(`Delete the template ${key.type} / ${key.channel} / ${key.locale}? Its history is kept.`, 'Delete'))) return;
        try {
          await api('DELETE', `/v1/templates/${enc(key.type)}/${enc(key.channel)}/${enc(key.locale)}`);
          flash(`Deleted ${key.type} / ${key.channel} / ${key.locale}.`);
          go('#/templates');
        } catch (e) { showError(e, 'Could not delete'); }
      });
    }
    put(main,
      h('p', { class: 'crumbs' }, h('a', { href: '#/templates' }, '← Templates')),
      h('h1', {}, isNew ? 'New template' : `${key.type} / ${key.channel} / ${key.locale}`),
      h('div', { class: 'editor' },
        h('div', { class: 'editor-main' }, form,
          h('section', { class: 'card' }, h('h2', {}, 'History'), history)),
        h('section', { class: 'card preview', test: 'tf-preview', 'aria-live': 'polite' },
          h('div', { class: 'row between' }, h('h2', {}, 'Preview'), pState),
          h('p', { class: 'hint' }, 'Rendered with sample values for every variable.'), pErr, pSubject, pText, frame)));
    syncKey();
    if (!isNew && live.has(`${key.type}/${key.channel}/${key.locale}`)) {
      const [t] = await Promise.all([api('GET', `/v1/templates/${enc(key.type)}/${enc(key.channel)}/${enc(key.locale)}`), loadHistory()]);
      if (!c.alive) return;
      base = { subject: t.subject || '', text: t.text || '', html: t.html || '' };
      fill(base);
    } else {
      put(history, h('li', { class: 'muted' }, 'No versions yet.'));
    }
    runPreview();
  }

  // ---------------------------------------------------------------- statistics
  async function pageStats(c, main, campaignParam) {
    const campSel = h('select', { id: 'stats-campaign', test: 'stats-campaign-select' }, option('', 'All campaigns'));
    if (campaignParam) campSel.append(option(campaignParam, campaignParam, true));
    const range = rangeSelect('stats-range', '24h');
    const status = h('p', { class: 'box warn', role: 'status', test: 'page-status', hidden: true });
    const lat = slot(), counts = slot(), chart = slot({ class: 'charts', test: 'stats-chart' });
    const channels = slot(), failures = slot();
    const chTitle = h('h2', {}, 'Channels and providers');
    let tl = null;
    put(main,
      h('div', { class: 'page-head' }, h('h1', {}, 'Statistics'),
        h('button', { type: 'button', class: 'ghost', test: 'stats-refresh', onclick: () => refresh() }, 'Refresh')),
      h('div', { class: 'toolbar' }, h('label', { for: 'stats-campaign' }, 'Campaign'), campSel, h('label', { for: 'stats-range' }, 'Range'), range),
      status,
      h('section', { class: 'card' }, h('h2', {}, 'Latency (event created → sent)'), lat),
      h('section', { class: 'card' }, h('h2', {}, 'Notifications by status'), counts),
      h('section', { class: 'card' }, h('h2', {}, 'Over time'), chart),
      h('section', { class: 'card' }, chTitle, channels),
      h('section', { class: 'card' }, h('h2', {}, 'Top failure reasons'), failures));
    const drawChart = () => chart.update({ tl, w: chartWidth(chart) }, () => (tl ? charts(tl, chartWidth(chart), ['status', 'channel']) : null));
    const refresh = poller(c, 10000, async () => {
      const cid = campSel.value;
      const [st, chs, t, f] = await Promise.all([
        api('GET', cid ? `/v1/campaigns/${enc(cid)}/stats` : '/v1/stats'),
        cid ? null : api('GET', '/v1/stats/channels'),
        fetchTimeline(range.value, cid),
        api('GET', `/v1/stats/failures?limit=10${cid ? `&campaign_id=${enc(cid)}` : ''}`),
      ]);
      if (!c.alive || cid !== campSel.value) return;
      lat.update(st.latency_ms, (l) => latencyTiles(l, 'stats-latency'));
      counts.update(st.by_status, statusTiles);
      tl = t;
      drawChart();
      chTitle.textContent = cid ? 'Channels and providers (this campaign)' : 'Channels and providers';
      channels.update([cid, chs, st.by_channel, st.by_provider], () => (chs ? channelTable(chs.channels)
        : [matrix(st.by_channel, 'channel', 'stats-channels'), matrix(st.by_provider, 'provider', 'stats-providers')]));
      failures.update(f.reasons, failureTable);
    }, status);
    campSel.addEventListener('change', refresh);
    range.addEventListener('change', refresh);
    c.on(window, 'resize', debounce(drawChart, 200));
    api('GET', '/v1/campaigns?limit=500').then((r) => {
      if (!c.alive) return;
      for (const x of r.campaigns) {
        const o = [...campSel.options].find((op) => op.value === x.id);
        if (o) o.textContent = `${x.name} (${x.state})`;
        else campSel.append(option(x.id, `${x.name} (${x.state})`));
      }
    }, (e) => showError(e, 'Could not list campaigns'));
    await refresh(true);
  }
  function channelTable(list) {
    const other = (b) => Object.entries(b || {}).filter(([k]) => !['sent', 'failed', 'suppressed'].includes(k)).reduce((a, [, n]) => a + n, 0);
    const cols = [{ label: 'Channel' }, { label: 'Provider' }, ...['sent', 'failed', 'suppressed', 'other', 'p50', 'p90', 'p99'].map((label) => ({ label, num: true }))];
    return table(cols, (list || []).map((x) => h('tr', {}, h('th', { scope: 'row' }, x.channel), h('td', {}, x.provider),
      ['sent', 'failed', 'suppressed'].map((k) => h('td', { class: 'num' }, fmtNum(x.by_status && x.by_status[k]))),
      h('td', { class: 'num' }, fmtNum(other(x.by_status))),
      ['p50', 'p90', 'p99'].map((k) => h('td', { class: 'num' }, fmtMs(x.latency_ms && x.latency_ms[k]))))), { test: 'stats-channels' });
  }
  function failureTable(reasons) {
    const max = Math.max(1, ...(reasons || []).map((r) => r.n));
    return table([{ label: 'Channel' }, { label: 'Reason' }, { label: 'Count', num: true }], (reasons || []).map((r) => {
      const bar = h('span', { class: 'hbar' });
      bar.style.width = `${(r.n * 100) / max}%`;
      return h('tr', { test: 'failure-row' }, h('td', {}, r.channel),
        h('td', { class: 'reason' }, r.reason, h('span', { class: 'hbar-track' }, bar)), h('td', { class: 'num' }, fmtNum(r.n)));
    }), { test: 'stats-failures' });
  }

  // ---------------------------------------------------------------- dead letters
  async function pageDeadLetters(c, main) {
    const tbody = h('tbody');
    const pane = h('section', { class: 'card dlq-detail', test: 'dlq-detail', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Select a record to see it.'));
    const status = h('p', { class: 'box warn', role: 'status', hidden: true });
    let selected = null;
    put(main,
      h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), h('span', { class: 'muted' }, '50 newest'),
        h('button', { type: 'button', class: 'ghost', test: 'dlq-refresh', onclick: () => load() }, 'Refresh')),
      status,
      h('div', { class: 'split' },
        h('div', { class: 'table-wrap' }, h('table', { class: 'stack', test: 'dlq' },
          h('thead', {}, h('tr', {}, ['Time', 'Stage', 'Class', 'Reason', 'Origin', ''].map((x) => h('th', { scope: 'col' }, x)))), tbody)),
        pane));
    const load = poller(c, 0, async () => {
      const r = await api('GET', '/v1/dead-letters?limit=50');
      if (!c.alive) return;
      put(tbody, ...(r.records.length ? r.records.map((d) => {
        const tr = h('tr', { test: 'dlq-row', 'data-partition': d.partition, 'data-offset': d.offset,
          onclick: (ev) => { if (!ev.target.closest('button')) open(d, tr); } },
          h('td', { class: 'nowrap', 'data-label': 'Time' }, dtfShort.format(new Date(d.timestamp))),
          h('td', { 'data-label': 'Stage' }, d.stage), h('td', { 'data-label': 'Class' }, h('code', {}, d.error_class)),
          h('td', { class: 'reason', 'data-label': 'Reason' }, d.reason),
          h('td', { class: 'origin', 'data-label': 'Origin' }, d.origin ? `${d.origin.topic} [${d.origin.partition}] @${d.origin.offset}` : '—'),
          h('td', { class: 'actions' }, h('button', { type: 'button', class: 'small ghost', test: 'dlq-view',
            'aria-label': `View dead letter ${d.partition}/${d.offset}`, onclick: () => open(d, tr) }, 'View')));
        if (selected && selected.partition === d.partition && selected.offset === d.offset) tr.setAttribute('aria-current', 'true');
        return tr;
      }) : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No dead letters. '))]));
    }, status);
    function open(d, tr) {
      selected = d;
      for (const x of tbody.querySelectorAll('tr[aria-current]')) x.removeAttribute('aria-current');
      tr.setAttribute('aria-current', 'true');
      let original = d.original == null ? '' : String(d.original), isJson = false;
      try { original = JSON.stringify(JSON.parse(original), null, 2); isJson = true; } catch { /* shown as it is */ }
      const result = h('div', { test: 'dlq-result', role: 'status' });
      const redrive = canWrite() && h('button', { type: 'button', test: 'dlq-redrive', onclick: async () => {
        const topic = d.origin ? d.origin.topic : 'its origin topic';
        if (!(await confirmDialog(`Re-drive dead letter ${d.partition}/${d.offset} to ${topic}? The stage processes it again.`, 'Re-drive', false))) return;
        redrive.disabled = true;
        try {
          const res = await api('POST', '/v1/dead-letters/redrive', { partition: d.partition, offset: d.offset });
          result.className = 'box ok';
          result.textContent = `Re-driven to ${res.topic}.`;
          flash(`Dead letter ${d.partition}/${d.offset} re-driven to ${res.topic}.`);
        } catch (e) {
          if (e.handled) return;
          result.className = 'box error';
          result.textContent = e.status === 404 ? 'This dead letter no longer exists.'
            : e.status === 409 ? `Not re-drivable: ${e.message}` : `Re-drive failed: ${errText(e)}`;
        } finally { redrive.disabled = false; }
      } }, 'Re-drive');
      const kv = [['Time', fmtDate(d.timestamp, true)], ['Stage', d.stage], ['Class', d.error_class], ['Reason', d.reason],
        ['Origin', d.origin ? `${d.origin.topic} partition ${d.origin.partition} offset ${d.origin.offset}` : '—'],
        ['Dead letter', `partition ${d.partition} offset ${d.offset}`], ['Key', d.key == null ? '(none)' : d.key]];
      put(pane, h('div', { class: 'row between' }, h('h2', {}, 'Record'), redrive), result,
        h('dl', { class: 'kv' }, kv.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
        h('h3', {}, isJson ? 'Original record (JSON)' : 'Original record'), h('pre', { class: 'code', test: 'dlq-original' }, original));
      if (matchMedia('(max-width: 900px)').matches) pane.scrollIntoView({ block: 'start' });
    }
    await load(true);
  }

  // ---------------------------------------------------------------- boot
  async function boot() {
    const toggle = $('#nav-toggle');
    toggle.addEventListener('click', () => {
      const open = document.body.classList.toggle('nav-open');
      toggle.setAttribute('aria-expanded', String(open));
    });
    $('#logout').addEventListener('click', () => { showLogin(); flash('Signed out.'); });
    window.addEventListener('hashchange', route);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showLogin();
    try {
      const r = await api('GET', '/v1/whoami', undefined, { token, login: true });
      enter(token, r.scope);
    } catch (e) {
      showLogin(e.status === 401 ? 'Your token is no longer accepted: sign in again.' : errText(e));
    }
  }
  boot();
})();
