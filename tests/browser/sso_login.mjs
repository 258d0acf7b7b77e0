// Journey: with single sign-on set up (and passwords for admins only), a
// person opens Rollway, chooses "Sign in with Acme SSO", confirms at the
// provider and lands signed in where she was going, with the role her
// group gives her on /acme/pay shown on its page. The admin, logging in
// with a password, finds the set-up on the settings page.
import assert from 'node:assert/strict';
import { adminPassword, base, journey, shot } from './lib.mjs';

const node = process.env.ROLLWAY_NODE_ID;

await journey('sso-login', async (newPage) => {
  const page = await newPage();
  await page.goto(`${base}/tree/nodes/${node}`);
  // Not signed in: the login page, the provider first, passwords tucked away.
  await page.waitForURL((u) => u.pathname === '/login');
  const button = page.locator('#sso-login');
  assert.equal(await button.innerText(), 'Sign in with Acme SSO');
  assert.equal(await page.locator('#password-login').getAttribute('open'), null);
  assert.match(await page.locator('#password-login summary').innerText(), /Administrators: log in with a password/);
  await shot(page, 'sso-login.png');

  await button.click();
  await page.waitForSelector('#continue');
  assert.match(await page.locator('body').innerText(), /Acme SSO[\s\S]*Continue as alice/);
  await shot(page, 'sso-provider.png');

  await page.click('#continue');
  await page.waitForURL((u) => u.pathname === `/tree/nodes/${node}`);
  assert.match(await page.locator('body').innerText(), /alice/);
  const row = page.locator('#members tr[data-account="alice"]');
  assert.match(await row.innerText(), /engineer[\s\S]*via group pay-team/);
  await shot(page, 'sso-signed-in.png');

  // The admin, with a password (admins only), reads how sign-on is set up.
  const admin = await newPage();
  await admin.goto(`${base}/login`);
  await admin.locator('#password-login summary').click();
  await admin.fill('input[name="username"]', 'admin');
  await admin.fill('input[name="password"]', adminPassword);
  await Promise.all([admin.waitForURL((u) => !u.pathname.startsWith('/login')), admin.click('button:has-text("Log in")')]);
  await admin.goto(`${base}/admin/settings`);
  const sso = admin.locator('#sso-settings');
  assert.match(await sso.innerText(), /Acme SSO[\s\S]*\/auth\/oidc\/callback[\s\S]*administrators only/);
  assert.match(await admin.locator('#sso-group-roles').innerText(), /pay-team[\s\S]*\/acme\/pay[\s\S]*engineer/);
  await shot(admin, 'sso-settings.png');
});
