// Journey: a canary release. The engineer files a work order; the owner
// approves it in a second browser; the engineer deploys the canary stage;
// the owner approves step 1 (requests with a header) and step 2 (a traffic
// weight) from the order page, which follows the canary by itself (no
// reload) to succeeded; then the engineer rolls the stage back.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;

await journey('canary', async (newPage) => {
  const engineer = await newPage();
  const owner = await newPage();
  await login(engineer, 'eric', password);
  await login(owner, 'olivia', password);

  // File.
  await engineer.goto(`${base}/work-orders/new`);
  await engineer.selectOption('#pick-item-form select[name="item"]', { label: 'checkout (/acme/pay)' });
  await engineer.waitForSelector('#new-work-order-form select[name="version"]');
  await engineer.selectOption('select[name="version"]', 'v1.1.0');
  await engineer.fill('#new-work-order-form input[name="title"]', 'Canary checkout 1.1.0');
  await engineer.click('#new-work-order-form button:has-text("File work order")');
  await engineer.waitForURL(/\/work-orders\/\d+$/);
  const orderUrl = engineer.url();
  // The plan is on the page before anything runs.
  const steps = engineer.locator('#canary-1 li.step');
  assert.equal(await steps.count(), 3, 'a header step and two weights');
  assert.match(await steps.nth(0).innerText(), /requests with header x-canary: yes/);
  assert.match(await steps.nth(1).innerText(), /50% traffic/);
  assert.deepEqual(await steps.evaluateAll((ls) => ls.map((l) => l.dataset.state)), ['ahead', 'ahead', 'ahead']);

  // Approve.
  await owner.goto(orderUrl);
  await owner.click('#decision-form button:has-text("Approve")');
  await owner.waitForSelector('.notice-success');

  // Deploy: the page follows the stage to its first pause by itself.
  await engineer.reload();
  await engineer.locator('#stage-runs tr[data-stage="1"] [data-action="deploy"]').click();
  await engineer.waitForSelector('#confirm-form');
  await engineer.click('#confirm-form button[data-action="confirm"]');
  await engineer.waitForSelector('.notice-success');
  await engineer.evaluate(() => { window.__sameDocument = true; });
  // Waits (no reload) until step `step` of stage 1 is `state`.
  const stepIs = (page, step, state) => page.waitForFunction(
    ([n, want]) => document.querySelector(`#canary-1 li[data-step="${n}"]`)?.dataset.state === want,
    [step, state], { timeout: 30000 });
  await stepIs(engineer, 1, 'paused');
  assert.equal(await engineer.evaluate(() => window.__sameDocument), true, 'paused without a reload');
  assert.equal(await engineer.locator('#canary-1 [data-action="approve-step"]').count(), 0,
    'an engineer does not approve steps');
  assert.match(await engineer.locator('#stage-runs tr[data-stage="1"]').innerText(), /paused at step 1 of 3/);
  await shot(engineer, 'canary-paused-step-1.png');

  // The owner approves step 1 from the page (confirming the dialog).
  await owner.goto(orderUrl);
  assert.equal(await owner.locator('#canary-1 li[data-step="1"]').getAttribute('data-state'), 'paused');
  let question = '';
  owner.once('dialog', (d) => { question = d.message(); d.accept(); });
  await owner.locator('#canary-1 li[data-step="1"] [data-action="approve-step"]').click();
  await owner.waitForSelector('.notice-success');
  assert.match(question, /Approve step 1 of stage 1 \(staging\)\? The canary goes on to step 2: 50% traffic\./);
  assert.equal((await owner.locator('.notice-success').innerText()).trim(),
    'Step 1 of stage 1 approved: the canary moves on.');
  // From here the owner's page follows the canary without a reload.
  await owner.evaluate(() => { window.__sameDocument = true; });
  await stepIs(owner, 2, 'paused');
  assert.match(await owner.locator('#canary-1 li[data-step="1"]').innerText(), /approved by olivia/);
  // The pods card tells canary from stable pods.
  await owner.waitForFunction(() => document.querySelector('#pods [data-group="new"]')?.textContent.includes('canary'),
    null, { timeout: 20000 });
  assert.match(await owner.locator('#pods [data-group="old"]').innerText(), /stable/);
  await shot(owner, 'canary-paused-step-2.png');

  owner.once('dialog', (d) => d.accept());
  await owner.locator('#canary-1 li[data-step="2"] [data-action="approve-step"]').click();
  await owner.waitForSelector('.notice-success');
  await owner.evaluate(() => { window.__sameDocument = true; });
  await owner.waitForFunction(
    () => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'succeeded',
    null, { timeout: 30000 });
  assert.equal(await owner.evaluate(() => window.__sameDocument), true, 'succeeded without a reload');
  assert.deepEqual(await owner.locator('#canary-1 li.step').evaluateAll((ls) => ls.map((l) => l.dataset.state)),
    ['done', 'done', 'done']);
  const wentOn = await owner.locator('#canary-1 [data-went-on]').allInnerTexts();
  assert.equal(wentOn.length, 2, `who let which step go on: ${wentOn}`);
  for (const line of wentOn) assert.match(line, /^approved by olivia /);
  await shot(owner, 'canary-succeeded.png');

  // The engineer's page followed too; roll back from it.
  await engineer.waitForFunction(
    () => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'succeeded',
    null, { timeout: 30000 });
  assert.equal(await engineer.evaluate(() => window.__sameDocument), true, 'the engineer did not reload either');
  engineer.once('dialog', (d) => d.accept());
  await engineer.locator('#stage-runs tr[data-stage="1"] button[data-action="rollback"]').click();
  await engineer.waitForSelector('.notice-success');
  await engineer.waitForFunction(
    () => document.querySelector('#stage-runs tr[data-stage="1"] [data-status]')?.dataset.status === 'rolled_back',
    null, { timeout: 30000 });
  assert.match(await engineer.locator('#timeline').innerText(), /rolled back/);
  assert.deepEqual(await engineer.locator('#canary-1 li.step').evaluateAll((ls) => ls.map((l) => l.dataset.state)),
    ['done', 'done', 'done'], 'rolled back after it finished: it went through every step');
  await shot(engineer, 'canary-rolled-back.png');
});
