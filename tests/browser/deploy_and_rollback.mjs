// Journey: on an approved work order the engineer deploys stage 1 and
// watches its status turn succeeded without reloading; opens the pods of
// the new version and a pod's log (and follows it); then rolls the stage
// back and sees it rolled back, again without reloading.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;
const order = process.env.ROLLWAY_ORDER_ID;

await journey('deploy-and-rollback', async (newPage) => {
  const page = await newPage();
  await login(page, 'eric', password);
  await page.goto(`${base}/work-orders/${order}`);
  const stage1 = page.locator('#stage-runs tr[data-stage="1"]');
  const status1 = stage1.locator('[data-status]');
  assert.equal(await status1.getAttribute('data-status'), 'pending');
  assert.equal(await page.locator('#stage-runs tr[data-stage="2"] [data-action="deploy"]').count(), 0,
    'stage 2 cannot start before stage 1');
  await shot(page, 'stage-before-deploy.png');

  // Deploy first says what changes, read from the cluster.
  await stage1.locator('[data-action="deploy"]').click();
  await page.waitForSelector('#confirm-form');
  const fact = async (label) => (await page.locator(`#confirm dd[data-fact="${label}"]`).innerText()).trim();
  assert.match(await fact('Runs now'), /checkout:v1\.0\.0$/, 'the image running now, from the cluster');
  assert.match(await fact('Becomes'), /checkout:v1\.1\.0$/);
  assert.equal(await fact('Environment'), 'staging');
  assert.equal(await page.locator('#confirm dd[data-fact="Environment"]').getAttribute('class'), 'danger-text',
    'staging and prod are in red');
  await shot(page, 'deploy-confirm.png');
  await page.click('#confirm-form button[data-action="confirm"]');
  await page.waitForSelector('.notice-success');
  // From here on the page is not reloaded: htmx refreshes the stage table.
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.waitForFunction(() => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'deploying'
    || document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'verifying'
    || document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'succeeded');
  await shot(page, 'stage-deploying.png');
  await page.waitForFunction(
    () => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'succeeded',
    null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'status changed without a reload');
  assert.ok(await page.locator('#stage-runs tr[data-stage="2"] [data-action="deploy"]').isVisible(),
    'stage 2 can start now');
  assert.ok(await stage1.locator('button[data-action="rollback"]').isVisible(), 'rollback offered');
  assert.match(await page.locator('#timeline').innerText(), /stage succeeded/);

  // Pods of the new version, loaded into the page.
  // Two ready pods of the new version (the section refreshes by itself).
  await page.waitForFunction(
    () => [...document.querySelectorAll('#pods table[data-role="new"] tr[data-pod]')]
      .filter((row) => row.textContent.includes('1/1')).length === 2,
    null, { timeout: 20000 });
  assert.match(await page.locator('#pods [data-group="new"]').innerText(), /checkout:v1\.1\.0/, 'the new version is v1.1.0');
  await shot(page, 'stage-succeeded-with-pods.png');

  // A pod's log, then follow it.
  await page.locator('#pods table[data-role="new"] a:has-text("Logs")').first().click();
  await page.waitForURL(/\/logs/);
  assert.match(await page.locator('#log').innerText(), /v1\.1\.0/, 'the log names the image it runs');
  await page.click('#follow');
  await page.waitForFunction(() => document.getElementById('log').textContent.trim().length > 0);
  assert.equal(await page.locator('#follow').innerText(), 'Stop following');
  await shot(page, 'pod-log.png');
  await page.click('#follow');

  // Roll back, confirming the dialog.
  await page.goto(`${base}/work-orders/${order}`);
  page.once('dialog', (d) => d.accept());
  await page.locator('#stage-runs tr[data-stage="1"] button[data-action="rollback"]').click();
  await page.waitForSelector('.notice-success');
  assert.equal((await page.locator('.notice-success').innerText()).trim(), 'Rollback of stage 1 started.');
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.waitForFunction(
    () => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'rolled_back',
    null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'rolled back without a reload');
  assert.equal((await page.locator('#order-state').innerText()).trim(), 'Rolled back',
    'the badge follows the rollback without a reload');
  assert.match(await page.locator('#timeline').innerText(), /rolled back/);
  await shot(page, 'stage-rolled-back.png');
  // Once the rollback ends the page stops refreshing; a reload offers the next step.
  await page.reload();
  assert.equal((await page.locator('#stage-runs tr[data-stage="2"] .badge').innerText()).trim(), 'not run',
    'stage 2 of a finished order will not run');
  assert.equal(await page.locator('#next a[data-action="file-again"]').innerText(), 'File v1.1.0 again');
  await shot(page, 'order-rolled-back-next.png');
  await page.click('#next a[data-action="file-newer"]');
  await page.waitForURL(/\/work-orders\/new\?item=\d+$/);

  // The dashboard says what each cluster runs now.
  await page.goto(`${base}/`);
  const row = page.locator('#dashboard tbody tr').first();
  // The first look asks for the clusters' watches; they answer within moments.
  for (let i = 0; i < 60 && await row.locator('td[data-stage="1"] [data-live="running"]').count() === 0; i++) {
    await page.waitForTimeout(250);
    await page.reload();
  }
  assert.equal((await row.locator('td[data-stage="1"] [data-live="running"]').innerText()).trim(), 'v1.0.0',
    'staging runs the old tag again after the rollback');
  assert.match(await row.locator('td[data-stage="1"]').innerText(), /Last: #\d+ v1\.1\.0\s+Rolled back/);
  await shot(page, 'dashboard.png');
  // The list's item picker offers the items once focused.
  await page.goto(`${base}/work-orders`);
  await page.focus('#filter-item');
  await page.waitForFunction(() => document.querySelectorAll('#item-options option').length > 0);
  assert.equal(await page.locator('#item-options option').first().getAttribute('value'), 'checkout');
  await page.goto(`${base}/`);
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'dashboard-phone.png');
});
