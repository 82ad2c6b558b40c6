// Headless Chromium against a running Gatehouse: sign in on /admin with a password and a
// TOTP code (the staff user enrolled with `gatehouse mfa enroll`), check that the chart
// and the table render with the seeded data, dismiss an event from the review queue.
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
} finally {
  await browser.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
