// Drives Debian's headless Chromium with playwright-core for tests/browser.rs.
//
//   node drive.cjs track URL            opens a page with the tracker, clicks
//                                       a custom event and an SPA navigation
//   node drive.cjs dashboard URL PNG    opens the dashboard, reads its totals,
//                                       saves a screenshot
//
// Prints one JSON line. HOURGLASS_NODE_MODULES names the node_modules that
// holds playwright-core; HOURGLASS_HOST_RULES is passed to Chromium's
// --host-resolver-rules (a site's domain mapped to 127.0.0.1).
'use strict';
const path = require('path');
const { chromium } = require(path.join(process.env.HOURGLASS_NODE_MODULES, 'playwright-core'));

const [mode, url, png] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=${process.env.HOURGLASS_HOST_RULES || ''}`,
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    if (mode === 'track') {
      const beacons = [];
      page.on('requestfinished', async (r) => {
        if (r.url().includes('/api/event')) {
          const resp = await r.response();
          beacons.push({ body: r.postData(), status: resp ? resp.status() : 0 });
        }
      });
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForFunction(() => typeof window.hourglass === 'function' && !window.hourglass.q);
      // Events are stored with one-second times: a second apart, so the
      // funnel's steps have an order.
      await page.waitForTimeout(1100);
      await page.click('#signup');
      await page.waitForTimeout(1100);
      await page.click('#next');
      // Beacons are fire-and-forget; give them a moment to be answered.
      await page.waitForTimeout(1500);
      console.log(JSON.stringify({ beacons, location: page.url() }));
    } else if (mode === 'dashboard') {
      await page.goto(url, { waitUntil: 'load' });
      await page.waitForFunction(
        () => {
          const cards = [...document.querySelectorAll('#tables .card')];
          return document.querySelectorAll('#totals .stat').length >= 4 && cards.length >= 10
            && cards.every((c) => c.querySelector('table, .empty'));
        },
        null, { timeout: 30000 });
      await page.waitForTimeout(500);
      const cards = await page.$$eval('#tables .card', (els) => Object.fromEntries(
        els.map((e) => [e.querySelector('h2').textContent, e.innerText])));
      const stats = await page.$$eval('#totals .stat', (els) => Object.fromEntries(
        els.map((e) => [e.querySelector('.label').textContent, e.querySelector('.value').textContent])));
      const error = await page.$eval('#error', (e) => e.textContent);
      await page.screenshot({ path: png, fullPage: true });
      console.log(JSON.stringify({ stats, cards, error }));
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
