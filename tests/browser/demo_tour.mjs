// Journey: the tour `rollway demo` prints, in the browser. The engineer
// files checkout v1.2.0, the owner approves it; staging deploys and its
// error-ratio gate passes (the chart and measurements on the page); prod
// runs a canary whose gate is measured at each step, the owner approves
// step 1 and signs the stage off; then v1.3.0-bad fails its gate on
// staging and rolls back by itself.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const engineerPassword = process.env.DEMO_ENGINEER_PASSWORD;
const ownerPassword = process.env.DEMO_OWNER_PASSWORD;

await journey('demo-tour', async (newPage) => {
  const engineer = await newPage();
  const owner = await newPage();
  await login(engineer, 'engineer', engineerPassword);
  await login(owner, 'owner', ownerPassword);
  assert.match(await engineer.locator('#demo-badge').innerText(), /simulated/);

  const file = async (version) => {
    await engineer.goto(`${base}/work-orders/new`);
    await engineer.selectOption('#pick-item-form select[name="item"]', { label: 'checkout (/payments/checkout)' });
    await engineer.waitForSelector('#new-work-order-form select[name="version"]');
    await engineer.selectOption('select[name="version"]', version);
    await engineer.fill('#new-work-order-form input[name="title"]', `Ship checkout ${version}`);
    await engineer.click('#new-work-order-form button:has-text("File work order")');
    await engineer.waitForURL(/\/work-orders\/\d+$/);
    const url = engineer.url();
    await owner.goto(url);
    await owner.click('#decision-form button:has-text("Approve")');
    await owner.waitForSelector('.notice-success');
    return url;
  };
  const deploy = async (stage) => {
    await engineer.reload();
    await engineer.locator(`#stage-runs tr[data-stage="${stage}"] [data-action="deploy"]`).click();
    await engineer.waitForSelector('#confirm-form');
    await engineer.click('#confirm-form button[data-action="confirm"]');
    await engineer.waitForSelector('.notice-success');
  };
  // Waits (the page refreshes itself) until stage `n` is `status`.
  const statusIs = (page, n, status, timeout = 90000) => page.waitForFunction(
    ([stage, want]) => document.querySelector(`#stage-runs tr[data-stage="${stage}"] [data-status]`)?.dataset.status === want,
    [n, status], { timeout });

  const good = await file('v1.2.0');
  // The plan is on the page before anything runs.
  assert.match(await engineer.locator('#verify-1').innerText(), /error ratio/);
  await deploy(1);
  await statusIs(engineer, 1, 'succeeded');
  const staging = engineer.locator('#verify-1');
  assert.ok(await staging.locator('svg.gate-chart').count() === 1, 'a chart of the gate');
  assert.ok(await staging.locator('[data-verdict="pass"]').count() >= 2, 'two passed measurements');
  await shot(engineer, 'demo-staging-verified.png');

  // Prod: a canary with the gate at each step.
  await deploy(2);
  await engineer.waitForFunction(
    () => document.querySelector('#canary-2 li[data-step="1"]')?.dataset.state === 'paused',
    null, { timeout: 90000 });
  assert.match(await engineer.locator('#stage-runs tr[data-stage="2"]').innerText(), /gates passed/);
  await owner.goto(good);
  owner.once('dialog', (d) => d.accept());
  await owner.locator('#canary-2 li[data-step="1"] [data-action="approve-step"]').click();
  await owner.waitForSelector('.notice-success');
  // Steps 2 and 3 go on by themselves once their gate passed; then the
  // soak and the owner's sign-off.
  await owner.waitForSelector('#verify-2 [data-action="sign-off"]', { timeout: 120000 });
  await shot(owner, 'demo-prod-waits-for-sign-off.png');
  owner.once('dialog', (d) => d.accept());
  await owner.locator('#verify-2 [data-action="sign-off"]').click();
  await owner.waitForSelector('.notice-success');
  await statusIs(owner, 2, 'succeeded');
  const prodText = await owner.locator('#verify-2').innerText();
  for (const step of [1, 2, 3]) assert.match(prodText, new RegExp(`step ${step} · #1`), `measured at step ${step}`);
  assert.match(await owner.locator('#verify-2 [data-sign-off]').innerText(), /signed off/);
  await shot(owner, 'demo-prod-succeeded.png');

  // The bad tag: rolled back by its gate.
  await file('v1.3.0-bad');
  await deploy(1);
  await statusIs(engineer, 1, 'rolled_back');
  assert.ok(await engineer.locator('#verify-1 [data-verdict="fail"]').count() >= 1, 'a failed measurement');
  assert.match(await engineer.locator('#timeline').innerText(), /gate 1 \(error ratio\) failed/);
  await shot(engineer, 'demo-bad-rolled-back.png');
});
