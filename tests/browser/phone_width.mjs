// Every page fits a phone (390 px): the admin's menu folds behind a Menu
// button, then the site is crawled from `/` — every link the admin can
// follow, one visit per kind of page (a number in the path or a query
// value makes no new kind) — and on each page nothing scrolls sideways:
// not the page, not a table or box inside it; no text field is squeezed
// to a sliver. A screenshot of each kind of page is saved.
import assert from 'node:assert/strict';
import { adminPassword, base, journey, login, shot } from './lib.mjs';

const WIDTH = 390;
const MAX_PAGES = 120;

/** The kind of a page: its path with numbers as `N`, and its query's keys. */
function kind(url) {
  const u = new URL(url);
  const keys = [...new Set([...u.searchParams.keys()])].sort().join('&');
  const path = u.pathname.replace(/\/\d+/g, '/N').replace(/\/pods\/[^/]+\/logs/, '/pods/P/logs');
  return path + (keys ? `?${keys}` : '');
}

/** Whatever on the page is wider than it may be, described for the reader. */
async function overflows(page) {
  return page.evaluate(() => {
    const found = [];
    const doc = document.documentElement;
    if (doc.scrollWidth > doc.clientWidth) {
      found.push(`the page is ${doc.scrollWidth} px wide in a ${doc.clientWidth} px window`);
    }
    const name = (el) => el.tagName.toLowerCase() + (el.id ? `#${el.id}` : '')
      + (el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : '');
    for (const el of document.querySelectorAll('body *')) {
      const style = getComputedStyle(el);
      if (style.display === 'none' || el.closest('details:not([open])')) continue;
      if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
        found.push(`${name(el)} scrolls sideways (${el.scrollWidth} px in ${el.clientWidth} px)`);
      }
      const rect = el.getBoundingClientRect();
      if (rect.width > 0 && rect.right > doc.clientWidth + 1 && !el.closest('[style*="overflow"]')) {
        // Inside a box that scrolls, the box was reported already.
        let clipped = false;
        for (let p = el.parentElement; p; p = p.parentElement) {
          if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) { clipped = true; break; }
        }
        if (!clipped) found.push(`${name(el)} ends at ${Math.round(rect.right)} px`);
      }
    }
    for (const field of document.querySelectorAll('input:not([type=checkbox]):not([type=radio]):not([type=hidden]), select, textarea')) {
      const rect = field.getBoundingClientRect();
      if (rect.width > 0 && rect.width < 100 && !field.closest('details:not([open])')) {
        found.push(`${name(field)}[name=${field.name}] is only ${Math.round(rect.width)} px wide`);
      }
    }
    return [...new Set(found)].slice(0, 12);
  });
}

await journey('phone-width', async (newPage) => {
  const page = await newPage({ viewport: { width: WIDTH, height: 844 }, isMobile: true, hasTouch: true });
  await login(page, 'admin', adminPassword);
  await page.goto(`${base}/`);

  // The menu folds: its links are hidden until the Menu button opens it.
  const menu = page.locator('button#menu-button');
  assert.ok(await menu.isVisible(), 'a Menu button at phone width');
  assert.equal(await menu.getAttribute('aria-expanded'), 'false');
  assert.ok(!(await page.locator('#mainnav a[href="/admin/users"]').isVisible()), 'the menu starts folded');
  await shot(page, 'phone-menu-closed.png');
  await menu.click();
  assert.equal(await menu.getAttribute('aria-expanded'), 'true');
  assert.ok(await page.locator('#mainnav a[href="/admin/users"]').isVisible(), 'Admin is in the open menu');
  assert.ok(await page.locator('#mainnav button:has-text("Log out")').isVisible(), 'so is Log out');
  const admin = await page.locator('#mainnav a[href="/admin/users"]').boundingBox();
  assert.ok(admin.x + admin.width <= WIDTH, `Admin fits (ends at ${admin.x + admin.width})`);
  await shot(page, 'phone-menu-open.png');

  const seen = new Set();
  const queue = [`${base}/`];
  const failures = [];
  let visited = 0;
  while (queue.length && visited < MAX_PAGES) {
    const url = queue.shift();
    const k = kind(url);
    if (seen.has(k)) continue;
    seen.add(k);
    const response = await page.goto(url);
    visited += 1;
    const status = response ? response.status() : 0;
    if (status >= 500) failures.push(`${url}: status ${status}`);
    // Live parts load with htmx: let them settle before measuring.
    await page.waitForLoadState('networkidle').catch(() => {});
    for (const problem of await overflows(page)) failures.push(`${new URL(url).pathname}${new URL(url).search}: ${problem}`);
    await shot(page, `phone-${k.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '') || 'dashboard'}.png`);
    const links = await page.$$eval('a[href]', (as) => as.map((a) => a.href));
    // An order's pods and changes load into its page; their own pages too.
    if (k === '/work-orders/N') links.push(`${url}/pods`, `${url}/changes`);
    for (const link of links) {
      const u = new URL(link);
      if (u.origin !== new URL(base).origin) continue;
      if (/^\/(static|api|logout)\b/.test(u.pathname) || u.pathname.endsWith('/stream')) continue;
      u.hash = '';
      if (!seen.has(kind(u.href))) queue.push(u.href);
    }
  }
  console.log(`phone-width: ${visited} kinds of page visited: ${[...seen].sort().join(' ')}`);
  assert.ok(visited >= 20, `the crawl reached ${visited} kinds of page`);
  for (const must of ['/work-orders/N', '/work-orders/N/stages/N/pods/P/logs', '/work-orders/N/pods',
    '/work-orders/N/changes', '/release-items',
    '/work-orders/N/stages/N/deploy', '/admin/audit', '/release-items/N', '/release-items/new', '/work-orders/new', '/apps/N']) {
    assert.ok([...seen].some((k) => k.startsWith(must)), `the crawl reached ${must} (saw ${[...seen].join(' ')})`);
  }
  assert.deepEqual(failures, [], 'every page fits 390 px');
});
