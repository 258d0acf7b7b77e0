// Journey: a stage is stuck (its pods never get ready); the owner opens
// "Cancel…" on the work order page, writes why while the live stage table
// keeps refreshing around her (it holds still while the form is open),
// confirms, and sees the stage fail with her reason — then Roll back is
// offered.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;
const order = process.env.ROLLWAY_ORDER_ID;

await journey('cancel-stage', async (newPage) => {
  const page = await newPage();
  await login(page, 'olivia', password);
  await page.goto(`${base}/work-orders/${order}`);
  const stage1 = page.locator('#stage-runs tr[data-stage="1"]');
  assert.match(await stage1.locator('[data-status]').getAttribute('data-status'), /^(deploying|verifying)$/);
  assert.equal(await stage1.locator('button[data-action="rollback"]').count(), 0, 'no rollback mid-rollout');
  // Count the live refreshes held back while a form is open.
  await page.evaluate(() => {
    window.__held = 0;
    document.addEventListener('htmx:beforeRequest', (e) => { if (e.defaultPrevented) window.__held += 1; });
  });
  await stage1.locator('summary[data-action="cancel"]').click();
  const reason = stage1.locator('input[name="reason"]');
  await reason.fill('pods never get ready; investigating the image');
  await page.waitForFunction(() => window.__held >= 1, null, { timeout: 15000 });
  assert.equal(await reason.inputValue(), 'pods never get ready; investigating the image',
    'what she typed survives the live refresh');
  await shot(page, 'stage-cancel-form.png');

  page.once('dialog', (d) => d.accept());
  await stage1.locator('button[data-action="cancel-stage"]').click();
  await page.waitForSelector('.notice-success');
  assert.match(await page.locator('.notice-success').innerText(), /^Stage 1 cancelled: roll it back or close the order\.$/);
  assert.equal(await page.locator('#stage-runs tr[data-stage="1"] [data-status]').getAttribute('data-status'), 'failed');
  assert.match(await page.locator('#stage-runs tr[data-stage="1"] .detail').innerText(),
    /pods never get ready; investigating the image — staging\/checkout when cancelled:/);
  assert.match(await page.locator('#timeline').innerText(), /stage cancelled/);
  assert.ok(await page.locator('#stage-runs tr[data-stage="1"] button[data-action="rollback"]').isVisible(),
    'rollback offered once the stage is cancelled');
  assert.match(await page.locator('#next').innerText(), /Roll it back, or close the order/, 'the next step is spelt out');
  await shot(page, 'stage-cancelled.png');
});
