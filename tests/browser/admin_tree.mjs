// Journey: an admin logs in, creates a user, a root node and a child node,
// adds the user as owner of the child, and checks the result at desktop and
// phone width.
import assert from 'node:assert/strict';
import { base, adminPassword, contrast, journey, login, shot } from './lib.mjs';

await journey('admin-tree', async (newPage) => {
  const page = await newPage();
  await page.goto(`${base}/login`);
  await shot(page, 'login.png');
  await login(page, 'admin', adminPassword);
  assert.match(page.url(), /\/$/, 'people land on the dashboard');
  assert.match(await page.locator('main').innerText(), /no release item you can see yet/);
  await shot(page, 'dashboard-empty.png');

  // Keyboard first: the first Tab reaches "Skip to content", shown, with a
  // focus ring of at least 3:1 against the page.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return { cls: el.className, top: el.getBoundingClientRect().top, outline: style.outlineColor,
      width: style.outlineWidth, page: getComputedStyle(document.body).backgroundColor };
  });
  assert.equal(focused.cls, 'skip-link');
  assert.ok(focused.top >= 0, 'the skip link shows when focused');
  assert.ok(contrast(focused.outline, focused.page) >= 3, `focus ring contrast ${JSON.stringify(focused)}`);
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'main');
  // Links in running text are underlined; placeholders do not look like values.
  assert.equal(await page.locator('main p.empty a').evaluate((a) => getComputedStyle(a).textDecorationLine), 'underline');
  await page.goto(`${base}/work-orders`);
  assert.equal(await page.locator('input[name="q"]').evaluate((i) => getComputedStyle(i, '::placeholder').fontStyle), 'italic');
  // The theme follows the system's dark setting.
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await page.evaluate(() => ({ bg: getComputedStyle(document.body).backgroundColor,
    text: getComputedStyle(document.body).color }));
  assert.ok(contrast(dark.bg, 'rgb(0, 0, 0)') < 1.3, `a dark page: ${dark.bg}`);
  assert.ok(contrast(dark.bg, dark.text) >= 7, `readable text: ${JSON.stringify(dark)}`);
  await shot(page, 'work-orders-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });

  await page.goto(`${base}/admin/users`);
  await page.fill('#new-user-form input[name="name"]', 'olivia');
  await page.fill('#new-user-form input[name="display_name"]', 'Olivia Owner');
  await page.fill('#new-user-form input[name="password"]', 'olivia-password-1');
  await page.click('#new-user-form button:has-text("Create user")');
  await page.waitForSelector('.notice-success');
  assert.equal(await page.locator('#users tr[data-account="olivia"]').count(), 1);

  await page.click('nav.mainnav a:has-text("Service tree")');
  await page.fill('#new-root-form input[name="name"]', 'acme');
  await page.fill('#new-root-form input[name="title"]', 'Acme Corp');
  await page.click('#new-root-form button:has-text("Create root node")');
  await page.waitForURL(/\/tree\/nodes\/\d+$/);
  assert.equal(await page.locator('h1').innerText(), 'Acme Corp');
  assert.equal(await page.locator('code.path').first().innerText(), '/acme');

  await page.fill('#new-child-form input[name="name"]', 'payments');
  await page.fill('#new-child-form input[name="title"]', 'Payments');
  await page.click('#new-child-form button:has-text("Add child node")');
  await page.waitForSelector('.notice-success');
  await page.click('#children a:has-text("Payments")');
  assert.equal(await page.locator('h1').innerText(), 'Payments');

  await page.fill('#add-member-form input[name="account"]', 'olivia');
  await page.selectOption('#add-member-form select[name="role"]', 'owner');
  await page.click('#add-member-form button:has-text("Add member")');
  await page.waitForSelector('.notice-success');
  const row = page.locator('#members tr[data-account="olivia"]');
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /owner/);
  assert.match(await page.locator('main').innerText(), /approved by olivia/);
  await shot(page, 'tree-node-with-owner.png');

  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  assert.equal(await page.locator('#members tr[data-account="olivia"]').count(), 1);
  await shot(page, 'tree-node-phone.png');

  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${base}/tree`);
  assert.equal(await page.locator('ul.treelist li').count(), 2);
  await shot(page, 'tree.png');
});
