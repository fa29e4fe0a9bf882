'use strict';
// Small inline-SVG charts for the Herald console. No library; every label is a text node.
window.HeraldCharts = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const STATUSES = ['accepted', 'scheduled', 'retried', 'fallback', 'sent', 'failed', 'suppressed', 'expired', 'cancelled'];
  const CHANNELS = ['email', 'sms', 'telegram', 'push'];
  const nf = new Intl.NumberFormat();

  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
    for (const k of kids.flat()) if (k != null) el.append(k);
    return el;
  }
  function html(tag, cls, ...kids) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    for (const k of kids.flat()) if (k != null) el.append(k);
    return el;
  }
  // A CSS class for a series name (statuses and channels are plain words; anything else is made safe).
  const cls = (k) => 'c-' + String(k).replace(/[^a-z0-9_-]/gi, '_');

  function compact(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1).replace(/\.0$/, '') + 'M';
    if (n >= 1e3) return (n / 1e3).toFixed(n >= 1e4 ? 0 : 1).replace(/\.0$/, '') + 'k';
    return String(Math.round(n * 100) / 100);
  }
  // The smallest "round" number (1, 2, 2.5, 5 × 10^k) at or above v; at least 4 so ticks stay whole.
  function niceMax(v) {
    if (!(v > 4)) return 4;
    const pow = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= v) return m * pow;
    return 10 * pow;
  }
  function ordered(keys, known) {
    return [...known.filter((k) => keys.has(k)), ...[...keys].filter((k) => !known.includes(k)).sort()];
  }

  // Legend: one swatch per series with its total.
  function legend(series, totals) {
    return html('ul', 'legend', series.map((k) =>
      html('li', null, html('span', 'sw ' + cls(k)), `${k} `, html('span', 'muted', nf.format(totals[k] || 0)))));
  }

  // Stacked bars of timeline points ({at, channel, status, n}) grouped by `by` ('status' or
  // 'channel'), over [from, to) in buckets of `step` seconds. Returns a <figure>.
  function timeline(points, { from, to, step, by, width, height = 220, title }) {
    const fromMs = Date.parse(from), toMs = Date.parse(to), span = Math.max(1, toMs - fromMs);
    const buckets = new Map(), keys = new Set(), totals = {};
    for (const p of points || []) {
      const t = Date.parse(p.at), k = p[by];
      if (!Number.isFinite(t) || !k || !(p.n > 0)) continue;
      keys.add(k);
      totals[k] = (totals[k] || 0) + p.n;
      if (!buckets.has(t)) buckets.set(t, new Map());
      const b = buckets.get(t);
      b.set(k, (b.get(k) || 0) + p.n);
    }
    const series = ordered(keys, by === 'channel' ? CHANNELS : STATUSES);
    let max = 0;
    for (const b of buckets.values()) max = Math.max(max, [...b.values()].reduce((a, v) => a + v, 0));
    const top = niceMax(max);
    const W = Math.max(260, Math.round(width || 600)), H = height;
    const m = { l: 42, r: 8, t: 10, b: 24 }, pw = W - m.l - m.r, ph = H - m.t - m.b;
    const x = (t) => m.l + ((t - fromMs) / span) * pw;
    const y = (v) => m.t + ph - (v / top) * ph;
    const all = Object.values(totals).reduce((a, v) => a + v, 0);
    const root = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img',
      'aria-label': `${title || 'Transitions'}: ${nf.format(all)} in total` +
        (series.length ? ` (${series.map((k) => `${k} ${nf.format(totals[k])}`).join(', ')})` : ''),
    });
    for (let i = 0; i <= 4; i++) {
      const yy = y((top * i) / 4);
      root.append(svg('line', { x1: m.l, x2: W - m.r, y1: yy, y2: yy, class: i ? 'grid' : 'axis' }),
        svg('text', { x: m.l - 5, y: yy + 4, class: 'ylab', 'text-anchor': 'end' }, compact((top * i) / 4)));
    }
    const long = span > 36 * 3600e3;
    const tick = new Intl.DateTimeFormat(undefined, long ? { month: 'short', day: 'numeric' } : { hour: '2-digit', minute: '2-digit' });
    const n = Math.max(2, Math.min(6, Math.floor(pw / 90)));
    for (let i = 0; i <= n; i++) {
      const t = fromMs + (span * i) / n;
      root.append(svg('line', { x1: x(t), x2: x(t), y1: m.t + ph, y2: m.t + ph + 4, class: 'axis' }),
        svg('text', { x: x(t), y: H - 6, class: 'xlab', 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle' }, tick.format(t)));
    }
    const tip = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    const bw = ((step * 1000) / span) * pw, gap = bw > 4 ? 1 : 0;
    for (const [t, b] of [...buckets].sort((a, c) => a[0] - c[0])) {
      const x0 = Math.max(m.l, x(t)), x1 = Math.min(W - m.r, x(t) + bw - gap);
      if (x1 <= x0) continue;
      const total = [...b.values()].reduce((a, v) => a + v, 0);
      const g = svg('g', { class: 'bucket' });
      let acc = 0;
      for (const k of series) {
        const v = b.get(k);
        if (!v) continue;
        const y0 = y(acc), y1 = y(acc + v);
        acc += v;
        g.append(svg('rect', { x: x0, y: y1, width: Math.max(1, x1 - x0), height: Math.max(0.5, y0 - y1), class: cls(k) },
          svg('title', {}, `${tip.format(t)} · ${k}: ${nf.format(v)} of ${nf.format(total)}`)));
      }
      root.append(g);
    }
    if (!buckets.size) {
      root.append(svg('text', { x: m.l + pw / 2, y: m.t + ph / 2, class: 'empty', 'text-anchor': 'middle' }, 'No transitions in this period'));
    }
    const fig = html('figure', 'chart-fig', title ? html('figcaption', null, title) : null, root, legend(series, totals));
    fig.dataset.by = by;
    fig.dataset.points = String(all);
    return fig;
  }

  return { timeline, STATUSES, CHANNELS };
})();
