// Headless Chromium against a running Gatehouse: sign in on /admin with a password and a
// TOTP code (the staff user enrolled with `gatehouse mfa enroll`), check that the chart
// and the table render with the seeded data, dismiss an event from the review queue; find,
// unlock and sign out users; decide MFA change requests (four eyes); add a passkey with a
// virtual authenticator (DevTools WebAuthn domain) and sign in with it alone. axe-core
// checks each page for accessibility violations.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

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

// axe-core in the page (evaluated over DevTools, which the page's CSP does not govern).
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const found = result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  check(`axe-core finds no violation on ${name}`, found.length === 0, found.join('; '));
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
  await accessible(page, 'the sign-in page');
  const submit = 'form[action="/admin/login"] button[type=submit]';
  // A password alone is not enough for a staff account with MFA on.
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click(submit);
  check('without a code the form asks for one', (await page.content()).includes('Enter the code from your authenticator'));
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.fill('#code', code);
  await Promise.all([page.waitForURL(`${base}/admin`), page.click(submit)]);
  check('a password and a TOTP code reach the dashboard', await page.locator('#chart').count() === 1);
  await accessible(page, 'the dashboard');

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

  // Passkeys: a virtual authenticator with user verification, as a platform passkey is.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  await page.goto(`${base}/admin`);
  check('the dashboard offers to add a passkey (its script ran under the CSP)', await page.locator('#passkey-add').isVisible());
  await page.fill('#passkey-name', 'Virtual key');
  await page.fill('#passkey-password', password);
  await page.click('#passkey-add button[type=submit]');
  await page.locator('#passkeys table').waitFor({ timeout: 15000 }).catch(() => {});
  const listed = await page.locator('#passkeys table').innerText().catch(() => '');
  check('the registered passkey is listed, never used', listed.includes('Virtual key') && listed.includes('never'),
    (await page.locator('#passkeys [role=status]').innerText().catch(() => '')) || listed);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check('the authenticator holds one discoverable credential', credentials.length === 1 && credentials[0].isResidentCredential);

  await page.click('header button[type=submit]');
  const passkeyButton = page.locator('#passkey-sign-in button[type=submit]');
  await passkeyButton.waitFor({ timeout: 15000 }).catch(() => {});
  check('after signing out the sign-in page offers a passkey', await passkeyButton.isVisible());
  await passkeyButton.click();
  await page.locator('#chart').waitFor({ timeout: 15000 }).catch(() => {});
  check('the passkey alone reaches the dashboard', await page.locator('#chart').count() === 1,
    await page.locator('#passkey-sign-in [role=status], .error').allInnerTexts().then((t) => t.join(' ')).catch(() => ''));
  const used = await page.locator('#passkeys table').innerText().catch(() => '');
  check('its last use is recorded', used.includes('Virtual key') && !used.includes('never'), used);
  const { credentials: signed } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check('the authenticator counted the signature', signed[0].signCount >= 1, `signCount=${signed[0].signCount}`);

  // Without JavaScript the password form is whole and the passkey controls stay hidden.
  const plain = await browser.newContext({ javaScriptEnabled: false });
  const bare = await plain.newPage();
  await bare.goto(`${base}/admin`);
  check('without JavaScript the passkey section stays hidden and the password form works',
    !(await bare.locator('#passkey-sign-in').isVisible()) && await bare.locator('#code').isVisible());
  await plain.close();

  // The emailed links' pages: each renders its one-click form accessibly, and a link that
  // is not (or no longer) valid says so after the click.
  for (const [path, fields] of [['/verify-email', []], ['/reset-password', ['#new_password', '#new_password_again']],
    ['/confirm-email-change', []], ['/undo-email-change', []]]) {
    await page.goto(`${base}${path}?token=not-a-real-token`);
    await accessible(page, `the ${path} page`);
    for (const field of fields) await page.fill(field, 'Tangerine-Lighthouse-43');
    await Promise.all([page.waitForLoadState(), page.click('main button[type=submit]')]);
    const said = await page.locator('[role=alert], [role=status]').allInnerTexts();
    check(`${path} refuses a bad token with a message`, said.join(' ').length > 0 && !said.join(' ').includes('done'), said.join(' '));
    await accessible(page, `the ${path} answer`);
  }
} finally {
  await browser.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
