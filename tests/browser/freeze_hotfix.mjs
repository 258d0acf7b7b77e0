// Journey: an owner freezes prod on her node from its page (a recurring
// window in Berlin time); the engineer's hotfix, approved and through
// staging, shows prod held by the freeze with who may let it through; the
// owner lets it through from the order's page, and the calendar lists the
// window as on now. Then an incident: the owner stops the line on her node;
// the hotfix's prod stage shows held by the stop, and she lifts the stop
// from the calendar; the webhook she set on the node was told of both.
import assert from 'node:assert/strict';
import { base, journey, login, shot } from './lib.mjs';

const password = process.env.ROLLWAY_USER_PASSWORD;
const node = process.env.ROLLWAY_NODE_ID;
const order = process.env.ROLLWAY_ORDER_ID;

await journey('freeze-hotfix', async (newPage) => {
  const olivia = await newPage();
  await login(olivia, 'olivia', password);
  await olivia.goto(`${base}/tree/nodes/${node}`);
  await olivia.locator('#freeze-windows summary').click();
  const form = olivia.locator('#freeze-form');
  await form.locator('input[name="reason"]').fill('Year-end freeze');
  await form.locator('input[name="kind"][value="recurring"]').check();
  await form.locator('input[name="cron_start"]').fill('* * * * *');
  await form.locator('input[name="cron_end"]').fill('0 0 1 1 *');
  await form.locator('input[name="time_zone"]').fill('Europe/Berlin');
  await form.locator('input[name="env_prod"]').check();
  await form.locator('button[type="submit"]').click();
  await olivia.waitForSelector('.notice-success');
  assert.match(await olivia.locator('.notice-success').innerText(), /Freeze window "Year-end freeze" set on \/acme\/pay\./);
  const row = olivia.locator('ul.freezes li').first();
  assert.match(await row.innerText(), /Year-end freeze[\s\S]*frozen now[\s\S]*On now, until \d{4}-01-01 00:00 Europe\/Berlin[\s\S]*only prod/);
  await shot(olivia, 'freeze-node.png');

  const eric = await newPage();
  await login(eric, 'eric', password);
  await eric.goto(`${base}/work-orders/${order}`);
  assert.equal(await eric.locator('#hotfix-badge').count(), 1);
  const banner = eric.locator('#freeze');
  assert.match(await banner.innerText(), /Stage 2 \(prod\) is frozen by “Year-end freeze” on \/acme\/pay until/);
  assert.match(await banner.innerText(), /once an owner of \/acme\/pay \(or an admin\) other than who filed it lets it through/);
  assert.equal(await eric.locator('#freeze-override-form').count(), 0);
  await shot(eric, 'freeze-held-hotfix.png');

  await olivia.goto(`${base}/work-orders/${order}`);
  await olivia.locator('#freeze-override-form input[name="comment"]').fill('cards are charged twice');
  olivia.once('dialog', (d) => d.accept());
  await olivia.locator('#freeze-override-form button').click();
  await olivia.waitForSelector('.notice-success');
  assert.match(await olivia.locator('.notice-success').innerText(), /Let this hotfix through "Year-end freeze"\./);
  assert.equal(await olivia.locator('#freeze [data-held]').count(), 0, 'nothing holds it now');
  assert.match(await olivia.locator('body').innerText(), /let hotfix \(checkout charges cards twice\) through freeze "Year-end freeze" on \/acme\/pay: cards are charged twice/);
  await shot(olivia, 'freeze-let-through.png');

  await olivia.goto(`${base}/freezes`);
  assert.match(await olivia.locator('#calendar').innerText(), /on now[\s\S]*Year-end freeze[\s\S]*\/acme\/pay[\s\S]*prod/);
  await shot(olivia, 'freeze-calendar.png');

  // A signed webhook for the node's events: its secret is shown once.
  await olivia.goto(`${base}/tree/nodes/${node}`);
  await olivia.locator('#notifications summary').click();
  const hook = olivia.locator('#destination-form');
  await hook.locator('input[name="name"]').fill('Release bot');
  await hook.locator('input[name="kind"][value="webhook"]').check();
  await hook.locator('input[name="url"]').fill('https://hooks.example.invalid/rollway');
  await hook.locator('input[name="ev_line_stopped"]').check();
  await hook.locator('input[name="ev_line_lifted"]').check();
  await hook.locator('button[type="submit"]').click();
  await olivia.waitForSelector('.notice-success');
  assert.match(await olivia.locator('.notice-success').innerText(), /Notification destination "Release bot" set on \/acme\/pay\./);
  assert.match(await olivia.locator('#new-secret').innerText(), /^whsec_[A-Za-z0-9+/=]{44}$/);
  assert.match(await olivia.locator('#destinations').innerText(), /Release bot[\s\S]*webhook[\s\S]*https:\/\/hooks\.example\.invalid\/…[\s\S]*line_stopped, line_lifted/);
  await shot(olivia, 'notifications-node.png');
  // The form answered with a redirect: reloading shows the page again
  // without the secret and without setting a second destination.
  await olivia.reload();
  assert.equal(await olivia.locator('#new-secret').count(), 0, 'shown once');
  assert.equal(await olivia.locator('#destinations li').count(), 1, 'set once');
  await olivia.locator('#stop-line summary').click();
  const stop = olivia.locator('#stop-line-form');
  await stop.locator('input[name="reason"]').fill('Incident 42: checkout errors');
  await stop.locator('input[name="pause_rollouts"]').check();
  olivia.once('dialog', (d) => d.accept());
  await stop.locator('button[type="submit"]').click();
  await olivia.waitForSelector('.notice-success');
  assert.match(await olivia.locator('.notice-success').innerText(), /Stopped the line at \/acme\/pay: 1 open work order held\./);
  assert.match(await olivia.locator('#line-stop').innerText(), /The line is stopped here by olivia .*: “Incident 42: checkout errors”\. Deploys and canary steps here and below wait, and rolling updates under way are paused, until it is lifted\./);
  assert.equal(await olivia.locator('#stop-line-form').count(), 0, 'one stop per node');
  await shot(olivia, 'line-stop-node.png');

  await eric.goto(`${base}/work-orders/${order}`);
  assert.match(await eric.locator('#line-stop').innerText(), /The line is stopped at \/acme\/pay by olivia[\s\S]*Stage 2 of this order neither starts nor goes on to a next canary step until the stop is lifted/);
  assert.equal(await eric.locator('#line-stop [data-action="lift-stop"]').count(), 0, 'an engineer may not lift it');
  assert.equal(await eric.locator('tr[data-stage="2"] [data-stopped]').count(), 1, 'prod shows held');
  assert.equal(await eric.locator('tr[data-stage="2"] [data-action="deploy"]').count(), 0);
  await shot(eric, 'line-stop-order.png');

  await olivia.goto(`${base}/freezes`);
  olivia.once('dialog', (d) => d.accept());
  await olivia.locator('#line-stops [data-action="lift-stop"]').click();
  await olivia.waitForSelector('.notice-success');
  assert.match(await olivia.locator('.notice-success').innerText(), /Lifted the stop at \/acme\/pay: held work goes on\./);
  assert.equal(await olivia.locator('#line-stops').count(), 0);
  assert.equal(new URL(olivia.url()).pathname, '/freezes');

  // Both were told to the webhook: the log lists them, newest first.
  await olivia.goto(`${base}/notifications`);
  const log = olivia.locator('table.deliveries');
  assert.match(await log.innerText(), /line lifted[\s\S]*line stopped/);
  assert.equal(await olivia.locator('h2', { hasText: 'Release bot' }).count(), 1);
  await shot(olivia, 'notifications-log.png');
});
