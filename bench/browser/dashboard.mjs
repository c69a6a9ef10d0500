// The dashboard under load, in Debian's headless chromium: 100 instruments, each updated
// faster than the SSE rate cap, so the stream carries the cap (100 × --sse-max-hz events/s).
// Measures what the page keeps up with and what it costs:
//   - events/s the page applied, and per instrument (min / median), against the cap;
//   - table / chart repaints per second;
//   - CPU of every chromium process (browser, renderer, GPU/utility) from /proc, as % of
//     one core, and the renderer main thread's busy time (CDP Performance.getMetrics);
//   - CPU of `hermes serve` and of the writer, and the server's SSE events and drops.
// A benchmark, not a test: it asserts nothing; it prints one JSON object (and writes it
// to --out). Run it through bench/browser/dashboard.sh.
//
// Usage: node bench/browser/dashboard.mjs --hermes BIN [--seconds 20] [--instruments 100]
//        [--sse-max-hz 20] [--speed 10x] [--out FILE] [--profile 1]
// (--profile 1 adds the page's hottest functions by self time, from a CDP CPU profile.)
import { createRequire } from 'node:module';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
// playwright-core as installed for the browser tests (npm ci in tools/tests/browser).
const require = createRequire(join(root, 'tools/tests/browser/package.json'));
const { chromium } = require('playwright-core');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const HERMES = resolve(args.hermes || join(root, 'target/release/hermes'));
const SECONDS = Number(args.seconds || 20);
const INSTRUMENTS = Number(args.instruments || 100);
const MAX_HZ = Number(args['sse-max-hz'] || 20);
const SPEED = args.speed || '10x';
const OUT = args.out || join(root, 'target/bench/browser.json');
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);

const work = mkdtempSync(join(tmpdir(), 'hermes-bench-browser-'));
const children = [];
const cleanup = () => {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
};
process.on('exit', cleanup);

const run = (cmdArgs) => {
  const r = spawnSync(HERMES, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`hermes ${cmdArgs.join(' ')}: ${r.stderr}`);
  return r.stdout.toString();
};

// /proc/<pid>/stat: utime + stime (ticks) and the parent pid.
function procStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch { return null; }
}
function cmdline(pid) {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'); } catch { return []; }
}
// The chromium processes: those started with our profile, and their descendants.
function chromiumTree(profile) {
  const all = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  const stats = new Map(all.map((p) => [p, procStat(p)]).filter(([, s]) => s));
  // Every chromium process carries --user-data-dir; descendants are added for any that
  // does not (a helper started without it).
  const roots = all.filter((p) => cmdline(p).some((a) => a.includes(profile)));
  const tree = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, s] of stats) if (!tree.has(p) && tree.has(s.ppid)) { tree.add(p); grew = true; }
  }
  return [...tree].map((p) => {
    // Chromium rewrites its children's command lines into one space-separated string.
    const m = cmdline(p).join(' ').match(/--type=(\S+)/);
    const sub = cmdline(p).join(' ').match(/--utility-sub-type=(\S+)/);
    const type = m ? (sub ? `${m[1]}:${sub[1].split('.').pop()}` : m[1]) : 'browser';
    return { pid: p, type, ticks: stats.get(p).ticks };
  });
}
const cpuOf = (pids) => pids.reduce((t, p) => t + (procStat(p)?.ticks ?? 0), 0);

// 1. A market of INSTRUMENTS instruments, long enough for the run at SPEED.
const perVenue = Math.ceil(INSTRUMENTS / 2);
const speedFactor = SPEED === 'realtime' ? 1 : Number(SPEED.replace('x', ''));
// 1 ms of market time per frame; enough for both pages (warm-up and measurement each) and
// the start.
const frames = Math.ceil((2 * SECONDS + 60) * 1000 * speedFactor);
const cap = join(work, 'm.hcap');
const shm = join(work, 'shm');
run(['generate', '--out', cap, '--instruments', String(perVenue), '--frames', String(frames), '--depth', '20']);

// 2. The writer, and `hermes serve` over its file.
// --idle backoff --no-pin: the writer's threads sleep when idle instead of spinning on a
// core, so on a 2-core machine the browser is not measured with one core taken away.
const writer = spawn(HERMES, ['replay', cap, '--shm', shm, '--speed', SPEED, '--idle', 'backoff', '--no-pin'], { stdio: 'ignore' });
children.push(writer);
for (let i = 0; i < 1500 && !existsSync(shm); i++) await new Promise((r) => setTimeout(r, 20));
const server = spawn(HERMES, ['serve', '--shm', shm, '--http', '127.0.0.1:0', '--sse-max-hz', String(MAX_HZ)], { stdio: ['ignore', 'pipe', 'inherit'] });
children.push(server);
const url = await new Promise((ok) => createInterface({ input: server.stdout }).once('line', ok));
const status = async () => (await fetch(`${url}status`)).json();
for (let i = 0; i < 500; i++) {
  const st = await status();
  if (st.writer.instruments >= perVenue * 2) break;
  await new Promise((r) => setTimeout(r, 20));
}

// 3. The browser on the overview.
const profile = join(work, 'profile');
mkdirSync(profile);
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.HERMES_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1600, height: 2400 },
});
const page = context.pages()[0] || (await context.newPage());
const cdp = await context.newCDPSession(page);
await cdp.send('Performance.enable');

async function measure(name, hash) {
  await page.goto(`${url}${hash}`, { waitUntil: 'load' });
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const n = await page.evaluate(() => (window.hermesDashboard ? window.hermesDashboard.counters.events : 0));
    if (n > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 3000)); // warm-up: the first batch carries every slot
  const snap = async () => ({
    t: performance.now(),
    page: await page.evaluate(() => {
      const d = window.hermesDashboard;
      return { events: d.counters.events, renders: d.counters.renders, chart: d.counters.chartRenders,
        byId: d.eventsById(), drops: d.stream.drops };
    }),
    metrics: Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value])),
    chromium: chromiumTree(profile),
    server: cpuOf([server.pid]),
    writer: cpuOf([writer.pid]),
    status: await status(),
  });
  const a = await snap();
  if (args.profile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.start');
  }
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  let hot;
  if (args.profile) {
    // Self time by function over the measurement (a CPU profile of the page's main thread).
    const { profile: prof } = await cdp.send('Profiler.stop');
    const byNode = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map();
    prof.samples.forEach((id, i) => {
      const f = byNode.get(id).callFrame;
      const k = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
      self.set(k, (self.get(k) || 0) + (prof.timeDeltas[i] || 0));
    });
    const total = [...self.values()].reduce((x, y) => x + y, 0);
    hot = [...self.entries()].sort((x, y) => y[1] - x[1]).slice(0, 12)
      .map(([k, us]) => `${(100 * us / total).toFixed(1)}% ${k}`);
  }
  const b = await snap();
  const wall = (b.t - a.t) / 1000;
  const byType = {};
  for (const p of b.chromium) {
    const before = a.chromium.find((q) => q.pid === p.pid)?.ticks ?? 0;
    byType[p.type] = (byType[p.type] || 0) + (p.ticks - before);
  }
  const pct = (ticks) => Math.round((1000 * ticks) / CLK_TCK / wall) / 10;
  const perInstRates = Object.entries(b.page.byId).map(([id, n]) => (n - (a.page.byId[id] || 0)) / wall).sort((x, y) => x - y);
  const instruments = b.status.writer.instruments;
  return {
    page: name,
    seconds: Math.round(wall * 10) / 10,
    events_per_s: Math.round((b.page.events - a.page.events) / wall),
    cap_events_per_s: instruments * MAX_HZ,
    per_instrument_updates_per_s: {
      min: Math.round(perInstRates[0] * 10) / 10,
      median: Math.round(perInstRates[Math.floor(perInstRates.length / 2)] * 10) / 10,
      max: Math.round(perInstRates[perInstRates.length - 1] * 10) / 10,
    },
    // The overview's table, or the whole instrument page (quote, chart, ladder, kernels, tape).
    repaints_per_s: Math.round((b.page.renders - a.page.renders) / wall),
    repaint_target_per_s: name === 'overview' ? 10 : 20,
    chart_renders_per_s: Math.round((b.page.chart - a.page.chart) / wall),
    stream_drops: b.page.drops - a.page.drops,
    server_sse_dropped_clients: b.status.http.sse_dropped,
    chromium_cpu_pct_of_one_core: { total: pct(Object.values(byType).reduce((x, y) => x + y, 0)), ...Object.fromEntries(Object.entries(byType).map(([k, v]) => [k, pct(v)])) },
    renderer_main_thread_busy_pct: Math.round((1000 * (b.metrics.TaskDuration - a.metrics.TaskDuration)) / wall) / 10,
    renderer_script_pct: Math.round((1000 * (b.metrics.ScriptDuration - a.metrics.ScriptDuration)) / wall) / 10,
    renderer_layout_pct: Math.round((1000 * (b.metrics.LayoutDuration - a.metrics.LayoutDuration)) / wall) / 10,
    renderer_style_pct: Math.round((1000 * (b.metrics.RecalcStyleDuration - a.metrics.RecalcStyleDuration)) / wall) / 10,
    js_heap_mb: Math.round(b.metrics.JSHeapUsedSize / 1e5) / 10,
    hermes_serve_cpu_pct: pct(b.server - a.server),
    writer_cpu_pct: pct(b.writer - a.writer),
    ...(hot ? { profile_self_time: hot } : {}),
  };
}

const overview = await measure('overview', '#/');
const instrument = await measure('instrument', '#/i/coinbase:SYN0-USD');
const report = {
  bench: 'dashboard in headless chromium',
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, loadavg_1m: loadavg()[0], note: 'shared machine; pinning: none' },
  chromium: context.browser()?.version() ?? spawnSync('/usr/bin/chromium', ['--version']).stdout.toString().trim(),
  hermes: HERMES,
  instruments: INSTRUMENTS,
  writer_speed: SPEED,
  sse_max_hz: MAX_HZ,
  results: [overview, instrument],
};
await context.close();
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(report, null, 2) + '\n');
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
process.exit(0);
