// Journey: an engineer files a work order picking a tag that GitLab serves;
// the owner, in a second browser context, sees it in their approvals and
// approves it; both then see the approved state and both timeline events.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;

await journey('file-and-approve', async (newPage) => {
  const engineer = await newPage();
  const owner = await newPage();
  await login(engineer, 'eric', password);
  await login(owner, 'olivia', password);

  // The engineer picks the item; htmx loads its stages and GitLab's tags.
  await engineer.goto(`${base}/work-orders/new`);
  await engineer.selectOption('#pick-item-form select[name="item"]', { label: 'checkout (/acme/pay)' });
  await engineer.waitForSelector('#new-work-order-form select[name="version"]');
  assert.match(engineer.url(), /item=\d+/, 'the picked item is in the address');
  const versions = await engineer.locator('select[name="version"] option').allInnerTexts();
  assert.ok(versions.length >= 3, `tags listed: ${versions}`);
  assert.match(versions[0], /^v1\.2\.0 · \d{4}-\d\d-\d\d \(/, 'newest first, with the date it was tagged');
  // Typing filters the versions, and the selection follows.
  await engineer.fill('#version-filter', '1.1');
  const shown = await engineer.$$eval('#version-select option', (os) => os.filter((o) => !o.hidden).map((o) => o.value));
  assert.deepEqual(shown, ['v1.1.0'], 'only the matching tag');
  assert.equal(await engineer.inputValue('#version-select'), 'v1.1.0');
  await engineer.fill('#version-filter', '');
  await engineer.selectOption('select[name="version"]', 'v1.2.0');
  await engineer.fill('#new-work-order-form input[name="title"]', 'Ship checkout 1.2.0');
  await engineer.fill('#new-work-order-form textarea[name="description"]', 'Faster payment page.\nRollback: previous tag.');
  await shot(engineer, 'work-order-new.png');
  await engineer.click('#new-work-order-form button:has-text("File work order")');
  await engineer.waitForURL(/\/work-orders\/\d+$/);
  const orderUrl = engineer.url();
  assert.equal((await engineer.locator('#order-state').innerText()).trim(), 'Waiting for approval');
  assert.equal(await engineer.locator('#decision-form').count(), 0, 'the engineer cannot decide');
  await shot(engineer, 'work-order-filed.png');

  // The owner sees it waiting, with a count in the header.
  await owner.reload();
  assert.equal((await owner.locator('#approvals-link .count').innerText()).trim(), '1');
  await owner.click('#approvals-link');
  await owner.waitForURL(/\/approvals/);
  await shot(owner, 'approvals-inbox.png');
  await owner.click('#work-orders a:has-text("Ship checkout 1.2.0")');
  await owner.waitForURL(orderUrl);
  await owner.fill('#decision-form input[name="comment"]', 'Looks good');
  await owner.click('#decision-form button:has-text("Approve")');
  await owner.waitForSelector('.notice-success');
  assert.equal((await owner.locator('#order-state').innerText()).trim(), 'Approved');
  assert.equal(await owner.locator('#approvals-link .count').count(), 0, 'badge cleared');
  await shot(owner, 'work-order-approved-owner.png');

  // Both see the approved state and the two events.
  await engineer.reload();
  for (const page of [engineer, owner]) {
    assert.equal((await page.locator('#order-state').innerText()).trim(), 'Approved');
    const kinds = await page.locator('#timeline li').evaluateAll((lis) => lis.map((li) => li.dataset.kind));
    assert.deepEqual(kinds, ['filed', 'approved']);
  }
  assert.match(await engineer.locator('#approvers').innerText(), /olivia\s+approved/);
  await shot(engineer, 'work-order-approved-engineer.png');

  await engineer.goto(`${base}/work-orders`);
  await shot(engineer, 'work-orders-list.png');
  await engineer.setViewportSize({ width: 390, height: 844 });
  await engineer.goto(orderUrl);
  await shot(engineer, 'work-order-phone.png');
});
