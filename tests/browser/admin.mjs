// Headless Chromium against a running Gatehouse: sign in on /admin with a password and a
// TOTP code (the staff user enrolled with `gatehouse mfa enroll`), check that the chart
// and the table render with the seeded data, dismiss an event from the review queue; find,
// unlock and sign out users; decide MFA change requests (four eyes).
import { chromium } from 'playwright-core';

const base = process.env.BASE_URL;
const email = process.env.ADMIN_EMAIL;
const password = process.env.ADMIN_PASSWORD;
const code = process.env.ADMIN_CODE;
let passed = 0;
let failed = 0;

function check(name, ok, detail = '') {
  if (ok) { passed += 1; console.log(`ok   ${name}`); }
  else { failed += 1; console.log(`FAIL ${name} ${detail}`); }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(`${base}/admin`);
  check('sign-in form renders', await page.locator('form[action="/admin/login"]').count() === 1);
  // A password alone is not enough for a staff account with MFA on.
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  check('without a code the form asks for one', (await page.content()).includes('Enter the code from your authenticator'));
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.fill('#code', code);
  await Promise.all([page.waitForURL(`${base}/admin`), page.click('button[type=submit]')]);
  check('a password and a TOTP code reach the dashboard', await page.locator('#chart').count() === 1);

  const bars = await page.locator('#chart rect.bar').count();
  check('chart draws bars for the seeded events', bars > 0, `bars=${bars}`);
  check('chart draws the failed-login line', await page.locator('#chart polyline.failed-logins').count() === 1);
  const days = await page.locator('#daily tbody tr').count();
  check('table has a row per day', days === 30, `rows=${days}`);
  const todayEvents = await page.locator('#daily tbody tr').first().locator('td').nth(2).innerText();
  check('today has low-risk events', Number(todayEvents) > 0, `low=${todayEvents}`);
  check('top users list the seeded user', (await page.locator('#top-users').innerText()).includes('ann'));

  const queue = page.locator('#review-queue tr[data-event]');
  const before = await queue.count();
  check('review queue holds the token reuse', before >= 1 && (await queue.first().innerText()).includes('token_reused'));
  await page.screenshot({ path: process.env.SCREENSHOT || 'target/admin.png', fullPage: true });
  await Promise.all([page.waitForURL(`${base}/admin`), queue.first().locator('button', { hasText: 'Dismiss' }).click()]);
  const after = await page.locator('#review-queue tr[data-event]').count();
  check('dismissing removes the event from the queue', after === before - 1, `before=${before} after=${after}`);

  // Users: search, lock state, unlock, sign out everywhere.
  await page.fill('#users input[name=q]', 'carl');
  await Promise.all([page.waitForLoadState(), page.click('#users button[type=submit]')]);
  const carl = page.locator('#users tr[data-user="carl"]');
  check('the user search finds the locked user', (await carl.locator('td.lock').innerText()).startsWith('locked'));
  await Promise.all([page.waitForLoadState(), carl.locator('button', { hasText: 'Unlock' }).click()]);
  check('unlocking lifts the lock', (await page.locator('#users tr[data-user="carl"] td.lock').innerText()) === 'active');
  const me = () => fetch(`${base}/api/v1/users/me`, { headers: { authorization: `Bearer ${process.env.ANN_ACCESS}` } });
  check("ann's token works before", (await me()).status === 200);
  await page.fill('#users input[name=q]', 'ann');
  await Promise.all([page.waitForLoadState(), page.click('#users button[type=submit]')]);
  await Promise.all([page.waitForLoadState(),
    page.locator('#users tr[data-user="ann"]').locator('button', { hasText: 'Sign out everywhere' }).click()]);
  check("sign out everywhere revokes ann's sessions", (await me()).status === 401);

  // The approval queue: root may not approve what root asked for; boss's request he may.
  const requests = page.locator('#mfa-requests tr[data-request]');
  check('the approval queue holds both requests', await requests.count() === 2, `rows=${await requests.count()}`);
  await Promise.all([page.waitForLoadState(),
    requests.filter({ hasText: 'asked by root' }).locator('button', { hasText: 'Approve' }).click()]);
  check('approving a request one asked for oneself is refused', await page.locator('#refused').count() === 1);
  await page.goto(`${base}/admin`);
  await Promise.all([page.waitForLoadState(),
    page.locator('#mfa-requests tr[data-request]').filter({ hasText: 'asked by boss' }).locator('button', { hasText: 'Approve' }).click()]);
  const left = await page.locator('#mfa-requests tr[data-request]').count();
  check("approving another staff member's request applies it", left === 1, `rows=${left}`);
} finally {
  await browser.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
