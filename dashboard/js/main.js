// The console's entry point: sign-in with a token, then the views the
// caller's role may see, routed by the URL fragment (#/tenants, ...; the
// token is never part of it).

import { h, announce } from './dom.js';
import { call, session, ApiError } from './api.js';
import { field } from './forms.js';
import * as clusters from './views/clusters.js';
import * as tenants from './views/tenants.js';
import * as plans from './views/plans.js';
import * as users from './views/users.js';
import * as audit from './views/audit.js';
import * as apps from './views/apps.js';
import * as kubeconfigs from './views/kubeconfigs.js';
import * as usage from './views/usage.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const whoEl = document.getElementById('who');

const adminViews = [
    ['clusters', 'Clusters', clusters],
    ['tenants', 'Tenants', tenants],
    ['plans', 'Plans', plans],
    ['users', 'Users and tokens', users],
    ['audit', 'Audit log', audit],
];
const tenantViews = [
    ['apps', 'Applications', apps],
    ['kubeconfigs', 'Kubeconfigs', kubeconfigs],
    ['usage', 'Usage and invoice', usage],
    ['users', 'Users and tokens', users],
];

let who = null;
let cleanup = null;
let routing = 0;            // the latest route(); an older one that ends late gives way

function signIn(message) {
    who = null;
    nav.replaceChildren();
    whoEl.replaceChildren();
    const tokenField = field('API token', {
        field: 'token', type: 'password', required: true,
        hint: 'A token from your administrator or from signup (kn_…). '
            + 'It is kept in this browser tab only.',
        attrs: { autocomplete: 'off', spellcheck: 'false' },
    });
    const err = h('p', { id: 'signin-error', class: 'form-error', role: 'alert' },
                  message || '');
    const f = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
        h('h1', { id: 'signin-title' }, 'Sign in to KubeNova'),
        tokenField, err,
        h('button', { type: 'submit' }, 'Sign in'));
    const input = tokenField.querySelector('input');
    input.setAttribute('aria-describedby',
                       input.getAttribute('aria-describedby') + ' signin-error');
    f.addEventListener('submit', async ev => {
        ev.preventDefault();
        const token = input.value.trim();
        err.textContent = '';
        input.removeAttribute('aria-invalid');
        if (!token) {
            input.setAttribute('aria-invalid', 'true');
            err.textContent = 'Enter your API token.';
            input.focus();
            return;
        }
        try {
            const w = await call('GET', 'whoami', { token });
            session.set(token);
            start(w);
        } catch (e) {
            input.setAttribute('aria-invalid', 'true');
            err.textContent = e.status === 401
                ? 'This token was not accepted: it is unknown, expired or revoked. '
                  + 'Check that you pasted all of it, or ask for a new one.'
                : `Could not sign in: ${e.message}`;
            input.focus();
            input.select();
        }
    });
    main.replaceChildren(f);
    input.focus();
}

function viewsOf(w) {
    return w.role === 'admin' ? adminViews : tenantViews;
}

function start(w) {
    who = w;
    whoEl.replaceChildren(
        h('span', {}, `${w.user || w.principal} · ${w.role}`
                      + (w.tenant ? ` · tenant ${w.tenant}` : '')),
        h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
    if (!location.hash.startsWith('#/')) {
        location.hash = '#/' + viewsOf(w)[0][0];
    } else {
        route();
    }
}

function signOut() {
    session.clear();
    if (cleanup) cleanup();
    cleanup = null;
    history.replaceState(null, '', location.pathname);
    signIn();
    announce('Signed out.');
}

// #/<view> or, for admins looking at one tenant, #/tenant/<name>/<view>
async function route() {
    if (!who || !location.hash.startsWith('#/')) return;
    if (cleanup) cleanup();
    cleanup = null;
    const mine = ++routing;
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    let tenant = who.tenant;
    let name = parts[0];
    let views = viewsOf(who);
    if (parts[0] === 'tenant' && who.role === 'admin' && parts[1]) {
        tenant = parts[1];
        name = parts[2] || 'apps';
        views = tenantViews;
    }
    const view = views.find(v => v[0] === name) || views[0];
    const base = views === tenantViews && who.role === 'admin'
        ? `#/tenant/${encodeURIComponent(tenant)}/` : '#/';
    nav.replaceChildren(h('ul', {}, [
        who.role === 'admin' && views === tenantViews
            ? h('li', {}, h('a', { href: '#/tenants' }, '← All tenants')) : null,
        views.map(([key, label]) => h('li', {},
            h('a', { href: base + key,
                     'aria-current': key === view[0] ? 'page' : null }, label))),
    ]));
    const title = view[1] + (views === tenantViews ? ` — ${tenant}` : '');
    document.title = `${title} · KubeNova`;
    const heading = h('h1', { tabindex: -1 }, title);
    const body = h('div', { class: 'view', 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
    main.replaceChildren(heading, body);
    const ctx = {
        who, tenant, main: body,
        canWrite: who.role === 'admin' || who.role === 'owner',
        go: hash => { location.hash = hash; },
    };
    let done = null;
    try {
        done = await view[2].render(ctx) || null;
    } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        body.replaceChildren(h('p', { class: 'form-error', role: 'alert' }, e.message));
    }
    if (mine !== routing) {
        if (done) done();
        return;
    }
    cleanup = done;
    body.removeAttribute('aria-busy');
    heading.focus();
}

window.addEventListener('hashchange', route);
// the skip link moves the focus only: its "#main" is no view to route to
document.querySelector('.skip').addEventListener('click', ev => {
    ev.preventDefault();
    main.focus();
});
window.addEventListener('kn-unauthorized', () => {
    if (!who) return;
    session.clear();
    signIn('Your token is no longer accepted (expired or revoked). Sign in again.');
});

(async () => {
    const token = session.token;
    if (!token) return signIn();
    try {
        start(await call('GET', 'whoami', { token }));
    } catch (e) {
        session.clear();
        signIn(e.status === 401 ? 'Your session ended; sign in again.' : e.message);
    }
})();
