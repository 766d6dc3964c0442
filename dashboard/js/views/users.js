// Users and their tokens: an admin picks a tenant (or the admins), an
// owner manages the tenant's own.  A new token's secret is shown once,
// with a copy button; revoking is immediate.

import { h, append, table, section, when, announce, secretBox } from '../dom.js';
import { listAll, call, seg } from '../api.js';
import { field, form, value } from '../forms.js';
import { writeButton } from '../actions.js';

function tokensPanel(ctx, user) {
    const panel = h('section', { class: 'card', 'aria-label': `Tokens of ${user}` });
    const list = h('div');
    const secret = h('div', { 'aria-live': 'polite' });
    async function load() {
        const items = await listAll(`users/${seg(user)}/tokens`);
        list.replaceChildren(table(`Tokens of ${user}`, [
            { label: 'Name', cell: t => t.name },
            { label: 'Created', cell: t => when(t.created_at) },
            { label: 'Last used', cell: t => when(t.last_used_at) },
            { label: 'Expires', cell: t => (t.expires_at ? when(t.expires_at) : 'never') },
            { label: 'State', cell: t => (t.revoked ? 'revoked' : 'active') },
            { label: 'Actions', cell: t => (t.revoked || !ctx.canWrite ? '—' : writeButton({
                label: 'Revoke', name: `Revoke token ${t.name} of ${user}`,
                ask: `Revoke token ${t.name} of ${user}?`,
                method: 'DELETE', path: `users/${seg(user)}/tokens/${seg(t.name)}`,
                done: `Token ${t.name} revoked.`, failed: `Token ${t.name} not revoked`,
                after: load })) },
        ], items));
    }
    const create = ctx.canWrite ? form(`New token for ${user}`, [
        field('Token name', { field: 'name', required: true, value: 'console' }),
        field('Expires (optional)', { field: 'expires_at', type: 'datetime-local' }),
    ], 'Create token', async f => {
        const exp = value(f, 'expires_at');
        const t = await call('POST', `users/${seg(user)}/tokens`, { body: {
            name: value(f, 'name'),
            expires_at: exp ? new Date(exp).toISOString().replace(/\.\d+Z$/, 'Z') : undefined,
        } });
        secret.replaceChildren(secretBox('Token', t.token,
            `Token ${t.name} of ${user}: shown only now, copy it and keep it safe.`));
        announce(`Token ${t.name} created for ${user}; copy it now, it is shown only once.`);
        secret.querySelector('input').focus();
        await load();
    }) : null;
    load().catch(e => list.replaceChildren(h('p', { role: 'alert' }, e.message)));
    append(panel, [h('h3', {}, `Tokens of ${user}`), list, secret, create]);
    return panel;
}

export async function render(ctx) {
    const isAdmin = ctx.who.role === 'admin' && !ctx.tenant;
    const tenants = isAdmin ? await listAll('tenants') : [];
    let scope = ctx.tenant || '';          // '' for the admins
    const list = h('div');
    const tokens = h('div');
    const createBox = h('div');

    async function load() {
        const items = scope ? await listAll(`tenants/${seg(scope)}/users`)
                            : await listAll('admins');
        list.replaceChildren(table(scope ? `Users of ${scope}` : 'Administrators', [
            { label: 'Name', cell: u => u.name },
            { label: 'Role', cell: u => u.role },
            { label: 'Created', cell: u => when(u.created_at) },
            { label: 'Actions', cell: u => h('div', { class: 'actions' },
                ctx.canWrite || u.name === ctx.who.user ? h('button', {
                    type: 'button', 'aria-label': `Tokens of ${u.name}`,
                    onclick: () => {
                        tokens.replaceChildren(tokensPanel(ctx, u.name));
                        tokens.querySelector('h3').setAttribute('tabindex', -1);
                        tokens.querySelector('h3').focus();
                    } }, 'Tokens') : null,
                ctx.canWrite && u.name !== ctx.who.user ? writeButton({
                    label: 'Delete', name: `Delete user ${u.name}`, ask: `Delete user ${u.name}?`,
                    method: 'DELETE', path: scope ? `tenants/${seg(scope)}/users/${seg(u.name)}`
                                                  : `admins/${seg(u.name)}`,
                    done: `User ${u.name} deleted.`, failed: `User ${u.name} not deleted`,
                    after: load }) : null) },
        ], items));
        createBox.replaceChildren(ctx.canWrite ? form(
            scope ? `New user of ${scope}` : 'New administrator', [
                field('User name', { field: 'name', required: true,
                    hint: 'Lowercase letters, digits and . _ @ -' }),
                scope ? field('Role', { field: 'role', type: 'select', options: [
                    { value: 'owner', label: 'owner (manages the tenant)' },
                    { value: 'readonly', label: 'readonly (reads only)' }] }) : null,
            ], 'Create user', async f => {
                const u = scope
                    ? await call('POST', `tenants/${seg(scope)}/users`,
                                 { body: { name: value(f, 'name'), role: value(f, 'role') } })
                    : await call('POST', 'admins', { body: { name: value(f, 'name') } });
                f.reset();
                announce(`User ${u.name} created.`);
                await load();
                tokens.replaceChildren(tokensPanel(ctx, u.name));
            }) : null);
        tokens.replaceChildren();
    }

    const picker = isAdmin ? h('div', { class: 'field' },
        h('label', { for: 'users-scope' }, 'Show users of'),
        h('select', { id: 'users-scope', onchange: ev => { scope = ev.target.value; load(); } },
            h('option', { value: '' }, 'Administrators'),
            tenants.map(t => h('option', { value: t.name }, `tenant ${t.name}`)))) : null;
    await load();
    ctx.main.replaceChildren(picker || '', list,
                             ctx.canWrite ? section('Add a user', createBox) : '', tokens);
}
