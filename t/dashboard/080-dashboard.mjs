// The browser half of t/080-dashboard.t: Debian's chromium, headless,
// driven with playwright-core through the console as an admin, a tenant's
// owner and a readonly member would use it.
//
// Environment: KN_URL (the console), KN_ADMIN_TOKEN, KN_NODE_MODULES
// (where playwright-core is installed), KN_ARTIFACTS (screenshots),
// KN_USER_DATA (a fresh chromium profile directory).
//
// Talks to the test on stdout, one JSON object per line:
//   {"ok": true|false, "name": "...", "diag": "..."}   a check
//   {"need": "...", ...}   the Operator's part; the answer is one JSON line
//                          on stdin
//   {"finished": true}

import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

const require = createRequire(process.env.KN_NODE_MODULES + '/');
const { chromium } = require('playwright-core');

const BASE = process.env.KN_URL;
const ADMIN = process.env.KN_ADMIN_TOKEN;
const SHOTS = process.env.KN_ARTIFACTS;
const T = 'd80-acme';

// --- talking to the test -------------------------------------------------

const say = obj => process.stdout.write(JSON.stringify(obj) + '\n');
const answers = [];
let waiting = null;
createInterface({ input: process.stdin }).on('line', line => {
    const a = JSON.parse(line);
    if (waiting) { const w = waiting; waiting = null; w(a); } else answers.push(a);
});
function need(what, args = {}) {
    say({ need: what, ...args });
    if (answers.length) return Promise.resolve(answers.shift());
    return new Promise(resolve => { waiting = resolve; });
}

let failures = 0;
function ok(cond, name, diag) {
    if (!cond) failures++;
    say({ ok: !!cond, name, diag });
}

// a check whose steps throw when the page does not do what it should; a
// failed one leaves a screenshot (failed-N.png) and what the page said
let checks = 0;
async function check(name, fn) {
    const n = ++checks;
    let why = null;
    try {
        if (await fn() === false) why = 'condition false';
    } catch (e) {
        why = String(e.message || e).split('\n').slice(0, 6).join('\n');
    }
    if (why !== null) {
        try {
            await page.screenshot({ path: `${SHOTS}/failed-${n}.png`, fullPage: true });
            const said = await page.locator('.form-error, .field-error, #status').allTextContents();
            why += `\npage says: ${said.filter(Boolean).join(' | ')} (failed-${n}.png)`;
        } catch { /* the page itself is gone */ }
    }
    ok(why === null, name, why ?? undefined);
}

// --- the browser -------------------------------------------------------------

const context = await chromium.launchPersistentContext(process.env.KN_USER_DATA, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
});
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(15000);
page.on('dialog', d => d.accept());

const problems = [];
page.on('pageerror', e => problems.push(`page error: ${e.message}`));
page.on('console', m => {
    // refused API calls are logged by chromium itself; they are expected
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) {
        problems.push(`console: ${m.text()}`);
    }
});

const shot = name => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
const main = page.locator('main');
const status = page.locator('#status');
const go = async hash => {
    await page.evaluate(h => { location.hash = h; }, hash);
    await page.locator('main h1').first().waitFor();
    await page.locator('main .view:not([aria-busy])').waitFor();
};
const activeText = () => page.evaluate(() => {
    const a = document.activeElement;
    return `${a.tagName} ${a.getAttribute('data-field') || ''} ${a.textContent.trim()}`;
});
// Tab (Shift+Tab with back) until the focused element satisfies pred
async function tabTo(pred, what, back = false) {
    for (let i = 0; i < 80; i++) {
        await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
        if (await page.evaluate(pred)) return;
    }
    throw new Error(`Tab never reached ${what}`);
}
const rowOf = (caption, text) =>
    page.locator('table', { has: page.locator('caption', { hasText: caption }) })
        .locator('tr', { hasText: text });

async function signIn(token) {
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await page.locator('main .view:not([aria-busy])').waitFor();
}
async function signOut() {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to KubeNova' }).waitFor();
}

// --- a wrong token -----------------------------------------------------------

await page.goto(BASE);
await check('a wrong token is refused with a clear message', async () => {
    await page.getByLabel('API token').fill('kn_' + 'x'.repeat(43));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'This token was not accepted' }).waitFor();
    return await page.getByLabel('API token').getAttribute('aria-invalid') === 'true';
});
await check('... and nothing is kept', async () =>
    await page.evaluate(() => sessionStorage.length) === 0);
await shot('signin-wrong-token');

// --- the admin, by keyboard only: sign in, then a plan ----------------------

await page.reload();
await check('sign in with the keyboard only', async () => {
    await page.getByLabel('API token').waitFor();
    // the token field has the focus on arrival
    if (!(await activeText()).startsWith('INPUT token')) throw new Error('focus: ' + await activeText());
    await page.keyboard.type(ADMIN);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Clusters', level: 1 }).waitFor();
    // the view's heading gets the focus once it is loaded
    await page.waitForFunction(() => document.activeElement.tagName === 'H1');
});
await check('the skip link takes the keyboard past the views to the content', async () => {
    const at = page.url();
    await page.locator('.skip').focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement.id === 'main');
    return page.url() === at
        && await page.getByRole('heading', { name: 'Clusters', level: 1 }).count() === 1;
});
await check('the token is in session storage, never in the URL', async () =>
    !page.url().includes(ADMIN)
    && await page.evaluate(t => Object.values(sessionStorage).includes(t), ADMIN)
    && await page.evaluate(() => localStorage.length) === 0);

await check('a plan with a bad field, corrected, by keyboard only', async () => {
    // the views' links come before the heading
    await tabTo(() => document.activeElement.textContent === 'Plans', 'the Plans link', true);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Plans', level: 1 }).waitFor();
    await tabTo(() => document.activeElement.dataset.field === 'name', 'the plan name');
    for (const [text, next] of [['d80-gold', 1], ['lots', 1], ['8Gi', 1], ['50Gi', 1],
                                ['40', 1], ['2500', 0]]) {
        await page.keyboard.type(text);
        if (next) await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Enter');
    const cpu = page.getByLabel('CPU', { exact: true });
    await page.locator('[data-error-for=cpu]').filter({ hasText: 'cpu' }).waitFor();
    if (await cpu.getAttribute('aria-invalid') !== 'true') throw new Error('CPU not marked invalid');
    // the focus went to the bad field: correct it there
    if (!(await activeText()).startsWith('INPUT cpu')) throw new Error('focus: ' + await activeText());
    await shot('admin-plan-field-error');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('4');
    await page.keyboard.press('Enter');
    await rowOf('Plans', 'd80-gold').waitFor();
    return (await rowOf('Plans', 'd80-gold').textContent()).includes('€25.00');
});
await shot('admin-plans');

// --- clusters ------------------------------------------------------------------

await go('#/clusters');
await check('clusters: connected, with what its Operator reported', async () => {
    const row = rowOf('Clusters', 'd80-c1');
    const text = await row.textContent();
    return /connected/.test(text) && text.includes('0.9.0-d80') && text.includes('v1.20.15');
});
await check('register a cluster: what joins it shown once, to copy', async () => {
    await page.getByLabel('Name', { exact: true }).fill('d80-c2');
    await page.getByRole('button', { name: 'Register cluster' }).click();
    await page.getByRole('heading', { name: 'Cluster d80-c2 registered' }).waitFor();
    await rowOf('Clusters', 'd80-c2').waitFor();
    // the join command where the Manager has a public URL, else the token
    const join = page.locator('[data-secret="Join command"]');
    if (await join.count()) return /^kubectl apply -f /.test(await join.inputValue());
    return /^knjt_/.test(await page.locator('[data-secret="Join token"]').inputValue());
});
await shot('admin-clusters');

// --- a tenant ---------------------------------------------------------------------

await go('#/tenants');
await check('create a tenant on the plan and cluster', async () => {
    await page.getByLabel('Name', { exact: true }).fill(T);
    await page.getByLabel('Plan').selectOption('d80-gold');
    await page.getByLabel('d80-c1', { exact: true }).check();
    await page.getByRole('button', { name: 'Create tenant' }).click();
    await rowOf('Tenants', T).waitFor();
    const text = await rowOf('Tenants', T).textContent();
    return text.includes('d80-gold') && text.includes('d80-c1');
});
await check("the tenants list shows this month's usage", async () => {
    const text = await rowOf('Tenants', T).textContent();
    return /CPU core-h/.test(text) || new Date().getUTCDate() === 1 && new Date().getUTCHours() === 0;
});
await shot('admin-tenants');
await check('suspend and resume the tenant', async () => {
    await page.getByRole('button', { name: `Suspend ${T}` }).click();
    await page.getByRole('button', { name: `Resume ${T}` }).waitFor();
    // the cells after the name: plan, placement, suspended
    const suspended = rowOf('Tenants', T).locator('td').nth(2);
    if (await suspended.textContent() !== 'yes') throw new Error('not shown suspended');
    await page.getByRole('button', { name: `Resume ${T}` }).click();
    await page.getByRole('button', { name: `Suspend ${T}` }).waitFor();
});
await check("the admin opens the tenant's own views", async () => {
    await page.getByRole('link', { name: T, exact: true }).click();
    await page.getByRole('heading', { name: `Applications — ${T}`, level: 1 }).waitFor();
    await page.getByRole('link', { name: '← All tenants' }).click();
    await page.getByRole('heading', { name: 'Tenants', level: 1 }).waitFor();
});

// --- users and tokens ---------------------------------------------------------------

await go('#/users');
async function userWithToken(name, role) {
    await page.getByLabel('Show users of').selectOption(T);
    await page.getByRole('heading', { name: `New user of ${T}` }).waitFor();
    await page.getByLabel('User name').fill(name);
    await page.getByLabel('Role').selectOption(role);
    await page.getByRole('button', { name: 'Create user' }).click();
    await rowOf(`Users of ${T}`, name).waitFor();
    // the new user's tokens open by themselves
    const panel = page.locator(`section[aria-label="Tokens of ${name}"]`);
    await panel.getByRole('button', { name: 'Create token' }).click();
    const box = panel.locator('[data-secret=Token]');
    await box.waitFor();
    await status.filter({ hasText: 'shown only once' }).waitFor();
    return box.inputValue();
}
let ownerToken = '', readerToken = '';
await check('create an owner and copy its token', async () => {
    ownerToken = await userWithToken('d80-owner', 'owner');
    await page.getByRole('button', { name: 'Copy token' }).click();
    await status.filter({ hasText: 'Token copied' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    return /^kn_[A-Za-z0-9_-]{43}$/.test(ownerToken) && copied === ownerToken;
});
await shot('admin-users');
await check('create a readonly member with a token', async () => {
    readerToken = await userWithToken('d80-reader', 'readonly');
    return /^kn_/.test(readerToken) && readerToken !== ownerToken;
});

await go('#/audit');
await check('the audit log lists the writes, the refused one too', async () => {
    const log = page.locator('table', { has: page.locator('caption', { hasText: 'Audit log' }) });
    await log.waitFor();
    const text = await log.textContent();
    return text.includes('plans/d80-gold') && text.includes('422') && text.includes(`tenants/${T}`);
});
await shot('admin-audit');

// --- the owner ---------------------------------------------------------------------

await signOut();
await check('the owner signs in with the copied token', async () => {
    await signIn(ownerToken);
    return (await page.locator('main h1').textContent()).includes(`Applications — ${T}`);
});

const doc = name => `apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: ${name}
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: nginx:1.25
`;
const docField = () => page.getByLabel('Application document (YAML or JSON)');
async function deploy(text) {
    await docField().fill(text);
    await page.getByRole('button', { name: 'Deploy', exact: true }).click();
}
await check("a bad document: the API's error shown at the field", async () => {
    await deploy(doc('Web_Bad'));
    await page.locator('[data-error-for="*"]').filter({ hasText: 'metadata.name' }).waitFor();
    return await docField().getAttribute('aria-invalid') === 'true';
});
await shot('tenant-app-field-error');
await check('a document that is not YAML: said at the field', async () => {
    await deploy('kind: [unclosed');
    await page.locator('[data-error-for="*"]').filter({ hasText: /YAML/i }).waitFor();
    return await docField().getAttribute('aria-invalid') === 'true';
});
await check('deploy an application from pasted YAML', async () => {
    await deploy(doc('d80-web'));
    await page.getByRole('heading', { name: 'Application d80-web' }).waitFor();
    await rowOf('Applications', 'd80-web').waitFor();
    return await docField().getAttribute('aria-invalid') === null;
});
await check("its status is followed live (the Manager's server-sent events)", async () => {
    await page.getByText('Status updates live.').waitFor();
});
await check('its status: not reported yet', async () => {
    await page.locator('#app-live').filter({ hasText: 'not reported' }).waitFor();
});
await shot('tenant-app-deployed');
await check('the status changes live when the cluster reports it', async () => {
    const a = await need('app_status', { tenant: T, app: 'd80-web', phase: 'running' });
    if (!a.acked) throw new Error('the Operator got no StatusAck');
    await page.locator('#app-live [data-phase=running]').waitFor({ timeout: 30000 });
    // said once in a line of its own to screen readers
    await page.locator('[aria-live=polite]', { hasText: 'd80-c1 running' }).waitFor({ state: 'attached' });
    return (await page.locator('#app-live').textContent()).includes('1/1 healthy');
});
await shot('tenant-app-running');

// the Manager serves one status stream per worker here (kubenova_app_watchers
// 1): a second tab is refused one (503) and polls instead
await check('a second tab without a stream polls, and follows the change too', async () => {
    const tab = await context.newPage();
    tab.setDefaultTimeout(15000);
    tab.on('pageerror', e => problems.push(`page error (second tab): ${e.message}`));
    try {
        await tab.goto(BASE);
        await tab.getByLabel('API token').fill(ownerToken);
        await tab.getByRole('button', { name: 'Sign in' }).click();
        await tab.getByRole('button', { name: 'Show application d80-web' }).click();
        await tab.getByText('Status refreshed every few seconds.').waitFor();
        const a = await need('app_status', { tenant: T, app: 'd80-web', phase: 'workflowSuspending' });
        if (!a.acked) throw new Error('the Operator got no StatusAck');
        await tab.locator('#app-live [data-phase=workflowSuspending]').waitFor({ timeout: 30000 });
        // ... and the first tab, still on its stream, got it live
        await page.locator('#app-live [data-phase=workflowSuspending]').waitFor();
        return await page.getByText('Status updates live.').count() === 1;
    } finally {
        await tab.close();
    }
});

await check('download the owner kubeconfig', async () => {
    const k = await need('kubeconfigs', { tenant: T });
    if (k.acked !== 2) throw new Error('kubeconfigs not acked');
    await go('#/kubeconfigs');
    const [dl] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Download the owner kubeconfig for d80-c1' }).click(),
    ]);
    const text = await readFile(await dl.path(), 'utf8');
    return dl.suggestedFilename() === `${T}-d80-c1-owner.kubeconfig` && text === k.owner;
});
await shot('tenant-kubeconfigs');

await go('#/usage');
await check('the usage charts render with the reported data', async () => {
    const cpu = page.locator('figure', { hasText: 'CPU per day' });
    await cpu.locator('svg').waitFor();
    const bars = await cpu.locator('rect.bar').evaluateAll(
        rs => rs.filter(r => Number(r.dataset.value) > 0 && Number(r.getAttribute('height')) > 0).length);
    const charts = await page.locator('svg.chart').count();
    return bars >= 2 && charts === 4;
});
await check('the invoice of the month is shown', async () =>
    /€\d/.test(await page.locator('[data-total]').textContent()));
await shot('tenant-usage');

await check('readable on a phone (390 px): nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    await shot('phone-usage');
    await go('#/apps');
    const w2 = await page.evaluate(() => document.documentElement.scrollWidth);
    await shot('phone-apps');
    await page.setViewportSize({ width: 1280, height: 900 });
    return w <= 390 && w2 <= 390;
});

await check('delete the application: deleting, with the pending cluster', async () => {
    await go('#/apps');
    await page.getByRole('button', { name: 'Show application d80-web' }).click();
    await page.getByRole('button', { name: 'Delete d80-web' }).click();
    await page.locator('#app-live [data-app-state=deleting]').waitFor();
    await rowOf('Applications', 'd80-web').filter({ hasText: 'deleting' }).waitFor();
    return (await page.locator('#app-live [data-pending]').getAttribute('data-pending')) === 'd80-c1';
});
await shot('tenant-app-deleting');
await check('... gone once the cluster has removed it', async () => {
    const a = await need('ack_delete', { tenant: T, app: 'd80-web' });
    if (!a.acked) throw new Error('no ObjectDelete reached the Operator');
    await status.filter({ hasText: 'Application d80-web is gone' }).waitFor({ timeout: 30000 });
    await rowOf('Applications', 'd80-web').waitFor({ state: 'detached' });
});

// --- a readonly member ----------------------------------------------------------

await signOut();
await check('the readonly member sees no write controls', async () => {
    await signIn(readerToken);
    const writes = async () => await page.locator('main').getByRole('button', {
        name: /Deploy|Delete|Create|Revoke|Register|Suspend/ }).count()
        + await page.locator('main textarea, main form').count();
    let n = await writes();
    await go('#/users');
    n += await writes();
    // the readonly member may see (and manage) its own tokens, read only
    await page.getByRole('button', { name: 'Tokens of d80-reader' }).click();
    await page.locator('section[aria-label="Tokens of d80-reader"] table').waitFor();
    n += await writes();
    if (/\bnull\b|undefined/.test(await main.textContent())) throw new Error('null shown');
    await go('#/kubeconfigs');
    n += await page.getByRole('button', { name: /owner kubeconfig/ }).count();
    await go('#/apps');
    return n === 0;
});
await shot('readonly-apps');
await check('a forced write from the page is refused (403)', async () => {
    const st = await page.evaluate(async t => {
        const r = await fetch(`/api/v1/tenants/${t}/apps`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${sessionStorage.getItem('kubenova.token')}`,
                       'Content-Type': 'application/json' },
            body: JSON.stringify({ apiVersion: 'core.oam.dev/v1beta1', kind: 'Application',
                                   metadata: { name: 'd80-ro-attempt' } }),
        });
        return r.status;
    }, T);
    return st === 403;
});

// --- the admin revokes the reader's token: it no longer signs in ----------------

// the readonly member stays signed in in a tab of its own meanwhile
const readerTab = await context.newPage();
readerTab.setDefaultTimeout(15000);
await readerTab.goto(BASE);
await readerTab.getByLabel('API token').fill(readerToken);
await readerTab.getByRole('button', { name: 'Sign in' }).click();
await readerTab.getByRole('button', { name: 'Sign out' }).waitFor();

await signOut();
await check("the admin revokes the readonly member's token", async () => {
    await signIn(ADMIN);
    await go('#/users');
    await page.getByLabel('Show users of').selectOption(T);
    await page.getByRole('button', { name: 'Tokens of d80-reader' }).click();
    const panel = page.locator('section[aria-label="Tokens of d80-reader"]');
    await panel.getByRole('button', { name: 'Revoke token console of d80-reader' }).click();
    await panel.locator('tr', { hasText: 'console' }).filter({ hasText: 'revoked' }).waitFor();
});
await check('a session whose token is revoked is sent to sign in, told why', async () => {
    await readerTab.getByRole('link', { name: 'Kubeconfigs' }).click();
    await readerTab.getByRole('alert').filter({ hasText: 'no longer accepted' }).waitFor();
    return await readerTab.evaluate(() => sessionStorage.length) === 0;
});
await readerTab.close();
await signOut();
await check('the revoked token is refused at sign-in', async () => {
    await page.getByLabel('API token').fill(readerToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'This token was not accepted' }).waitFor();
});

ok(problems.length === 0, 'no script errors or blocked resources in the page', problems.join('\n'));
await context.close();
say({ finished: true, failures });
process.exit(0);
