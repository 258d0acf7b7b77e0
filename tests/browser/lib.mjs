// Shared helpers for the browser journeys: launch Debian's chromium through
// playwright-core (never a downloaded browser), log in, save screenshots.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export const base = process.env.ROLLWAY_BASE_URL;
export const adminPassword = process.env.ROLLWAY_ADMIN_PASSWORD;
if (!base || !adminPassword) {
  console.error('set ROLLWAY_BASE_URL and ROLLWAY_ADMIN_PASSWORD');
  process.exit(2);
}

export function artifactsDir() {
  const dir = process.env.ROLLWAY_ARTIFACTS || join(here, '..', '..', 'target', 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic',
    ],
  });
}

export async function shot(page, name) {
  const path = join(artifactsDir(), name);
  await page.screenshot({ path, fullPage: true });
  return path;
}

export async function login(page, user, password) {
  await page.goto(`${base}/login`);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.click('button:has-text("Log in")')]);
}

/** Runs a journey; on failure saves failure-<name>.png and exits non-zero. */
export async function journey(name, body) {
  const browser = await launch();
  const pages = [];
  const newPage = async (options = {}) => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
    const page = await context.newPage();
    pages.push(page);
    return page;
  };
  try {
    await body(newPage);
    console.log(`${name}: browser test passed`);
  } catch (err) {
    console.error(`${name}: FAILED: ${err.stack || err}`);
    for (const [i, page] of pages.entries()) {
      await page.screenshot({ path: join(artifactsDir(), `failure-${name}-${i}.png`), fullPage: true }).catch(() => {});
    }
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

/** WCAG contrast ratio of two CSS colours as computed styles give them (`rgb(…)`/`rgba(…)`). */
export function contrast(a, b) {
  const lum = (css) => {
    const [r, g, bl] = css.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}
