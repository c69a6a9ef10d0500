// Drives Debian's chromium, headless, with playwright-core, for the dashboard tests
// (tools/tests/integration/dashboard.rs). The test logic stays in Rust: this script
// only answers commands, one JSON object per line on stdin, with one JSON line on stdout:
//
//   {"op":"goto","url":U}                      open U
//   {"op":"wait","js":EXPR,"timeout_ms":N}     poll until EXPR is truthy; answers its value
//   {"op":"eval","js":EXPR}                    the value of EXPR in the page
//   {"op":"click","selector":S}                click the element
//   {"op":"fill","selector":S,"text":T}        type into an input
//   {"op":"screenshot","path":P}               a PNG of the page
//   {"op":"close"}                             close the browser and exit
//
// Every answer is {"ok":true,"value":…} or {"ok":false,"error":…}. Waiting is polling
// with a deadline, never a fixed sleep.
//
// Environment: HERMES_CHROMIUM (default /usr/bin/chromium), HERMES_BROWSER_PROFILE (a
// fresh, empty directory for --user-data-dir).
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const executablePath = process.env.HERMES_CHROMIUM || '/usr/bin/chromium';
const profile = process.env.HERMES_BROWSER_PROFILE || mkdtempSync(join(tmpdir(), 'hermes-chromium-'));

// The flags this machine needs (no sandbox as root, no GPU, nothing fetched in the
// background from a network that is closed).
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: CHROMIUM_ARGS,
  viewport: { width: 1400, height: 900 },
});
const page = context.pages()[0] || (await context.newPage());
const console_ = [];
page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));

// Polls EXPR every 50 ms until it is truthy, failing at the deadline with its last value.
// (page.waitForFunction would evaluate the string with eval() inside the page, which the
// dashboard's Content-Security-Policy rightly forbids; page.evaluate goes through CDP.)
async function waitFor(js, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await page.evaluate(js);
    } catch (e) {
      last = `error: ${e.message}`; // e.g. a navigation in progress: try again
    }
    if (last && !(typeof last === 'string' && last.startsWith('error: '))) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
say({ ok: true, value: { browser: context.browser()?.version() ?? 'chromium', profile } });

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    say({ ok: false, error: `bad command: ${e.message}` });
    continue;
  }
  try {
    let value = null;
    switch (cmd.op) {
      case 'goto':
        await page.goto(cmd.url, { waitUntil: 'load' });
        break;
      case 'wait':
        value = await waitFor(cmd.js, cmd.timeout_ms ?? 30000);
        break;
      case 'eval':
        value = await page.evaluate(cmd.js);
        break;
      case 'click':
        await page.click(cmd.selector, { timeout: 10000 });
        break;
      case 'fill':
        await page.fill(cmd.selector, cmd.text, { timeout: 10000 });
        break;
      case 'screenshot':
        await page.screenshot({ path: cmd.path, fullPage: cmd.full_page ?? false });
        value = cmd.path;
        break;
      case 'close':
        say({ ok: true, value: null });
        await context.close();
        process.exit(0);
      default:
        throw new Error(`unknown op ${cmd.op}`);
    }
    say({ ok: true, value });
  } catch (e) {
    say({ ok: false, error: `${e.message}\n--- page console ---\n${console_.slice(-30).join('\n')}` });
  }
}
await context.close();
