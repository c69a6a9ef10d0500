// The Hermes dashboard. Plain JavaScript, no build step: it is embedded in the `hermes`
// binary and served at `/`. It reads the same public endpoints any client can:
//   GET /symbols              the instruments (and whether the API key is right)
//   GET /status               the writer, feeds, ring, persister (operations panel)
//   GET /stream               top-of-book events (SSE), read with fetch() so that the
//                             x-api-key header can be sent (EventSource cannot send headers)
//   GET /symbols/{id}/history recent trades, when the server has a database
// State for the tests and the benchmark is exposed as `window.hermesDashboard`.
(() => {
  'use strict';

  const KEY_STORE = 'hermes.apiKey';
  const WINDOW_MAX_S = 300;   // history kept per instrument (the chart's widest window)
  const TAPE_MAX = 60;        // trades kept per instrument
  const STATUS_EVERY_MS = 1000;
  const STREAM_IDLE_MS = 35000; // no bytes for this long (keep-alives come every 15 s): reconnect

  const $ = (sel) => document.querySelector(sel);
  const el = (tag, props, ...kids) => {
    const e = document.createElement(tag);
    if (props) for (const [k, v] of Object.entries(props)) {
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };

  const S = {
    key: sessionStorage.getItem(KEY_STORE) || '',
    rows: new Map(),      // id -> last tob event (the slot's JSON)
    trs: new Map(),       // id -> overview <tr>
    hist: new Map(),      // id -> {t, bid, ask, mid, micro} arrays, seconds since epoch
    tape: new Map(),      // id -> [{ts_ns, price, size, side}], newest first
    dbTape: new Set(),    // ids whose history was loaded from the database
    sort: { col: null, desc: false }, // null: slot order, as `hermes top` starts
    filter: '',
    status: null,
    generation: null,
    clockOffsetMs: 0,     // server clock - this browser's clock
    route: { page: 'overview', id: null },
    dirty: { overview: true, instrument: true, ops: true },
    stream: { state: 'connecting', connects: 0, drops: 0, lastError: '', ctl: null, lastByte: 0 },
    counters: { events: 0, renders: 0, chartRenders: 0, started: performance.now() },
    eventsById: new Map(), // id -> events applied (for the benchmark)
    authFailed: false,
    started: false,
  };

  // ---- HTTP -------------------------------------------------------------------------

  class AuthError extends Error {}

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (S.key) h['x-api-key'] = S.key;
    return h;
  }

  async function api(path) {
    const res = await fetch(path, { headers: headers(), cache: 'no-store' });
    if (res.status === 401) throw new AuthError(await errorText(res));
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
    return body;
  }

  async function errorText(res) {
    try { return (await res.json()).error || `HTTP ${res.status}`; } catch { return `HTTP ${res.status}`; }
  }

  // ---- the API key ------------------------------------------------------------------

  function askForKey(message) {
    S.authFailed = true;
    if (S.stream.ctl) S.stream.ctl.abort();
    $('#app').hidden = true;
    $('#key-panel').hidden = false;
    const err = $('#key-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('#key-input').focus();
  }

  $('#key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    S.key = $('#key-input').value.trim();
    $('#key-input').value = '';
    boot();
  });

  $('#forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORE);
    S.key = '';
    askForKey('');
  });

  // ---- startup ----------------------------------------------------------------------

  async function boot() {
    let list;
    try {
      list = await api('/symbols');
    } catch (e) {
      if (e instanceof AuthError) {
        sessionStorage.removeItem(KEY_STORE);
        const tried = S.key !== '';
        S.key = '';
        askForKey(tried ? `Wrong API key: the server answered 401 (${e.message}).` : '');
        return;
      }
      // The shm file may not exist yet (serve before the writer): show the page and retry.
      banner(`Cannot list instruments: ${e.message}. Retrying…`, 'error');
      setTimeout(boot, 2000);
      return;
    }
    if (S.key) sessionStorage.setItem(KEY_STORE, S.key);
    $('#forget-key').hidden = !S.key;
    S.authFailed = false;
    $('#key-panel').hidden = true;
    $('#app').hidden = false;
    banner('');
    for (const s of list.symbols) ensureRow(s.id, null);
    if (!S.started) {
      S.started = true;
      pollStatus();
      setInterval(pollStatus, STATUS_EVERY_MS);
      setInterval(() => { S.dirty.overview = true; S.dirty.ops = true; }, 500); // ages tick
      setInterval(watchdog, 5000);
      requestAnimationFrame(frame);
    }
    runStream();
    route();
  }

  // ---- the stream -------------------------------------------------------------------

  function setStream(state, error) {
    S.stream.state = state;
    if (error !== undefined) S.stream.lastError = error;
    const b = $('#stream-state');
    b.dataset.state = state;
    b.textContent = state === 'connected' ? 'stream live'
      : state === 'disconnected' ? 'stream DISCONNECTED' : 'stream connecting…';
    b.title = S.stream.lastError || 'this page\'s /stream';
    S.dirty.ops = true;
  }

  let streamRunning = false;
  async function runStream() {
    if (streamRunning) return;
    streamRunning = true;
    let backoff = 500;
    while (!S.authFailed) {
      const ctl = new AbortController();
      S.stream.ctl = ctl;
      setStream(S.stream.connects === 0 ? 'connecting' : S.stream.state);
      try {
        const res = await fetch('/stream', { headers: headers({ accept: 'text/event-stream' }), cache: 'no-store', signal: ctl.signal });
        if (res.status === 401) { askForKey(`Wrong API key: the stream answered 401 (${await errorText(res)}).`); break; }
        if (!res.ok) throw new Error(`/stream: HTTP ${res.status}`);
        S.stream.connects++;
        S.stream.lastByte = Date.now();
        setStream('connected', '');
        if (S.stream.connects > 1) banner('Stream reconnected.', 'info', 3000);
        backoff = 500;
        await readEvents(res.body);
        throw new Error('the server closed the stream');
      } catch (e) {
        if (S.authFailed) break;
        S.stream.drops++;
        const msg = ctl.signal.aborted ? 'no data or keep-alive for 35 s' : (e.message || String(e));
        setStream('disconnected', msg);
        banner(`Stream dropped (${msg}); reconnecting in ${(backoff / 1000).toFixed(1)} s…`, 'error');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
    streamRunning = false;
  }

  function watchdog() {
    if (S.stream.state === 'connected' && Date.now() - S.stream.lastByte > STREAM_IDLE_MS && S.stream.ctl) {
      S.stream.ctl.abort();
    }
  }

  async function readEvents(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      S.stream.lastByte = Date.now();
      buf += value;
      // One pass over the chunk (a batch holds up to one event per instrument): cut the
      // consumed part once at the end, not after every event.
      let start = 0, i;
      while ((i = buf.indexOf('\n\n', start)) >= 0) {
        const block = buf.slice(start, i);
        start = i + 2;
        let event = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
        }
        if (event === 'tob' && data) onTob(JSON.parse(data));
      }
      buf = buf.slice(start);
    }
  }

  function onTob(d) {
    S.counters.events++;
    S.eventsById.set(d.id, (S.eventsById.get(d.id) || 0) + 1);
    const prev = S.rows.get(d.id);
    ensureRow(d.id, d);
    // Chart history: one point per publication seen.
    if (!prev || prev.publish_ts_ns !== d.publish_ts_ns) {
      const k = d.kernels || {};
      const h = S.hist.get(d.id);
      const t = d.publish_ts_ns / 1e9;
      if (h.t.length && t < h.t[h.t.length - 1]) {
        // A new writer whose clock restarted the series (or a replay of the past): start over.
        for (const a of Object.values(h)) a.length = 0;
      }
      h.t.push(t);
      h.bid.push(num(d.bid_px));
      h.ask.push(num(d.ask_px));
      h.mid.push(num(k.mid));
      h.micro.push(num(k.microprice));
      const cut = t - WINDOW_MAX_S;
      if (h.t[0] < cut - 30) {
        let n = 0;
        while (n < h.t.length && h.t[n] < cut) n++;
        for (const a of Object.values(h)) a.splice(0, n);
      }
    }
    // The tape: every new last trade.
    if (d.last_trade && (!prev || !prev.last_trade || prev.last_trade.ts_ns !== d.last_trade.ts_ns || prev.trades !== d.trades)) {
      const tape = S.tape.get(d.id);
      tape.unshift({ ts_ns: d.last_trade.ts_ns, price: d.last_trade.price, size: d.last_trade.size, side: d.last_trade.side });
      if (tape.length > TAPE_MAX) tape.length = TAPE_MAX;
    }
    S.dirty.overview = true;
    if (S.route.id === d.id) S.dirty.instrument = true;
  }

  const num = (s) => (s === null || s === undefined ? null : Number(s));

  function ensureRow(id, d) {
    if (!S.hist.has(id)) {
      S.hist.set(id, { t: [], bid: [], ask: [], mid: [], micro: [] });
      S.tape.set(id, []);
    }
    if (d) S.rows.set(id, d);
    else if (!S.rows.has(id)) S.rows.set(id, { id, venue: id.split(':')[0], symbol: id.slice(id.indexOf(':') + 1) });
    S.dirty.overview = true;
  }

  // ---- status (operations panel, writer badge) --------------------------------------

  async function pollStatus() {
    if (S.authFailed) return;
    let st;
    try {
      st = await api('/status');
    } catch (e) {
      if (e instanceof AuthError) { askForKey(`Wrong API key: the server answered 401 (${e.message}).`); return; }
      const b = $('#writer-state');
      b.dataset.state = 'unavailable';
      b.textContent = 'server unreachable';
      return;
    }
    S.status = st;
    S.clockOffsetMs = st.now_ns / 1e6 - Date.now();
    const w = st.writer;
    const b = $('#writer-state');
    // A restart the server followed shows as REPLACED for 5 s, then as the new writer's state.
    const replaced = w.state === 'alive' && w.replaced && w.replaced.ago_ms < 5000;
    const shown = replaced ? 'replaced' : w.state;
    const word = shown === 'alive' ? 'alive' : shown === 'replaced'
      ? `REPLACED (gen ${w.replaced.old_generation} → new writer alive)` : shown.toUpperCase();
    b.dataset.state = shown;
    b.textContent = `writer ${word}` + (w.pid ? ` · pid ${w.pid} · gen ${w.generation}` : '');
    b.title = w.text;
    if (S.generation !== null && w.generation !== undefined && w.generation !== S.generation) {
      banner(`Writer replaced: generation ${S.generation} → ${w.generation} (pid ${w.pid}); following the new one.`, 'info', 10000);
      refreshInstruments();
    }
    if (w.generation !== undefined) S.generation = w.generation;
    // An instrument page opened before the first status learns here that there is a database.
    if (st.database && S.route.page === 'instrument' && !S.dbTape.has(S.route.id)) loadHistory(S.route.id);
    if (w.state === 'dead' || w.state === 'stalled') banner(`Writer ${w.text}`, 'error');
    else if (bannerKind === 'writer') banner('');
    S.dirty.ops = true;
  }

  async function refreshInstruments() {
    try {
      const list = await api('/symbols');
      const keep = new Set(list.symbols.map((s) => s.id));
      for (const id of [...S.rows.keys()]) {
        if (!keep.has(id)) { S.rows.delete(id); const tr = S.trs.get(id); if (tr) tr.remove(); S.trs.delete(id); }
      }
      for (const id of keep) ensureRow(id, null);
    } catch { /* the next status poll retries */ }
  }

  // ---- banner -----------------------------------------------------------------------

  let bannerKind = '', bannerTimer = null;
  function banner(text, kind, ms) {
    const b = $('#banner');
    clearTimeout(bannerTimer);
    if (!text) { b.hidden = true; bannerKind = ''; return; }
    b.textContent = text;
    b.dataset.kind = kind || 'error';
    b.hidden = false;
    bannerKind = text.startsWith('Writer ') && kind === 'error' ? 'writer' : kind;
    if (ms) bannerTimer = setTimeout(() => { b.hidden = true; bannerKind = ''; }, ms);
  }

  // ---- routing ----------------------------------------------------------------------

  function route() {
    const h = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
    if (h.startsWith('i/')) S.route = { page: 'instrument', id: h.slice(2) };
    else if (h === 'ops') S.route = { page: 'ops', id: null };
    else S.route = { page: 'overview', id: null };
    for (const p of ['overview', 'instrument', 'ops']) $(`#page-${p}`).hidden = S.route.page !== p;
    $('#nav-overview').classList.toggle('active', S.route.page === 'overview');
    $('#nav-ops').classList.toggle('active', S.route.page === 'ops');
    if (S.route.page === 'instrument') openInstrument(S.route.id);
    for (const k of Object.keys(S.dirty)) S.dirty[k] = true;
  }
  window.addEventListener('hashchange', route);

  // ---- rendering --------------------------------------------------------------------

  // Repaints are coalesced like the stream: the table at most every 100 ms (as `hermes
  // top`), the instrument page every 50 ms (the default SSE cap); events in between only
  // update the model. With 100 instruments at the cap that is 2000 events/s in, 10 table
  // paints out.
  const PAINT_EVERY_MS = { overview: 100, instrument: 50, ops: 250 };
  let lastPaint = 0;
  function frame(now) {
    try {
      const page = S.route.page;
      if (S.dirty[page] && now - lastPaint >= PAINT_EVERY_MS[page] - 4) {
        S.dirty[page] = false;
        lastPaint = now;
        if (page === 'overview') { renderOverview(); S.counters.renders++; }
        if (page === 'instrument') { renderInstrument(); S.counters.renders++; }
        if (page === 'ops') renderOps();
      }
    } finally {
      requestAnimationFrame(frame);
    }
  }

  const nowNs = () => (Date.now() + S.clockOffsetMs) * 1e6;

  function ageText(ns) {
    const ms = Math.max(0, Math.floor(ns / 1e6));
    if (ms < 1000) return `${ms}ms`;
    if (ms < 60000) return `${Math.floor(ms / 1000)}.${Math.floor((ms % 1000) / 100)}s`;
    if (ms < 3600000) return `${Math.floor(ms / 60000)}m${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}s`;
    if (ms < 86400000) return `${Math.floor(ms / 3600000)}h${String(Math.floor(ms / 60000) % 60).padStart(2, '0')}m`;
    return `${Math.floor(ms / 86400000)}d`;
  }

  const signed = (s, dp) => {
    if (s === null || s === undefined) return '-';
    const v = Number(s);
    return (v > 0 ? '+' : '') + v.toFixed(dp);
  };

  // Updates per second, 0 when nothing was published for a whole rate window (as `top`).
  function rate(d) {
    const k = d.kernels;
    if (!k) return null;
    const age = nowNs() - d.publish_ts_ns;
    if (k.rate_window_ns > 0 && age > k.rate_window_ns) return 0;
    return Number(k.updates_per_s);
  }

  // The overview's columns: title, cell text, sort value (null sorts last), classes.
  const COLS = [
    { key: 'venue', title: 'Venue', cls: 'text', text: (d) => d.venue, sort: (d) => d.venue },
    { key: 'symbol', title: 'Symbol', cls: 'text', text: (d) => d.symbol, sort: (d) => d.symbol.toLowerCase() },
    { key: 'bid', title: 'Bid qty × Bid', cls: 'bid', html: (d) => (d.bid_px == null ? null : [d.bid_qty, ' × ', d.bid_px]), sort: (d) => num(d.bid_px) },
    { key: 'ask', title: 'Ask × Ask qty', cls: 'ask', html: (d) => (d.ask_px == null ? null : [d.ask_px, ' × ', d.ask_qty]), sort: (d) => num(d.ask_px) },
    { key: 'spread', title: 'Spread bps', text: (d) => fmtBps(d.kernels && d.kernels.spread_bps), sort: (d) => num(d.kernels && d.kernels.spread_bps) },
    { key: 'mid', title: 'Mid', text: (d) => (d.kernels && d.kernels.mid) || '-', sort: (d) => num(d.kernels && d.kernels.mid) },
    { key: 'imbalance', title: 'Imbal', text: (d) => signed(d.kernels && d.kernels.imbalance, 3), sort: (d) => num(d.kernels && d.kernels.imbalance) },
    { key: 'last', title: 'Last', text: (d) => (d.last_trade ? `${d.last_trade.price} ${d.last_trade.side === 'buy' ? 'B' : d.last_trade.side === 'sell' ? 'S' : ''}`.trim() : '-'), sort: (d) => (d.last_trade ? Number(d.last_trade.price) : null) },
    { key: 'rate', title: 'Upd/s', text: (d) => { const r = rate(d); return r === null ? '-' : r.toFixed(1); }, sort: (d) => rate(d) },
    { key: 'age', title: 'Age', text: (d) => (d.publish_ts_ns ? ageText(nowNs() - d.publish_ts_ns) : '-'), sort: (d) => (d.publish_ts_ns ? nowNs() - d.publish_ts_ns : null) },
    { key: 'stale', title: 'Stale', cls: 'stale-flag', text: (d) => (d.stale ? 'STALE' : d.crossed ? 'CROSSED' : '-'), sort: (d) => (d.stale ? 1 : 0) },
  ];
  const fmtBps = (s) => (s === null || s === undefined ? '-' : Number(s).toFixed(2));

  (function buildHeader() {
    const tr = $('#overview thead tr');
    for (const c of COLS) {
      const th = el('th', { class: c.cls === 'text' ? 'text' : '', 'data-col': c.key, text: c.title });
      th.addEventListener('click', () => {
        S.sort = { col: c.key, desc: S.sort.col === c.key ? !S.sort.desc : false };
        S.dirty.overview = true;
      });
      tr.append(th);
    }
  })();

  $('#filter').addEventListener('input', (ev) => { S.filter = ev.target.value.trim().toLowerCase(); S.dirty.overview = true; });

  function rowFor(id) {
    let tr = S.trs.get(id);
    if (tr) return tr;
    tr = el('tr', { 'data-id': id });
    for (const c of COLS) tr.append(el('td', { class: `${c.cls || ''} c-${c.key}` }));
    tr.addEventListener('click', () => { location.hash = `#/i/${encodeURIComponent(id)}`; });
    S.trs.set(id, tr);
    return tr;
  }

  function setCell(td, c, d) {
    if (c.html) {
      const parts = d.publish_ts_ns ? c.html(d) : null;
      const key = parts ? parts.join('') : '-';
      if (td.dataset.v === key) return;
      td.dataset.v = key;
      td.textContent = '';
      if (!parts) { td.textContent = '-'; return; }
      // bid: qty × px; ask: px × qty. The price is the coloured part.
      const [a, sep, b] = parts;
      const pxFirst = c.key === 'ask';
      td.append(el('span', { class: pxFirst ? 'px' : 'qty', text: a }), sep, el('span', { class: pxFirst ? 'qty' : 'px', text: b }));
      return;
    }
    const text = d.publish_ts_ns || c.cls === 'text' ? c.text(d) : '-';
    if (td.textContent !== text) td.textContent = text;
  }

  function renderOverview() {
    const col = COLS.find((c) => c.key === S.sort.col);
    const all = [...S.rows.values()];
    const shown = all.filter((d) => !S.filter || d.id.toLowerCase().includes(S.filter));
    const slotOf = new Map([...S.rows.keys()].map((id, i) => [id, i]));
    if (col) shown.sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      if (x === null && y === null) return slotOf.get(a.id) - slotOf.get(b.id);
      if (x === null) return 1;
      if (y === null) return -1;
      let o = typeof x === 'string' ? x.localeCompare(y) : x - y;
      if (S.sort.desc) o = -o;
      return o || slotOf.get(a.id) - slotOf.get(b.id);
    });
    const tbody = $('#overview tbody');
    const want = shown.map((d) => rowFor(d.id));
    // Reorder only when the order changed (cheap at 100 rows, no layout thrash otherwise).
    const cur = tbody.children;
    let same = cur.length === want.length;
    for (let i = 0; same && i < want.length; i++) same = cur[i] === want[i];
    if (!same) tbody.replaceChildren(...want);
    for (const d of shown) {
      const tr = S.trs.get(d.id);
      if (tr.classList.contains('stale') !== !!d.stale) tr.classList.toggle('stale', !!d.stale);
      // The exact best bid/ask as attributes too (scripts and tests read them).
      const version = `${d.seq}|${d.publish_ts_ns}`;
      if (tr.dataset.version !== version) {
        tr.dataset.version = version;
        tr.dataset.bidPx = d.bid_px ?? '';
        tr.dataset.askPx = d.ask_px ?? '';
        tr.dataset.bidQty = d.bid_qty ?? '';
        tr.dataset.askQty = d.ask_qty ?? '';
      }
      COLS.forEach((c, i) => setCell(tr.children[i], c, d));
    }
    for (const th of $('#overview thead tr').children) {
      if (col && th.dataset.col === col.key) th.setAttribute('aria-sort', S.sort.desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    }
    $('#row-count').textContent = `${shown.length} of ${all.length} instruments`;
    $('#overview-empty').hidden = all.length > 0;
    const st = S.status;
    $('#summary').textContent = st && st.writer.instruments !== undefined
      ? `${st.writer.stale} stale · ${st.writer.crossed} crossed · ${rateOfEvents().toFixed(0)} events/s on this page` : '';
  }

  function rateOfEvents() {
    const now = performance.now();
    const r = rateOfEvents;
    if (!r.at || now - r.at > 1000) {
      r.value = r.at ? ((S.counters.events - r.events) * 1000) / (now - r.at) : 0;
      r.at = now;
      r.events = S.counters.events;
    }
    return r.value || 0;
  }

  // ---- the instrument page ----------------------------------------------------------

  let chart = null, chartFor = null, chartRange = [0, 1];

  function openInstrument(id) {
    $('#inst-title').textContent = id;
    if (!S.rows.has(id)) ensureRow(id, null);
    if (chart && chartFor !== id) { chart.destroy(); chart = null; }
    if (!chart) {
      const box = $('#chart');
      box.textContent = '';
      chart = new uPlot({
        width: Math.max(320, box.clientWidth || 900),
        height: 320,
        scales: { x: { time: true, range: () => chartRange } },
        axes: [
          { stroke: '#8a94a3', grid: { stroke: '#2a3038' }, ticks: { stroke: '#2a3038' } },
          { stroke: '#8a94a3', grid: { stroke: '#2a3038' }, ticks: { stroke: '#2a3038' }, size: 80 },
        ],
        series: [
          {},
          { label: 'best bid', stroke: '#3fb68b', width: 1, paths: uPlot.paths.stepped({ align: 1 }) },
          { label: 'best ask', stroke: '#ff5c5c', width: 1, paths: uPlot.paths.stepped({ align: 1 }) },
          { label: 'mid', stroke: '#e0c050', width: 1.5 },
          { label: 'microprice', stroke: '#6fa8ff', width: 1.5 },
        ],
      }, [[], [], [], [], []], box);
      chartFor = id;
      new ResizeObserver(() => { if (chart) chart.setSize({ width: Math.max(320, box.clientWidth), height: 320 }); }).observe(box);
    }
    loadHistory(id);
  }

  $('#chart-window').addEventListener('change', () => { S.dirty.instrument = true; });

  const historyLoading = new Set();
  async function loadHistory(id) {
    if (!S.status || !S.status.database || S.dbTape.has(id) || historyLoading.has(id)) { renderTapeSource(); return; }
    historyLoading.add(id);
    try { await loadHistoryNow(id); } finally { historyLoading.delete(id); }
  }

  async function loadHistoryNow(id) {
    try {
      const h = await api(`/symbols/${encodeURIComponent(id)}/history?limit=${TAPE_MAX}`);
      const have = new Set(S.tape.get(id).map((t) => `${t.ts_ns}|${t.price}|${t.size}`));
      const rows = h.trades.map((t) => ({ ts_ns: t.exchange_ts_us * 1000, price: t.price, size: t.size, side: t.side }))
        .filter((t) => !have.has(`${t.ts_ns}|${t.price}|${t.size}`));
      const tape = S.tape.get(id).concat(rows).sort((a, b) => b.ts_ns - a.ts_ns).slice(0, TAPE_MAX);
      S.tape.set(id, tape);
      S.dbTape.add(id);
    } catch (e) {
      $('#tape-source').textContent = `(history: ${e.message})`;
      return;
    }
    renderTapeSource();
    S.dirty.instrument = true;
  }

  function renderTapeSource() {
    $('#tape-source').textContent = S.dbTape.has(S.route.id) ? '(database + stream)' : '(from the stream)';
  }

  function renderInstrument() {
    const id = S.route.id;
    const d = S.rows.get(id) || {};
    const k = d.kernels || {};
    $('#inst-flags').textContent = '';
    if (d.stale) $('#inst-flags').append(el('span', { class: 'flag', text: 'STALE' }));
    if (d.crossed) $('#inst-flags').append(el('span', { class: 'flag', text: 'CROSSED' }));
    const q = $('#inst-quote');
    q.replaceChildren(
      quote('bid', d.bid_px ? `${d.bid_qty} × ${d.bid_px}` : '-', 'bid'),
      quote('ask', d.ask_px ? `${d.ask_px} × ${d.ask_qty}` : '-', 'ask'),
      quote('spread', k.spread ? `${k.spread} (${fmtBps(k.spread_bps)} bps)` : '-'),
      quote('mid', k.mid || '-'),
      quote('microprice', k.microprice || '-'),
      quote('updates/s', d.kernels ? rate(d).toFixed(1) : '-'),
      quote('age', d.publish_ts_ns ? ageText(nowNs() - d.publish_ts_ns) : '-'),
    );
    // The chart: the chosen window, ending at the newest point.
    const h = S.hist.get(id);
    if (chart && h) {
      const span = Number($('#chart-window').value);
      const end = h.t.length ? h.t[h.t.length - 1] : 0;
      let i = 0;
      while (i < h.t.length && h.t[i] < end - span) i++;
      const data = [h.t.slice(i), h.bid.slice(i), h.ask.slice(i), h.mid.slice(i), h.micro.slice(i)];
      // Up to the chosen window: a page open for 10 s shows those 10 s at full width.
      const start = data[0].length ? Math.max(data[0][0], end - span) : end - span;
      chartRange = [start, end + Math.max(0.5, (end - start) / 50)];
      chart.setData(data);
      $('#chart').dataset.points = String(data[0].length);
      S.counters.chartRenders++;
    }
    // The ladder, with size bars relative to the largest size shown.
    const bids = d.bids || [], asks = d.asks || [];
    const max = Math.max(1e-300, ...bids.map((l) => Number(l[1])), ...asks.map((l) => Number(l[1])));
    const bar = (q, cls) => el('td', { class: cls }, el('div', { class: 'bar', style: `width:${(100 * Number(q)) / max}%` }), el('span', { text: q }));
    const rows = [];
    for (let i = 0; i < Math.max(bids.length, asks.length); i++) {
      const b = bids[i], a = asks[i];
      rows.push(el('tr', null,
        b ? bar(b[1], 'bq') : el('td'), el('td', { class: 'bid', text: b ? b[0] : '' }),
        el('td', { class: 'ask', text: a ? a[0] : '' }), a ? bar(a[1], 'aq') : el('td')));
    }
    $('#ladder tbody').replaceChildren(...rows);
    // The kernels.
    const kv = [
      ['spread', k.spread ? `${k.spread} (${fmtBps(k.spread_bps)} bps)` : '-'],
      ['mid', k.mid || '-'],
      ['microprice', k.microprice || '-'],
      [`depth top ${k.levels ?? '-'} (bid / ask)`, k.bid_depth ? `${k.bid_depth} / ${k.ask_depth}` : '-'],
      ['depth imbalance', signed(k.imbalance, 4)],
      [`VWAP ${k.vwap_qty ?? ''} (buy / sell)`, `${k.vwap_buy || '-'} / ${k.vwap_sell || '-'}`],
      [`volatility (half-life ${k.vol_half_life_ns ? ageText(k.vol_half_life_ns) : '-'})`, k.volatility_bps == null ? '-' : `${k.volatility_bps.toFixed(2)} bps/√s`],
      [`trades ${k.trade_window_ns ? ageText(k.trade_window_ns) : ''} (buy / sell)`, k.trade_buy_qty ? `${k.trade_buy_qty} / ${k.trade_sell_qty}` : '-'],
      ['trade-flow imbalance', signed(k.trade_imbalance, 4)],
      ['OFI window / total', k.ofi_window ? `${k.ofi_window} / ${k.ofi_total}` : '-'],
      ['updates · trades · venue seq', d.updates !== undefined ? `${d.updates} · ${d.trades} · ${d.seq}` : '-'],
    ];
    $('#kernels tbody').replaceChildren(...kv.map(([a, b]) => el('tr', null, el('td', { text: a }), el('td', { text: b }))));
    // The tape.
    const tape = S.tape.get(id) || [];
    $('#tape tbody').replaceChildren(...tape.map((t) => el('tr', null,
      el('td', { text: new Date(t.ts_ns / 1e6).toISOString().slice(11, 23) }),
      el('td', { class: t.side, text: t.side }), el('td', { class: t.side, text: t.price }), el('td', { text: t.size }))));
    renderTapeSource();
  }

  function quote(label, value, cls) {
    return el('div', { class: cls || '' }, el('span', { text: label }), value);
  }

  // ---- the operations panel ---------------------------------------------------------

  function kvTable(sel, rows) {
    $(sel).replaceChildren(...rows.map(([a, b, attrs]) => el('tr', attrs || null, el('td', { class: 'text', text: a }), el('td', { text: String(b) }))));
  }

  function renderOps() {
    const st = S.status;
    const s = S.stream;
    kvTable('#ops-stream tbody', [
      ['state', s.state, { id: 'ops-stream-state', 'data-state': s.state }],
      ['connections', s.connects],
      ['drops', s.drops],
      ['last error', s.lastError || '-'],
      ['events received', S.counters.events],
      ['events/s', rateOfEvents().toFixed(1)],
    ]);
    if (!st) return;
    const w = st.writer;
    kvTable('#ops-writer tbody', [
      ['state', w.text, { id: 'ops-writer-state', 'data-state': w.state }],
      ['file', w.path],
      ['pid · generation', w.pid !== undefined ? `${w.pid} · ${w.generation}` : '-'],
      ['heartbeat age', w.heartbeat_age_ms !== undefined ? `${w.heartbeat_age_ms} ms (stalled after ${w.stall_ms} ms)` : '-'],
      ['instruments · slots', w.instruments !== undefined ? `${w.instruments} · ${w.slots}` : '-'],
      ['stale books (resyncing)', w.stale ?? '-'],
      ['crossed books', w.crossed ?? '-'],
      ['last writer restart', w.replaced ? `generation ${w.replaced.old_generation} replaced ${ageText(w.replaced.ago_ms * 1e6)} ago` : 'none seen'],
    ]);
    kvTable('#ops-http tbody', [
      ['process', st.process === 'serve' ? 'hermes serve (reads the shm file only)' : 'inside the engine'],
      ['SSE clients · dropped', `${st.http.sse_clients} · ${st.http.sse_dropped}`],
      ['SSE events sent', st.http.sse_events],
      ['SSE rate cap', `${st.http.sse_max_hz} /s per client`],
      ['database', st.database ? 'configured (trade history)' : 'none'],
      ['uptime', ageText(st.http.uptime_s * 1e9)],
    ]);
    const absent = (what) => el('p', { class: 'muted', text: st.process === 'serve'
      ? `Not visible from here: hermes serve has only the shm file; the ${what} live in the engine's process (its /metrics and /status).`
      : `No ${what} in this process.` });
    if (st.feeds) {
      const t = el('table', null, el('thead', null, el('tr', null, ...['venue', 'connected', 'breaker', 'reconnects', 'failures', 'resync requests', 'REST snapshots'].map((h) => el('th', { text: h })))));
      const tb = el('tbody');
      for (const v of st.feeds.venues) {
        tb.append(el('tr', null, el('td', { class: 'text', text: v.venue }), el('td', { text: v.connected ? 'yes' : 'NO' }),
          el('td', { text: v.breaker }), el('td', { text: v.reconnects }), el('td', { text: v.failures }),
          el('td', { text: v.resync_requests }), el('td', { text: v.rest_snapshots })));
      }
      t.append(tb);
      const totals = el('p', { class: 'muted', text: `frames ${st.feeds.frames} · gaps ${st.feeds.gaps} · resyncs ${st.feeds.resyncs} · parse errors ${st.feeds.parse_errors}` });
      $('#ops-feeds').replaceChildren(t, totals);
    } else {
      $('#ops-feeds').replaceChildren(absent('feeds, breakers, gaps and resyncs'), el('p', { text: `Books resyncing now (from the shm file): ${w.stale ?? '-'}` }));
    }
    if (st.ring) {
      $('#ops-ring').replaceChildren(el('table', null, el('tbody', null, ...[
        ['occupancy (events)', st.ring.occupancy], ['pushed', st.ring.pushed], ['applied', st.ring.applied],
        ['full waits', st.ring.full_waits], ['dropped', st.ring.dropped], ['crossed commits', st.ring.crossed_commits],
      ].map(([a, b]) => el('tr', null, el('td', { class: 'text', text: a }), el('td', { text: String(b) }))))));
    } else {
      $('#ops-ring').replaceChildren(absent('ring counters'));
    }
    if (st.persist) {
      const p = st.persist;
      $('#ops-persist').replaceChildren(el('table', null, el('tbody', null, ...[
        ['connected', p.connected ? 'yes' : 'NO'], ['halted', p.halted ? 'YES' : 'no'], ['lag', `${p.lag_ms} ms · ${p.lag_bytes} bytes`],
        ['journal', `${p.journal_bytes} bytes`], ['batches · retries', `${p.batches} · ${p.retries}`],
        ...Object.entries(p.rows).map(([t, n]) => [`rows: ${t}`, n]), ['last error', p.last_error || '-'],
      ].map(([a, b]) => el('tr', null, el('td', { class: 'text', text: a }), el('td', { text: String(b) }))))));
    } else {
      $('#ops-persist').replaceChildren(absent('persister counters'));
    }
  }

  // ---- for tests and the benchmark --------------------------------------------------

  window.hermesDashboard = {
    counters: S.counters,
    stream: S.stream,
    rows: () => [...S.rows.values()],
    points: (id) => (S.hist.get(id) || { t: [] }).t.length,
    eventsById: () => Object.fromEntries(S.eventsById),
  };

  boot();
})();
