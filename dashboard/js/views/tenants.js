// Admin: the tenants (plan, placement, suspended, where they stand, usage
// this month), a new tenant, suspend/resume, delete, and the way into a
// tenant's own views.

import { h, id, table, section, announce } from '../dom.js';
import { listAll, get, call, seg } from '../api.js';
import { field, form, value } from '../forms.js';
import { writeButton } from '../actions.js';

function placement(t) {
    const p = t.placement || {};
    const parts = [];
    if (p.clusters?.length) parts.push(p.clusters.join(', '));
    const sel = Object.entries(p.cluster_selector || {});
    if (sel.length) parts.push('labels ' + sel.map(([k, v]) => `${k}=${v}`).join(', '));
    return parts.join('; ') || 'nowhere';
}

function sync(t) {
    if (!t.sync?.length) return '—';
    return h('ul', { class: 'plain' }, t.sync.map(s => h('li', {},
        h('span', { class: 'badge ' + (s.state === 'synced' ? 'ok' : s.state === 'error' ? 'bad' : 'wait') },
          `${s.cluster}: ${s.state}`), s.error ? ` ${s.error}` : '')));
}

function usageCell(u) {
    if (!u) return 'none reported';
    return `${u.cpu_core_hours} CPU core-h, ${u.memory_gib_hours} GiB-h memory, `
         + `${u.pods_max} pods max`;
}

// the placement checkboxes: one per cluster, errors at the fieldset
function clusterChoice(clusters) {
    const fid = id('place');
    const fs = h('fieldset', { id: fid, 'data-field': 'placement',
                               'aria-describedby': fid + '-err' },
        h('legend', {}, 'Placement: clusters'),
        clusters.length ? clusters.map(c => {
            const cid = id('cl');
            return h('div', { class: 'field check' },
                h('input', { type: 'checkbox', id: cid, value: c.name, name: 'cluster' }),
                h('label', { for: cid }, c.name));
        }) : h('p', { class: 'hint' }, 'No clusters yet: the tenant is placed nowhere.'),
        h('p', { id: fid + '-err', class: 'field-error' }));
    return fs;
}

export async function render(ctx) {
    const list = h('div');
    async function load() {
        const [items, usage] = await Promise.all([
            listAll('tenants'),
            get('usage?granularity=month&limit=10000').catch(() => ({ items: [] })),
        ]);
        const month = {};
        for (const u of usage.items) month[u.tenant] = u;
        list.replaceChildren(table('Tenants', [
            { label: 'Name', cell: t => h('a', { href: `#/tenant/${seg(t.name)}/apps` }, t.name) },
            { label: 'Plan', cell: t => t.plan },
            { label: 'Placement', cell: placement },
            { label: 'Suspended', cell: t => (t.suspended ? 'yes' : 'no') },
            { label: 'State', cell: t => t.status },
            { label: 'Clusters', cell: sync },
            { label: 'Usage this month', cell: t => usageCell(month[t.name]) },
            { label: 'Actions', cell: t => h('div', { class: 'actions' },
                writeButton({ label: `${t.suspended ? 'Resume' : 'Suspend'} ${t.name}`,
                    method: 'PATCH', path: `tenants/${seg(t.name)}`,
                    body: { suspended: !t.suspended },
                    done: `Tenant ${t.name} ${t.suspended ? 'resumed' : 'suspended'}.`,
                    failed: `Tenant ${t.name} unchanged`, after: load }),
                writeButton({ label: 'Delete', name: `Delete tenant ${t.name}`,
                    ask: `Delete tenant ${t.name} and everything it runs?`,
                    method: 'DELETE', path: `tenants/${seg(t.name)}`,
                    done: `Tenant ${t.name} is being deleted.`,
                    failed: `Tenant ${t.name} not deleted`, after: load })) },
        ], items));
    }
    const [plans, clusters] = await Promise.all([listAll('plans'), listAll('clusters')]);
    const create = form('New tenant', [
        field('Name', { field: 'name', required: true,
                        hint: 'Lowercase letters, digits and dashes, at most 57.' }),
        field('Plan', { field: 'plan', type: 'select', options: plans.map(p => ({
            value: p.name, label: p.name + (p.default ? ' (default)' : ''),
            selected: p.default })) }),
        clusterChoice(clusters),
        field('Suspended', { field: 'suspended', type: 'checkbox' }),
    ], 'Create tenant', async f => {
        const chosen = [...f.querySelectorAll('input[name=cluster]:checked')].map(c => c.value);
        const t = await call('POST', 'tenants', { body: {
            name: value(f, 'name'), plan: value(f, 'plan') || undefined,
            placement: { clusters: chosen },
            suspended: f.querySelector('[data-field=suspended]').checked,
        } });
        f.reset();
        announce(`Tenant ${t.name} created.`);
        await load();
    });
    await load();
    ctx.main.replaceChildren(list, section('Add a tenant', create));
}
