// Journey: CI has deployed a dev app and two branches' lanes through the
// fast path. An engineer opens the app from its node, reads what CI
// shipped (the app's own deploy and each lane's, with their status), and
// removes a finished branch's lane with its Remove button.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;
const node = process.env.ROLLWAY_NODE_ID;
const app = process.env.ROLLWAY_APP_ID;

await journey('app-lanes', async (newPage) => {
  const page = await newPage();
  await login(page, 'eric', password);
  await page.goto(`${base}/tree/nodes/${node}`);
  await page.locator(`a[href="/apps/${app}"]`).click();
  await page.waitForURL(`${base}/apps/${app}`);
  assert.equal(await page.locator('h1').innerText(), 'checkout-dev');
  const rows = page.locator('#deployments tbody tr');
  assert.equal(await rows.count(), 3, 'the app\'s deploy and one per lane');
  assert.match(await rows.nth(0).innerText(), /lane\s+feat-b[\s\S]*Succeeded[\s\S]*by ci-bot/);
  assert.match(await rows.nth(2).innerText(), /the app[\s\S]*Succeeded/);
  const lanes = page.locator('#lane-list > li');
  assert.equal(await lanes.count(), 2);
  assert.match(await lanes.nth(0).innerText(), /feat-a[\s\S]*:v1\.1\.0-a[\s\S]*checkout--feat-a/);
  await shot(page, 'app-page.png');

  page.once('dialog', (d) => d.accept());
  await page.locator('li[data-lane="feat-a"] button').click();
  await page.waitForSelector('.notice-success');
  assert.match(await page.locator('.notice-success').innerText(),
    /^Removing lane feat-a: its Deployment checkout--feat-a and Service checkout--feat-a are being deleted\.$/);
  // Gone, or on its way out (the engine may not have finished yet).
  const left = await page.locator('li[data-lane="feat-a"]').count();
  if (left > 0) {
    assert.match(await page.locator('li[data-lane="feat-a"]').innerText(), /removing/);
    assert.equal(await page.locator('li[data-lane="feat-a"] button').count(), 0, 'no second Remove');
  }
  assert.equal(await page.locator('li[data-lane="feat-b"]').count(), 1);
  await shot(page, 'app-lane-removed.png');
});
