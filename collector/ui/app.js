// The skytrace collector's web view. Plain JavaScript, no build step: it reads the collector's
// JSON API (/api/…), follows changes with a long poll (/api/changes), and builds the DOM with
// textContent only, so nothing an agent sent is ever parsed as HTML.
'use strict';

(() => {
  const main = document.getElementById('main');
  const liveBadge = document.getElementById('live');
  const pauseButton = document.getElementById('pause');

  const state = {
    version: -1,
    paused: false,
    route: { view: '', id: '', params: new URLSearchParams() },
    limit: 100,
    logLimit: 100,
    listHash: '#/traces',
    // The open trace: its document and what the reader opened or folded in it.
    trace: null,
    open: new Set(),
    folded: new Set(),
    seenTraces: null,
    rendered: null,
  };

  // ---- small helpers ----

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = value;
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? '' : value);
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child);
    return node;
  }

  const number = (n) => Number(n).toLocaleString('en-US');

  function ms(n) {
    if (n < 1000) return `${number(n)} ms`;
    if (n < 60000) return `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`;
    return `${(n / 60000).toFixed(1)} min`;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');
  function clock(t) {
    if (!t) return '—';
    const d = new Date(t);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function ago(t) {
    if (!t) return 'never';
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  function hue(name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  function colored(node, service) {
    node.style.setProperty('--hue', String(hue(service)));
    return node;
  }
  const chip = (service) => colored(el('span', { class: 'chip', text: service || '(no service)' }), service);

  async function getJSON(path) {
    const response = await fetch(path, { cache: 'no-store' });
    const body = await response.json().catch(() => null);
    if (!response.ok && response.status !== 404) throw new Error(`${path}: HTTP ${response.status}`);
    return { status: response.status, body };
  }

  const pairsText = (pairs) => pairs.map(([k, v]) => `${k}=${v}`).join(' ');

  // ---- routing: #/traces?…, #/trace/<id>?span=…, #/instances, #/meters, #/events, #/logs ----

  function parseRoute() {
    const hash = location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    const parts = path.split('/');
    const view = parts[0] || 'traces';
    const id = parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : '';
    return { view, id, params: new URLSearchParams(query || '') };
  }

  function setHashQuietly(hash) {
    history.replaceState(null, '', hash);
    state.route = parseRoute();
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function route() {
    const previous = state.route;
    state.route = parseRoute();
    const { view } = state.route;
    for (const link of document.querySelectorAll('nav a')) {
      const current = link.dataset.view === view || (view === 'trace' && link.dataset.view === 'traces');
      if (current) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (view === 'traces') state.listHash = location.hash || '#/traces';
    if (view !== 'trace' || previous.id !== state.route.id) {
      state.trace = null;
      state.open = new Set();
      state.folded = new Set();
    }
    const builders = { traces: buildTraces, trace: buildTrace, instances: buildInstances, meters: buildMeters, events: buildEvents, logs: buildLogs };
    (builders[view] || buildTraces)();
    refresh();
  }

  // ---- live updates ----

  let refreshing = false;
  let again = false;
  let lastRefresh = 0;
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      const wait = 300 - (Date.now() - lastRefresh);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      lastRefresh = Date.now();
      const [overview] = await Promise.all([getJSON('/api/overview'), fill()]);
      showCounts(overview.body);
    } catch (error) {
      showLive(false, String(error.message || error));
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  function showCounts(o) {
    if (!o) return;
    const set = (id, n) => { document.getElementById(id).textContent = n ? number(n) : ''; };
    set('count-traces', o.traces);
    set('count-instances', o.instances);
    set('count-series', o.series);
    set('count-events', o.events);
    set('count-logs', o.logs);
    state.overview = o;
  }

  function showLive(ok, why) {
    liveBadge.classList.toggle('down', !ok);
    liveBadge.classList.toggle('paused', ok && state.paused);
    liveBadge.textContent = !ok ? 'collector unreachable, retrying' : state.paused ? 'paused' : 'live';
    liveBadge.title = why || (state.paused ? 'New data is not shown until you resume (p)' : 'New data shows as it arrives');
  }

  async function follow() {
    for (;;) {
      try {
        const { body } = await getJSON(`/api/changes?after=${state.version}`);
        showLive(true);
        if (body && body.version !== state.version) {
          state.version = body.version;
          if (!state.paused) refresh();
        }
      } catch (error) {
        showLive(false, String(error.message || error));
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  pauseButton.addEventListener('click', () => togglePause());
  function togglePause() {
    state.paused = !state.paused;
    pauseButton.setAttribute('aria-pressed', String(state.paused));
    pauseButton.textContent = state.paused ? 'Resume' : 'Pause';
    showLive(true);
    if (!state.paused) refresh();
  }

  // What the current view shows, fetched again.
  function fill() {
    switch (state.route.view) {
      case 'trace': return fillTrace();
      case 'instances': return fillInstances();
      case 'meters': return fillMeters();
      case 'events': return fillEvents();
      case 'logs': return fillLogs();
      default: return fillTraces();
    }
  }

  // ---- the trace list ----

  function buildTraces() {
    const p = state.route.params;
    state.seenTraces = null;
    const service = el('select', { id: 'f-service', name: 'service', 'aria-label': 'Service' },
      el('option', { value: '', text: 'All services' }));
    const text = el('input', { id: 'f-q', name: 'q', type: 'search', placeholder: 'Endpoint or trace id', 'aria-label': 'Endpoint or trace id', value: p.get('q') || '' });
    const errors = el('input', { id: 'f-errors', name: 'errors', type: 'checkbox', checked: p.get('errors') === '1' });
    const min = el('input', { id: 'f-min', name: 'min_ms', type: 'number', min: '0', step: '1', inputmode: 'numeric', placeholder: '0', 'aria-label': 'Minimum duration in milliseconds', value: p.get('min_ms') || '' });
    service.dataset.want = p.get('service') || '';
    const form = el('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      el('label', null, 'Service ', service),
      el('label', { class: 'grow' }, 'Endpoint ', text),
      el('label', null, errors, ' Errors only'),
      el('label', null, 'Min duration ', min, ' ms'));
    const changed = () => {
      const q = new URLSearchParams();
      if (service.value) q.set('service', service.value);
      if (text.value.trim()) q.set('q', text.value.trim());
      if (errors.checked) q.set('errors', '1');
      if (min.value) q.set('min_ms', min.value);
      const query = q.toString();
      setHashQuietly(`#/traces${query ? `?${query}` : ''}`);
      state.listHash = location.hash;
      state.limit = 100;
      refresh();
    };
    let typing;
    text.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(changed, 200); });
    for (const input of [service, errors, min]) input.addEventListener('change', changed);
    min.addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(changed, 300); });

    const table = el('table', { id: 'trace-list', class: 'list' },
      el('caption', { class: 'visually-hidden', text: 'Recent traces, the latest first' }),
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', text: 'Start' }),
        el('th', { scope: 'col', text: 'Endpoint' }),
        el('th', { scope: 'col', text: 'Services' }),
        el('th', { scope: 'col', class: 'num', text: 'Duration' }),
        el('th', { scope: 'col', class: 'num narrow-hide', text: 'Spans' }),
        el('th', { scope: 'col', class: 'num', text: 'Errors' }))),
      el('tbody'));
    table.addEventListener('keydown', (e) => moveInList(e, 'a.open'));
    table.addEventListener('click', (e) => {
      const row = e.target.closest('tr[data-id]');
      if (row && !e.target.closest('a')) go(`#/trace/${encodeURIComponent(row.dataset.id)}`);
    });
    main.replaceChildren(
      el('h2', { class: 'visually-hidden', text: 'Traces' }),
      form,
      el('p', { id: 'list-summary', class: 'summary', role: 'status' }),
      el('div', { class: 'scroll' }, table),
      el('p', { class: 'more' }, el('button', { id: 'more', type: 'button', hidden: true, onclick: () => { state.limit += 100; refresh(); } }, 'Show more')));
  }

  async function fillTraces() {
    const p = state.route.params;
    const q = new URLSearchParams(p);
    q.set('limit', String(state.limit));
    const { body } = await getJSON(`/api/traces?${q}`);
    if (state.route.view !== 'traces' || !body) return;
    const select = document.getElementById('f-service');
    const want = select.value || select.dataset.want || '';
    const services = body.services.includes(want) || !want ? body.services : [...body.services, want];
    const options = [el('option', { value: '', text: 'All services' }), ...services.map((s) => el('option', { value: s, text: s }))];
    select.replaceChildren(...options);
    select.value = want;

    const o = state.overview;
    const summary = document.getElementById('list-summary');
    const shown = body.traces.length;
    let text = body.total === 0
      ? 'No traces yet: point an agent at this collector (SW_AGENT_COLLECTOR_BACKEND_SERVICES) and they show here as they arrive.'
      : `Showing ${number(shown)} of ${number(body.matched)} matching traces (${number(body.total)} kept, the latest first).`;
    if (o && o.dropped_segments) text += ` ${number(o.dropped_segments)} older segments were dropped: the last ${number(o.keep)} are kept (--keep).`;
    summary.textContent = text;
    document.getElementById('more').hidden = shown >= body.matched;

    const tbody = document.querySelector('#trace-list tbody');
    const focused = document.activeElement && document.activeElement.closest('tr[data-id]');
    const focusId = focused ? focused.dataset.id : null;
    const longest = Math.max(1, ...body.traces.map((t) => t.duration));
    const seen = state.seenTraces;
    // Rows of traces that did not change are kept as they are (a click on one is never lost to
    // a redraw); only new or changed traces get new rows.
    const existing = new Map([...tbody.querySelectorAll('tr[data-id]')].map((r) => [r.dataset.id, r]));
    const rows = body.traces.map((t) => {
      const old = existing.get(t.id);
      const stamp = `${t.updated}:${longest}`;
      if (old && old.dataset.stamp === stamp) {
        old.classList.remove('new');
        return old;
      }
      const bar = el('span', { class: 'dur-bar' });
      bar.style.width = `${Math.max(1, (t.duration / longest) * 100)}%`;
      const row = el('tr', { dataset: { id: t.id, stamp }, class: [t.errors ? 'has-error' : '', seen && !seen.has(t.id) ? 'new' : ''].join(' ').trim() || null },
        el('td', { class: 'time', text: clock(t.start) }),
        el('td', { class: 'endpoint' },
          el('a', { class: 'open', href: `#/trace/${encodeURIComponent(t.id)}`, title: `Trace ${t.id}` }, t.endpoint || '(no endpoint)')),
        el('td', null, el('div', { class: 'chips' }, t.services.map(chip))),
        el('td', { class: 'num duration' }, el('span', { class: 'dur-text', text: ms(t.duration) }), bar),
        el('td', { class: 'num narrow-hide', text: number(t.spans) }),
        el('td', { class: 'num' }, t.errors ? el('span', { class: 'error-badge', text: `${t.errors}`, title: `${t.errors} failed span(s)` }) : ''));
      return row;
    });
    state.seenTraces = new Set(body.traces.map((t) => t.id));
    if (rows.length === 0 && body.total > 0) {
      tbody.replaceChildren(el('tr', null, el('td', { colspan: '6', class: 'empty', text: 'No trace matches these filters.' })));
    } else if (rows.length !== tbody.children.length || rows.some((r, i) => tbody.children[i] !== r)) {
      tbody.replaceChildren(...rows);
    }
    if (focusId) {
      const again = [...tbody.querySelectorAll('tr[data-id]')].find((r) => r.dataset.id === focusId);
      if (again) again.querySelector('a.open').focus({ preventScroll: true });
    }
  }

  // ↑/↓ (and j/k) move between the rows' links of a list.
  function moveInList(e, selector) {
    const keys = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 };
    if (!(e.key in keys) || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.matches('input, select, textarea')) return;
    const links = [...e.currentTarget.querySelectorAll(selector)];
    const at = links.indexOf(document.activeElement);
    const next = links[Math.min(links.length - 1, Math.max(0, at < 0 ? 0 : at + keys[e.key]))];
    if (next) {
      e.preventDefault();
      next.focus();
    }
  }

  // ---- one trace: the waterfall ----

  function buildTrace() {
    main.replaceChildren(
      el('p', { class: 'back' }, el('a', { href: state.listHash, id: 'back' }, '← Traces')),
      el('div', { id: 'trace', 'aria-busy': 'true' }, el('p', { class: 'empty', text: 'Loading…' })));
  }

  async function fillTrace() {
    const id = state.route.id;
    const { status, body } = await getJSON(`/api/trace?id=${encodeURIComponent(id)}`);
    if (state.route.view !== 'trace' || state.route.id !== id) return;
    const root = document.getElementById('trace');
    if (status === 404 || !body) {
      state.trace = null;
      root.replaceChildren(
        el('h2', { text: 'Trace not kept' }),
        el('p', { class: 'empty' }, `No trace ${id} is kept: it has not arrived (yet), or its segments were dropped to stay within --keep. This page shows it as soon as it arrives.`));
      root.removeAttribute('aria-busy');
      return;
    }
    if (state.trace && state.trace.updated === body.updated && state.rendered === id) return;
    const first = !state.trace;
    state.trace = body;
    if (first) {
      const wanted = state.route.params.get('span');
      if (wanted) {
        const i = body.spans.findIndex((s) => `${s.segment}:${s.span_id}` === wanted);
        if (i >= 0) state.open.add(spanKey(body.spans[i]));
      } else {
        // The first failed span is what a reader looks for first.
        const failed = body.spans.find((s) => s.error);
        if (failed) state.open.add(spanKey(failed));
      }
    }
    renderTrace(root, first);
    state.rendered = id;
  }

  const spanKey = (s) => `${s.segment}:${s.span_id}`;

  function renderTrace(root, first) {
    const t = state.trace;
    const focusedKey = document.activeElement && document.activeElement.closest('[data-key]') ? document.activeElement.closest('[data-key]').dataset.key : null;
    const focusedToggle = document.activeElement && document.activeElement.classList.contains('fold');
    const rootSpan = t.spans.find((s) => s.parent < 0);
    const title = rootSpan ? rootSpan.name || '(no name)' : '(no spans)';
    const header = el('header', { class: 'trace-head' },
      el('h2', { id: 'trace-title' }, title),
      el('dl', { class: 'facts' },
        el('div', null, el('dt', { text: 'Trace' }), el('dd', { class: 'mono', id: 'trace-id', text: t.id })),
        el('div', null, el('dt', { text: 'Start' }), el('dd', { text: clock(t.start) })),
        el('div', null, el('dt', { text: 'Duration' }), el('dd', { text: ms(t.duration) })),
        el('div', null, el('dt', { text: 'Spans' }), el('dd', { text: `${number(t.spans.length)} in ${number(t.segments)} segment${t.segments === 1 ? '' : 's'}` })),
        el('div', null, el('dt', { text: 'Errors' }), el('dd', { class: t.errors ? 'error-text' : '', text: t.errors ? `${t.errors} failed span${t.errors === 1 ? '' : 's'}` : 'none' })),
        el('div', null, el('dt', { text: 'Services' }), el('dd', { class: 'services' }, t.services.map(chip)))));

    const total = Math.max(1, t.duration);
    const axis = el('div', { class: 'axis', 'aria-hidden': 'true' },
      el('span', { class: 'axis-name', text: 'Service · operation' }),
      el('span', { class: 'axis-ticks' }, [0, 0.25, 0.5, 0.75, 1].map((f) => {
        const tick = el('span', { class: 'tick', text: ms(Math.round(total * f)) });
        tick.style.left = `${f * 100}%`;
        return tick;
      })));

    // Spans under a folded one are not drawn.
    const hidden = new Array(t.spans.length).fill(false);
    t.spans.forEach((s, i) => {
      if (s.parent >= 0 && (hidden[s.parent] || state.folded.has(spanKey(t.spans[s.parent])))) hidden[i] = true;
    });
    const list = el('ol', { class: 'waterfall', id: 'waterfall', 'aria-label': 'Spans on a time axis, nested by caller' });
    t.spans.forEach((s, i) => {
      if (!hidden[i]) list.append(spanRow(t, s, i, total));
    });
    list.addEventListener('keydown', waterfallKeys);

    const extra = [];
    if (t.records.length) {
      extra.push(el('section', { class: 'orphans' },
        el('h3', { text: 'Log records of this trace in spans not received' }),
        el('ul', { class: 'records' }, t.records.map(recordItem))));
    }
    if (t.empty_segments.length) {
      extra.push(el('p', { class: 'summary' }, `Segments without spans: ${t.empty_segments.map((s) => `${s.service} ${s.segment}`).join(', ')}`));
    }
    root.replaceChildren(header, legend(t), axis, list, ...extra);
    root.removeAttribute('aria-busy');
    if (first) {
      document.title = `${title} · skytrace collector`;
      const open = list.querySelector('.span-row.open .span-name') || list.querySelector('.span-name');
      if (state.route.params.get('span') && open) {
        open.focus();
        open.scrollIntoView({ block: 'center' });
      }
    } else if (focusedKey) {
      const row = [...list.querySelectorAll('[data-key]')].find((r) => r.dataset.key === focusedKey);
      if (row) (focusedToggle ? row.querySelector('.fold') || row.querySelector('.span-name') : row.querySelector('.span-name')).focus({ preventScroll: true });
    }
  }

  function legend(t) {
    return el('p', { class: 'legend' },
      el('span', { class: 'legend-item' }, el('span', { class: 'swatch entry' }), 'Entry'),
      el('span', { class: 'legend-item' }, el('span', { class: 'swatch exit' }), 'Exit'),
      el('span', { class: 'legend-item' }, el('span', { class: 'swatch local' }), 'Local'),
      el('span', { class: 'legend-item' }, el('span', { class: 'swatch failed' }), 'Failed'),
      el('span', { class: 'legend-item' }, el('span', { class: 'swatch logmark' }), 'Span log'),
      t.spans.length > 1 ? el('span', { class: 'hint', text: 'Select a span for its tags, logs and log records.' }) : null);
  }

  function spanRow(t, s, i, total) {
    const key = spanKey(s);
    const open = state.open.has(key);
    const folded = state.folded.has(key);
    const indent = el('span', { class: 'indent' });
    indent.style.width = `${Math.min(s.depth, 24) * 0.9}rem`;
    const fold = s.children
      ? el('button', { type: 'button', class: 'fold', 'aria-expanded': String(!folded), 'aria-label': `${folded ? 'Show' : 'Hide'} the ${s.children} span(s) under ${s.name}`, text: folded ? '▸' : '▾', onclick: () => { toggleFold(key); } })
      : el('span', { class: 'fold-space' });
    const kind = s.kind.toLowerCase();
    const name = el('button', { type: 'button', class: 'span-name', 'aria-expanded': String(open), 'aria-controls': `detail-${i}`, onclick: () => toggleOpen(key) },
      s.first_of_segment || s.parent < 0 ? chip(s.service) : null,
      el('span', { class: 'op', text: s.name || '(no name)' }),
      el('span', { class: `kind ${kind}`, text: s.kind, title: `${s.kind} span` }),
      s.error ? el('span', { class: 'error-badge', text: 'error', title: 'This span failed' }) : null,
      s.records.length ? el('span', { class: 'record-badge', text: `${s.records.length} log${s.records.length === 1 ? '' : 's'}`, title: 'Log records written in this span' }) : null);
    const offset = s.start - t.start;
    const duration = Math.max(0, s.end - s.start);
    const bar = colored(el('span', { class: `bar ${kind}${s.error ? ' failed' : ''}` }), s.service);
    bar.style.left = `${(offset / total) * 100}%`;
    bar.style.width = `${Math.max(0.3, (duration / total) * 100)}%`;
    const marks = s.logs.map((log) => {
      const mark = el('span', { class: 'mark', title: `+${log.time - s.start} ms ${pairsText(log.data)}` });
      mark.style.left = `${((log.time - t.start) / total) * 100}%`;
      return mark;
    });
    const label = el('span', { class: 'bar-label', text: ms(duration) });
    label.style.left = `${((offset + duration) / total) * 100}%`;
    const track = el('span', { class: 'track', 'aria-hidden': 'true' }, bar, ...marks, label);
    const row = el('li', { class: `span-row${open ? ' open' : ''}${s.error ? ' failed' : ''}`, dataset: { key, depth: String(s.depth) } },
      el('div', { class: 'line' }, el('span', { class: 'name-cell' }, indent, fold, name), track),
      open ? spanDetail(t, s, i) : null);
    return row;
  }

  function toggleOpen(key) {
    if (state.open.has(key)) state.open.delete(key);
    else state.open.add(key);
    renderTrace(document.getElementById('trace'), false);
  }

  function toggleFold(key) {
    if (state.folded.has(key)) state.folded.delete(key);
    else state.folded.add(key);
    renderTrace(document.getElementById('trace'), false);
  }

  function fact(term, value, cls) {
    if (value === '' || value === null || value === undefined) return null;
    return el('div', null, el('dt', { text: term }), el('dd', { class: cls || null }, value));
  }

  function spanDetail(t, s, i) {
    const component = s.component_id ? (s.component ? `${s.component} (${s.component_id})` : `${s.component_id}`) : '';
    const peerTerm = s.kind === 'Entry' ? 'Client' : 'Peer';
    const facts = el('dl', { class: 'facts' },
      fact('Service', `${s.service} / ${s.instance}`),
      fact('Kind', s.kind),
      fact('Layer', s.layer),
      fact('Component', component),
      fact(peerTerm, s.peer, 'mono'),
      fact('Start', `+${number(s.start - t.start)} ms (${clock(s.start)})`),
      fact('Duration', ms(Math.max(0, s.end - s.start))),
      fact('Status', s.error ? 'failed' : 'ok', s.error ? 'error-text' : null),
      fact('Segment', `${s.segment} · span ${s.span_id}${s.parent_span_id >= 0 ? ` (parent ${s.parent_span_id})` : ''}`, 'mono'),
      s.size_limited && s.first_of_segment ? fact('Note', 'segment size-limited: spans past the limit were not recorded') : null,
      s.skip_analysis ? fact('Analysis', 'skipped (sw8-x)') : null);
    const parts = [facts];
    if (s.refs.length) {
      parts.push(el('h4', { text: 'Continued from' }), el('ul', { class: 'refs' }, s.refs.map((r) => el('li', null,
        el('span', { class: 'kind', text: r.type }), ' ',
        r.service || r.instance ? `${r.service}/${r.instance} ` : '',
        r.endpoint ? el('span', { class: 'op', text: r.endpoint }) : '',
        el('span', { class: 'mono small', text: ` segment ${r.segment}, span ${r.span}${r.address ? `, address ${r.address}` : ''}${r.trace !== t.id ? `, trace ${r.trace}` : ''}` }),
        r.linked ? el('span', { class: 'small', text: ' (drawn above)' }) : el('span', { class: 'small', text: ' (not received here)' })))));
    }
    parts.push(el('h4', { text: 'Tags' }));
    parts.push(s.tags.length
      ? el('table', { class: 'tags' }, el('tbody', null, s.tags.map(([k, v]) => el('tr', null, el('th', { scope: 'row', text: k }), el('td', { text: v })))))
      : el('p', { class: 'small', text: 'none' }));
    if (s.logs.length) {
      parts.push(el('h4', { text: 'Span logs' }), el('ul', { class: 'span-logs' }, s.logs.map((log) => el('li', null,
        el('span', { class: 'time', text: `+${number(log.time - s.start)} ms` }), ' ',
        log.data.map(([k, v]) => el('span', { class: 'kv' }, el('b', { text: k }), '=', v)))))) ;
    }
    if (s.records.length) {
      parts.push(el('h4', { text: 'Log records' }), el('ul', { class: 'records' }, s.records.map(recordItem)));
    }
    return el('div', { class: 'span-detail', id: `detail-${i}`, role: 'region', 'aria-label': `Span ${s.name}` }, ...parts);
  }

  function recordItem(r) {
    return el('li', { class: `record level-${(r.level || '').toLowerCase()}` },
      el('span', { class: 'time', text: clock(r.time) }), ' ',
      r.level ? el('span', { class: 'level', text: r.level }) : null, ' ',
      r.logger ? el('span', { class: 'logger', text: `${r.logger}:` }) : null, ' ',
      el('span', { class: 'text', text: r.text }));
  }

  // ↑/↓ move between spans, ← folds (or goes to the parent), → unfolds, Esc goes back.
  function waterfallKeys(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const row = e.target.closest('.span-row');
    if (!row) return;
    const rows = [...document.querySelectorAll('#waterfall > .span-row')];
    const at = rows.indexOf(row);
    const focusRow = (r) => { if (r) { e.preventDefault(); r.querySelector('.span-name').focus(); } };
    if (e.key === 'ArrowDown' || e.key === 'j') focusRow(rows[at + 1]);
    else if (e.key === 'ArrowUp' || e.key === 'k') focusRow(rows[at - 1]);
    else if (e.key === 'Home') focusRow(rows[0]);
    else if (e.key === 'End') focusRow(rows[rows.length - 1]);
    else if (e.key === 'ArrowLeft') {
      const key = row.dataset.key;
      const span = state.trace.spans.find((s) => spanKey(s) === key);
      if (span && span.children && !state.folded.has(key)) {
        e.preventDefault();
        toggleFold(key);
      } else if (span && span.parent >= 0) {
        const parentKey = spanKey(state.trace.spans[span.parent]);
        focusRow(rows.find((r) => r.dataset.key === parentKey));
      }
    } else if (e.key === 'ArrowRight') {
      if (state.folded.has(row.dataset.key)) {
        e.preventDefault();
        toggleFold(row.dataset.key);
      }
    }
  }

  // ---- instances ----

  function buildInstances() {
    main.replaceChildren(
      el('h2', { text: 'Instances' }),
      el('p', { class: 'summary', id: 'instances-summary', role: 'status' }),
      el('div', { class: 'scroll' }, el('table', { id: 'instance-list', class: 'list' },
        el('thead', null, el('tr', null,
          el('th', { scope: 'col', text: 'Service' }),
          el('th', { scope: 'col', text: 'Instance' }),
          el('th', { scope: 'col', text: 'Last keep-alive' }),
          el('th', { scope: 'col', class: 'narrow-hide', text: 'Received' }),
          el('th', { scope: 'col', text: 'Properties' }))),
        el('tbody'))));
  }

  async function fillInstances() {
    const { body } = await getJSON('/api/instances');
    if (state.route.view !== 'instances' || !body) return;
    document.getElementById('instances-summary').textContent = body.instances.length
      ? `${number(body.instances.length)} instance(s) seen.${body.rejected ? ` ${number(body.rejected)} call(s) rejected for a missing or wrong token.` : ''}`
      : 'No instance has reported yet.';
    const openOnes = new Set([...document.querySelectorAll('#instance-list details[open]')].map((d) => d.dataset.key));
    const rows = body.instances.map((i) => {
      const key = `${i.service}/${i.instance}`;
      const props = el('details', { dataset: { key }, open: openOnes.has(key) },
        el('summary', null, i.properties.length ? `${i.properties.length} properties${i.properties_at ? `, ${ago(i.properties_at)}` : ''}` : 'none reported'),
        el('table', { class: 'tags' }, el('tbody', null, i.properties.map(([k, v]) => el('tr', null, el('th', { scope: 'row', text: k }), el('td', { text: v }))))));
      const activity = [
        i.segments ? `${number(i.segments)} segments` : '',
        i.logs ? `${number(i.logs)} logs` : '',
        i.meter_reports ? `${number(i.meter_reports)} meter reports` : '',
        i.keep_alives ? `${number(i.keep_alives)} keep-alives` : '',
        i.config_fetches ? `${number(i.config_fetches)} configuration fetches (service)` : '',
      ].filter(Boolean).join(', ');
      return el('tr', null,
        el('td', null, chip(i.service)),
        el('td', { class: 'mono', text: i.instance }),
        el('td', { title: clock(i.last_keep_alive) }, i.last_keep_alive ? `${ago(i.last_keep_alive)} (${clock(i.last_keep_alive)})` : 'none yet'),
        el('td', { class: 'narrow-hide small', text: `${activity || '—'}${i.layer ? `; layer ${i.layer}` : ''}` }),
        el('td', null, props));
    });
    document.querySelector('#instance-list tbody').replaceChildren(...rows);
  }

  // ---- meters ----

  function buildMeters() {
    const filter = el('input', { id: 'f-meter', type: 'search', placeholder: 'Meter name', 'aria-label': 'Meter name', value: state.route.params.get('q') || '' });
    filter.addEventListener('input', () => {
      setHashQuietly(filter.value ? `#/meters?q=${encodeURIComponent(filter.value)}` : '#/meters');
      fillMeters();
    });
    main.replaceChildren(
      el('h2', { text: 'Meters' }),
      el('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, el('label', { class: 'grow' }, 'Name ', filter)),
      el('p', { class: 'summary', id: 'meters-summary', role: 'status' }),
      el('div', { id: 'meters' }));
  }

  let metersCache = null;
  async function fillMeters() {
    if (state.route.view !== 'meters') return;
    const typed = document.activeElement && document.activeElement.id === 'f-meter';
    if (!typed || !metersCache) {
      const { body } = await getJSON('/api/meters');
      if (!body) return;
      metersCache = body;
    }
    const body = metersCache;
    const q = (state.route.params.get('q') || '').toLowerCase();
    const series = body.series.filter((s) => !q || s.name.toLowerCase().includes(q));
    document.getElementById('meters-summary').textContent = body.series.length
      ? `${number(series.length)} of ${number(body.series.length)} series; each point is one report.${body.dropped ? ` ${number(body.dropped)} new series were not kept (limit reached).` : ''}`
      : 'No meters received yet.';
    const groups = new Map();
    for (const s of series) {
      const key = `${s.service}\u0000${s.instance}`;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(s);
    }
    const sections = [...groups.values()].map((list) => el('section', { class: 'meter-group' },
      el('h3', null, chip(list[0].service), ' ', el('span', { class: 'mono', text: list[0].instance })),
      el('ul', { class: 'cards' }, list.map(meterCard))));
    document.getElementById('meters').replaceChildren(...sections);
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return '—';
    if (Math.abs(v) >= 1e6) return v.toExponential(2);
    return Number.isInteger(v) ? number(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
  }

  function meterCard(s) {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    const labels = s.labels.length ? pairsText(s.labels) : '';
    const chart = s.kind === 'histogram' && s.buckets.length ? histogramChart(s.buckets) : sparkline(s.points);
    return el('li', { class: 'card' },
      el('div', { class: 'card-head' }, el('span', { class: 'meter-name', text: s.name }), el('span', { class: 'value', text: s.kind === 'histogram' ? `${fmtValue(last)} obs.` : fmtValue(last) })),
      labels ? el('div', { class: 'small mono', text: labels }) : null,
      chart);
  }

  function sparkline(points) {
    const w = 240;
    const h = 48;
    const box = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', role: 'img' });
    const values = points.map((p) => p[1]).filter((v) => v !== null);
    if (!values.length) {
      box.setAttribute('aria-label', 'no points');
      return box;
    }
    const t0 = points[0][0];
    const t1 = points[points.length - 1][0];
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const x = (t) => (t1 === t0 ? w / 2 : ((t - t0) / (t1 - t0)) * (w - 4) + 2);
    const y = (v) => (hi === lo ? h / 2 : h - 4 - ((v - lo) / (hi - lo)) * (h - 8));
    const path = points.filter((p) => p[1] !== null).map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    box.setAttribute('aria-label', `${points.length} points from ${fmtValue(lo)} to ${fmtValue(hi)}, last ${fmtValue(values[values.length - 1])}`);
    box.append(svg('title', {}, `${points.length} points, ${clock(t0)} to ${clock(t1)}; min ${fmtValue(lo)}, max ${fmtValue(hi)}`));
    box.append(svg('polyline', { points: path, class: 'line' }));
    const [lx, ly] = path.split(' ').pop().split(',');
    box.append(svg('circle', { cx: lx, cy: ly, r: '2.5', class: 'dot' }));
    return box;
  }

  function histogramChart(buckets) {
    const w = 240;
    const h = 48;
    const box = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', role: 'img' });
    const max = Math.max(1, ...buckets.map((b) => b[1]));
    const bw = w / buckets.length;
    box.setAttribute('aria-label', `histogram of ${buckets.length} buckets`);
    buckets.forEach(([bound, count], i) => {
      const bh = (count / max) * (h - 6);
      const rect = svg('rect', { x: (i * bw + 1).toFixed(1), y: (h - bh).toFixed(1), width: Math.max(1, bw - 2).toFixed(1), height: bh.toFixed(1), class: 'hbar' });
      rect.append(svg('title', {}, `≥ ${bound === null ? '-∞' : bound}: ${count}`));
      box.append(rect);
    });
    return box;
  }

  // ---- events ----

  function buildEvents() {
    main.replaceChildren(
      el('h2', { text: 'Events' }),
      el('p', { class: 'summary', id: 'events-summary', role: 'status' }),
      el('div', { class: 'scroll' }, el('table', { id: 'event-list', class: 'list' },
        el('thead', null, el('tr', null,
          el('th', { scope: 'col', text: 'Start' }),
          el('th', { scope: 'col', text: 'Source' }),
          el('th', { scope: 'col', text: 'Event' }),
          el('th', { scope: 'col', text: 'Message' }),
          el('th', { scope: 'col', class: 'narrow-hide', text: 'Parameters' }))),
        el('tbody'))));
  }

  async function fillEvents() {
    const { body } = await getJSON('/api/events');
    if (state.route.view !== 'events' || !body) return;
    document.getElementById('events-summary').textContent = body.events.length
      ? `${number(body.events.length)} event(s), the latest first.`
      : 'No events yet (agents report Start once connected and Shutdown when they stop).';
    document.querySelector('#event-list tbody').replaceChildren(...body.events.map((e) => el('tr', { class: e.type === 'Error' ? 'has-error' : null },
      el('td', { class: 'time', text: clock(e.start || e.received) }),
      el('td', null, chip(e.service), ' ', el('span', { class: 'mono small', text: e.instance }), e.endpoint ? ` ${e.endpoint}` : ''),
      el('td', null, el('b', { text: e.name }), e.type === 'Error' ? el('span', { class: 'error-badge', text: 'error' }) : null,
        e.end && e.start ? el('span', { class: 'small', text: ` ${ms(e.end - e.start)}` }) : null),
      el('td', { text: e.message }),
      el('td', { class: 'narrow-hide small mono', text: pairsText(e.parameters) }))));
  }

  // ---- log records ----

  function buildLogs() {
    const p = state.route.params;
    const text = el('input', { id: 'f-log', type: 'search', placeholder: 'Text, logger or level', 'aria-label': 'Text, logger or level', value: p.get('q') || '' });
    let typing;
    text.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        setHashQuietly(text.value ? `#/logs?q=${encodeURIComponent(text.value)}` : '#/logs');
        state.logLimit = 100;
        refresh();
      }, 200);
    });
    const table = el('table', { id: 'log-list', class: 'list' },
      el('thead', null, el('tr', null,
        el('th', { scope: 'col', text: 'Time' }),
        el('th', { scope: 'col', text: 'Level' }),
        el('th', { scope: 'col', text: 'Service' }),
        el('th', { scope: 'col', text: 'Record' }),
        el('th', { scope: 'col', text: 'Trace' }))),
      el('tbody'));
    table.addEventListener('keydown', (e) => moveInList(e, 'a'));
    main.replaceChildren(
      el('h2', { text: 'Log records' }),
      el('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() }, el('label', { class: 'grow' }, 'Search ', text)),
      el('p', { class: 'summary', id: 'logs-summary', role: 'status' }),
      el('div', { class: 'scroll' }, table),
      el('p', { class: 'more' }, el('button', { id: 'more-logs', type: 'button', hidden: true, onclick: () => { state.logLimit += 100; refresh(); } }, 'Show more')));
  }

  async function fillLogs() {
    const q = new URLSearchParams(state.route.params);
    q.set('limit', String(state.logLimit));
    const { body } = await getJSON(`/api/logs?${q}`);
    if (state.route.view !== 'logs' || !body) return;
    document.getElementById('logs-summary').textContent = body.total
      ? `Showing ${number(body.logs.length)} of ${number(body.matched)} matching records (${number(body.total)} kept, the latest first).${body.dropped ? ` ${number(body.dropped)} older ones were dropped (--keep).` : ''}`
      : 'No log records yet (the tracing and log bridges report WARN and above by default).';
    document.getElementById('more-logs').hidden = body.logs.length >= body.matched;
    document.querySelector('#log-list tbody').replaceChildren(...body.logs.map((r) => el('tr', { class: `level-${(r.level || '').toLowerCase()}` },
      el('td', { class: 'time', text: clock(r.time) }),
      el('td', null, r.level ? el('span', { class: 'level', text: r.level }) : ''),
      el('td', null, chip(r.service)),
      el('td', { class: 'record-text' }, r.logger ? el('span', { class: 'logger', text: `${r.logger}: ` }) : null, el('span', { class: 'text', text: r.text })),
      el('td', null, r.trace ? el('a', { href: `#/trace/${encodeURIComponent(r.trace)}?span=${encodeURIComponent(`${r.segment}:${r.span}`)}`, title: r.trace }, 'open') : '—'))));
  }

  // ---- keys that work everywhere ----

  document.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const typing = e.target.matches('input, select, textarea');
    if (e.key === 'Escape') {
      if (typing) { e.target.blur(); return; }
      if (state.route.view === 'trace') { e.preventDefault(); go(state.listHash); }
      return;
    }
    if (typing) return;
    if (e.key === '/') {
      const box = main.querySelector('input[type=search]');
      if (box) { e.preventDefault(); box.focus(); box.select(); }
    } else if (e.key === 'p') {
      togglePause();
    } else if (['1', '2', '3', '4', '5'].includes(e.key)) {
      go(['#/traces', '#/instances', '#/meters', '#/events', '#/logs'][Number(e.key) - 1]);
    }
  });

  window.addEventListener('hashchange', route);
  // Relative times ("12 s ago") stay true without new data.
  setInterval(() => { if (state.route.view === 'instances' && !state.paused) refresh(); }, 5000);
  route();
  follow();
})();
