// The account console as a new user walks it, in headless Chromium against a running
// Gatehouse whose mail goes over SMTP to the capture server below: sign up, confirm the
// address by the emailed link, sign in, enrol TOTP from the QR code (decoded by zbar, the
// code computed by oathtool), sign out, sign in with a code, add a passkey (a DevTools
// virtual authenticator), sign in with it alone, trust the device, see two sessions and
// sign the other out, request the data export and download it, change the email by the
// emailed link, delete the account. Every page of the walk is checked by axe-core (WCAG
// A and AA) and photographed into target/console/; each step prints its time.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const base = process.env.BASE_URL;
const smtpPort = Number(process.env.SMTP_PORT);
const shots = process.env.SHOTS || 'target/console';
mkdirSync(shots, { recursive: true });
const password = 'Lantern-Orchard-Velvet-73';
const email = 'walker@example.com';
const newEmail = 'walker.new@example.com';
let passed = 0;
let failed = 0;
const timings = [];

function check(name, ok, detail = '') {
  if (ok) { passed += 1; console.log(`ok   ${name}`); }
  else { failed += 1; console.log(`FAIL ${name} ${detail}`); }
}

// A minimal SMTP server: enough of RFC 5321 for one client to hand over its messages.
const mails = [];
const smtp = createServer((socket) => {
  socket.setEncoding('utf8');
  let buffer = '';
  let data = false;
  let message = { to: [], body: '' };
  socket.write('220 capture ESMTP\r\n');
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (;;) {
      if (data) {
        const end = buffer.indexOf('\r\n.\r\n');
        if (end < 0) return;
        message.body = buffer.slice(0, end);
        mails.push(message);
        message = { to: [], body: '' };
        buffer = buffer.slice(end + 5);
        data = false;
        socket.write('250 queued\r\n');
        continue;
      }
      const eol = buffer.indexOf('\r\n');
      if (eol < 0) return;
      const line = buffer.slice(0, eol);
      buffer = buffer.slice(eol + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === 'EHLO' || verb === 'HELO') socket.write('250 capture\r\n');
      else if (verb === 'RCPT') { message.to.push(line.replace(/.*<(.*)>.*/, '$1')); socket.write('250 ok\r\n'); }
      else if (verb === 'DATA') { data = true; socket.write('354 go on\r\n'); }
      else if (verb === 'QUIT') { socket.end('221 bye\r\n'); return; }
      else socket.write('250 ok\r\n');
    }
  });
  socket.on('error', () => {});
});
await new Promise((resolve) => smtp.listen(smtpPort, '127.0.0.1', resolve));

// The link to `path` in the newest mail to `to` (quoted-printable soft breaks undone).
async function mailedLink(to, path) {
  for (let i = 0; i < 100; i += 1) {
    for (const m of [...mails].reverse()) {
      if (!m.to.includes(to)) continue;
      const text = m.body.replace(/=\r\n/g, '').replace(/=3D/g, '=');
      const found = text.match(new RegExp(`https?://[^\\s"<>]*${path}\\?token=[A-Za-z0-9_-]+`));
      if (found) return found[0];
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${path} link mailed to ${to}`);
}

async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
    resultTypes: ['violations'],
  }));
  const found = result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  check(`axe-core: no A/AA violation on ${name}`, found.length === 0, found.join('; '));
}

let shot = 0;
async function photograph(page, name) {
  shot += 1;
  await page.screenshot({ path: `${shots}/${String(shot).padStart(2, '0')}-${name}.png`, fullPage: true });
}

// A page of the walk: checked for accessibility and photographed.
async function seen(page, name) {
  await accessible(page, name);
  await photograph(page, name.replace(/[^a-z0-9]+/gi, '-').toLowerCase());
}

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
  } catch (error) {
    check(`${name} (threw)`, false, error.stack || String(error));
  }
  timings.push([name, Date.now() - started]);
}

const totp = (secret, offset = 0) => execFileSync('oathtool', ['--totp', '-b', secret,
  '--now', new Date(Date.now() + offset * 1000).toISOString().replace('T', ' ').replace(/\..*/, ' UTC')]).toString().trim();

const submit = async (page, selector) => Promise.all([page.waitForLoadState(), page.click(selector)]);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let secret = '';
let backupCodes = [];
try {
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();

  await step('sign up', async () => {
    await page.goto(`${base}/account/signup`);
    await seen(page, 'sign-up');
    // A refused form keeps its values and puts the error next to the field.
    await page.fill('#email', email);
    await page.fill('#username', 'walker');
    await page.fill('#password', 'short');
    await submit(page, 'main button[type=submit]');
    check('a weak password is refused next to its field',
      await page.locator('#password[aria-invalid=true]').count() === 1 && await page.inputValue('#email') === email);
    await seen(page, 'sign-up refused');
    await page.fill('#password', password);
    await submit(page, 'main button[type=submit]');
    check('sign-up leads to the verify-email page', page.url().endsWith('/account/signup/done'), page.url());
    await seen(page, 'verify-email sent');
  });

  await step('verify by the emailed link', async () => {
    const link = await mailedLink(email, '/verify-email');
    await page.goto(link);
    await seen(page, 'verify-email link');
    await submit(page, 'main button[type=submit]');
    const said = await page.locator('[role=status]').innerText();
    check('the emailed link confirms the address', said.includes('confirmed'), said);
  });

  await step('sign in', async () => {
    await page.goto(`${base}/account/login`);
    await seen(page, 'sign-in');
    // By keyboard: the skip link first, then the form's fields in order, with a visible focus.
    await page.keyboard.press('Tab');
    check('the first Tab reaches the skip link', await page.evaluate(() => document.activeElement.className) === 'skip');
    let tabs = 1;
    while (await page.evaluate(() => document.activeElement.id) !== 'email' && tabs < 8) {
      await page.keyboard.press('Tab');
      tabs += 1;
    }
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    check('the keyboard reaches the email field with a visible focus', tabs < 8 && outline !== 'none', `tabs=${tabs} outline=${outline}`);
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(password);
    await Promise.all([page.waitForURL(`${base}/account`), page.keyboard.press('Enter')]);
    check('email and password reach the overview', (await page.locator('#who').innerText()) === 'walker');
    check('the overview says the address is confirmed and MFA is off',
      (await page.locator('#verified').innerText()).startsWith('Yes') && (await page.locator('#mfa').innerText()).startsWith('Off'));
    await seen(page, 'overview');
  });

  await step('enrol TOTP from the QR code', async () => {
    await page.goto(`${base}/account/security`);
    await seen(page, 'security');
    await page.fill('#totp-password', password);
    await submit(page, 'form[action="/account/security/totp"] button');
    const src = await page.locator('#totp-qr').getAttribute('src');
    writeFileSync('target/console-qr.svg', Buffer.from(src.split(',')[1], 'base64'));
    execFileSync('rsvg-convert', ['-w', '600', '-b', 'white', 'target/console-qr.svg', '-o', 'target/console-qr.png']);
    const uri = execFileSync('zbarimg', ['--quiet', '--raw', 'target/console-qr.png'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
    secret = uri.replace(/.*secret=([A-Z2-7]+).*/, '$1');
    check('the QR code decodes to the otpauth URI of the secret shown as text',
      uri.startsWith('otpauth://totp/') && secret === (await page.locator('#totp-secret').innerText()), uri);
    await seen(page, 'totp setup');
    await page.fill('#code', totp(secret));
    await submit(page, 'form[action="/account/security/confirm"] button');
    backupCodes = await page.locator('#backup-codes code').allInnerTexts();
    check('confirming turns MFA on and shows ten backup codes once', backupCodes.length === 10
      && (await page.locator('#mfa-state').innerText()).includes('is on'));
    await seen(page, 'backup codes');
  });

  await step('sign out', async () => {
    await submit(page, 'header form.signout button');
    check('signing out leads to the sign-in page', page.url().includes('/account/login'), page.url());
    await page.goto(`${base}/account`);
    check('and the session is gone', page.url().includes('/account/login'), page.url());
  });

  await step('sign in with the code', async () => {
    await page.fill('#email', email);
    await page.fill('#password', password);
    await submit(page, 'form[action="/account/login"] button');
    check('the password leads to the second step', page.url().includes('/account/login/mfa'), page.url());
    await seen(page, 'second step');
    // The code of the next time step: the one that confirmed the enrolment is spent.
    await page.fill('#code-totp', totp(secret, 30));
    await submit(page, '#h-totp ~ form[action="/account/login/mfa"] button');
    check('the TOTP code reaches the overview', page.url() === `${base}/account` && (await page.locator('#mfa').innerText()).startsWith('On'), page.url());
  });

  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true },
  });

  await step('add a passkey', async () => {
    await page.goto(`${base}/account/security`);
    check('the security page offers to add a passkey (its script ran under the CSP)', await page.locator('#passkey-add').isVisible());
    await page.fill('#passkey-name', 'Walker laptop');
    await page.fill('#passkey-password', password);
    await Promise.all([page.waitForURL(/done=passkey/, { timeout: 15000 }), page.click('#passkey-add button[type=submit]')]);
    check('the passkey is listed', await page.locator('#passkeys li[data-passkey="Walker laptop"]').count() === 1);
    await seen(page, 'passkey added');
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    check('the authenticator holds one discoverable credential', credentials.length === 1 && credentials[0].isResidentCredential);
  });

  await step('sign in passwordless', async () => {
    await submit(page, 'header form.signout button');
    const button = page.locator('#passkey-sign-in button[type=submit]');
    await button.waitFor({ timeout: 15000 });
    await Promise.all([page.waitForURL(`${base}/account`, { timeout: 15000 }), button.click()]);
    check('the passkey alone reaches the overview', (await page.locator('#who').innerText()) === 'walker');
  });

  await step('trust the device', async () => {
    await page.goto(`${base}/account/devices`);
    await seen(page, 'devices');
    const mine = page.locator('#devices li[data-current=true]');
    await submit(page, '#devices li[data-current=true] form:has(input[value=trust]) button');
    if (page.url().includes('/account/step-up')) {
      // A second factor older than the step-up age: the password and a backup code.
      await seen(page, 'step-up');
      await page.fill('#password', password);
      await page.selectOption('#method', 'backup_code');
      await page.fill('#code', backupCodes.shift());
      await submit(page, 'form[action="/account/step-up"] button');
      await submit(page, '#devices li[data-current=true] form:has(input[value=trust]) button');
    }
    check('this device is trusted', (await mine.innerText()).includes('Trusted'), await mine.innerText());
  });

  await step('see two sessions and sign the other out', async () => {
    const other = await browser.newContext();
    const second = await other.newPage();
    await second.goto(`${base}/account/login`);
    await second.fill('#email', email);
    await second.fill('#password', password);
    await submit(second, 'form[action="/account/login"] button');
    await second.fill('#code-backup_code', backupCodes.shift());
    await submit(second, '#h-backup_code ~ form[action="/account/login/mfa"] button');
    check('a second browser signs in with a backup code', second.url() === `${base}/account`, second.url());
    await page.goto(`${base}/account/sessions`);
    const rows = page.locator('#sessions > li');
    check('the sessions page lists two sessions', await rows.count() === 2, `rows=${await rows.count()}`);
    await seen(page, 'sessions');
    await submit(page, '#sessions li:not([data-current]) button');
    check('one is left after signing the other out', await page.locator('#sessions > li').count() === 1);
    await second.goto(`${base}/account`);
    check('the other browser is signed out', second.url().includes('/account/login'), second.url());
    await other.close();
  });

  await step('request the export and download it', async () => {
    await page.goto(`${base}/account/export`);
    await seen(page, 'export');
    await page.fill('#password', password);
    await submit(page, 'form[action="/account/export"] button');
    for (let i = 0; i < 60 && (await page.locator('#export-status').getAttribute('data-status')) !== 'complete'; i += 1) {
      await new Promise((r) => setTimeout(r, 500));
      await page.reload();
    }
    await seen(page, 'export ready');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-download')]);
    const path = await download.path();
    const data = JSON.parse(readFileSync(path, 'utf8'));
    check('the downloaded export is the account\'s data', JSON.stringify(data).includes(email));
  });

  await step('notifications, activity, API keys, connections', async () => {
    await page.goto(`${base}/account/notifications`);
    await seen(page, 'notifications');
    await page.selectOption('#digest_frequency', 'daily');
    await page.uncheck('#email_marketing');
    await submit(page, '#preferences button[type=submit]');
    check('the digest setting is kept', await page.inputValue('#digest_frequency') === 'daily'
      && !(await page.isChecked('#email_marketing')));
    await page.selectOption('#day_of_week', '0');
    await page.fill('#start_time', '22:00');
    await page.fill('#end_time', '07:00');
    await submit(page, 'form[action="/account/notifications/quiet-hours"] button');
    check('a weekday quiet-hours window is listed', (await page.locator('#quiet').innerText()).includes('Monday 22:00'));
    await page.selectOption('#block_type', 'notification_type');
    await page.fill('#blocked_value', 'password_reset');
    await submit(page, 'form[action="/account/notifications/blocklist"] button');
    check('a security message cannot be blocked (said at the field)',
      (await page.locator('#blocked_value-error').innerText()).includes('security'));
    await seen(page, 'notifications refused');
    await page.goto(`${base}/account/activity`);
    check('the activity page lists the account\'s events', await page.locator('#activity tbody tr').count() > 5);
    await seen(page, 'activity');
    await page.goto(`${base}/account/api-keys`);
    await page.fill('#name', 'Walker CI');
    await page.fill('#password', password);
    await submit(page, 'form[action="/account/api-keys"] button[type=submit]');
    const key = await page.locator('#api-key-secret').innerText();
    check('a new API key is shown once', key.startsWith('gh_'));
    await seen(page, 'api key created');
    const me = await fetch(`${base}/api/v1/users/me`, { headers: { authorization: `ApiKey ${key}` } });
    check('the key reads the account', me.status === 200, `status=${me.status}`);
    await submit(page, '#api-keys button.danger');
    check('revoking it says so', (await page.locator('#api-keys').innerText()).includes('Revoked'));
    await page.goto(`${base}/account/connections`);
    await seen(page, 'connections');
  });

  await step('change the email by the emailed link', async () => {
    await page.goto(`${base}/account/email`);
    await seen(page, 'change email');
    await page.fill('#new_email', newEmail);
    await page.fill('#password', password);
    await submit(page, 'form[action="/account/email"] button');
    check('the change waits for the emailed link', (await page.locator('[role=status]').innerText()).includes('on its way'));
    const link = await mailedLink(newEmail, '/confirm-email-change');
    await page.goto(link);
    await submit(page, 'main button[type=submit]');
    await seen(page, 'email changed');
    await page.goto(`${base}/account`);
    const shown = page.url().includes('/account/login') ? 'signed out' : await page.locator('#email').innerText();
    check('the account now uses the new address', shown === newEmail || shown === 'signed out', shown);
    if (shown === 'signed out') {
      await page.fill('#email', newEmail);
      await page.fill('#password', password);
      await submit(page, 'form[action="/account/login"] button');
    }
  });

  await step('delete the account', async () => {
    await page.goto(`${base}/account/delete`);
    await seen(page, 'delete account');
    await page.fill('#password', password);
    await submit(page, 'form[action="/account/delete"] button');
    check('deleting ends on the page that says so', page.url().endsWith('/account/deleted'), page.url());
    await seen(page, 'account deleted');
    const r = await fetch(`${base}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: newEmail, password }) });
    check('the deleted account cannot sign in', r.status === 401, `status=${r.status}`);
  });

  await step('360 px wide', async () => {
    const narrow = await browser.newContext({ viewport: { width: 360, height: 740 } });
    const small = await narrow.newPage();
    for (const path of ['/account/login', '/account/signup', '/account/forgot-password']) {
      await small.goto(`${base}${path}`);
      const width = await small.evaluate(() => document.documentElement.scrollWidth);
      check(`${path} fits 360 px without sideways scrolling`, width <= 360, `scrollWidth=${width}`);
    }
    await small.goto(`${base}/account/forgot-password`);
    await seen(small, 'forgot password 360px');
    await narrow.close();
  });
} finally {
  await browser.close();
  smtp.close();
}
for (const [name, ms] of timings) console.log(`time ${String(ms).padStart(6)} ms  ${name}`);
console.log(`console: ${passed} passed, ${failed} failed; screenshots in ${shots}/`);
process.exit(failed === 0 ? 0 : 1);
