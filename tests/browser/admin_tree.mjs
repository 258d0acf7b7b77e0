// Journey: an admin logs in, creates a user, a root node and a child node,
// adds the user as owner of the child, and checks the result at desktop and
// phone width.
import assert from 'node:assert/strict';
import { base, adminPassword, journey, login, shot } from './lib.mjs';

await journey('admin-tree', async (newPage) => {
  const page = await newPage();
  await page.goto(`${base}/login`);
  await shot(page, 'login.png');
  await login(page, 'admin', adminPassword);
  assert.match(page.url(), /\/$/, 'people land on the dashboard');
  assert.match(await page.locator('main').innerText(), /no release item you can see yet/);
  await shot(page, 'dashboard-empty.png');

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
