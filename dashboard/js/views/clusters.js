// Admin: the clusters, their Operators' reports, where their tenants
// stand, and a new cluster with its one-time credentials (and the join
// command with its install URL where the Manager offers them).

import { h, table, section, when, announce, secretBox } from '../dom.js';
import { listAll, call, seg } from '../api.js';
import { field, form, value } from '../forms.js';

function state(c) {
    const s = c.state || (c.connected ? 'connected' : 'disconnected');
    return h('span', { class: 'badge ' + (s === 'connected' ? 'ok' : 'bad') }, s);
}

// components reported for the cluster, in whichever form the API gives
// them (a list of {name, state|status, version} or an object by name)
function components(c) {
    const raw = c.components ?? c.component_status;
    if (!raw) return '—';
    const list = Array.isArray(raw) ? raw
        : Object.entries(raw).map(([name, v]) => ({ name, ...(typeof v === 'object' ? v : { state: v }) }));
    if (!list.length) return '—';
    return h('ul', { class: 'plain' }, list.map(x => h('li', {},
        `${x.name}${x.version ? ' ' + x.version : ''}: ${x.state ?? x.status ?? (x.ready ? 'ready' : 'not ready')}`)));
}

// synced / pending / error counts of the tenants placed on each cluster
function syncByCluster(tenants) {
    const by = {};
    for (const t of tenants) {
        for (const s of t.sync || []) {
            const c = (by[s.cluster] ||= { synced: 0, pending: 0, error: 0 });
            c[s.state] = (c[s.state] || 0) + 1;
        }
    }
    return by;
}

export async function render(ctx) {
    const list = h('div');
    const created = h('div', { 'aria-live': 'polite' });
    async function load() {
        const [items, tenants] = await Promise.all([listAll('clusters'), listAll('tenants')]);
        const sync = syncByCluster(tenants);
        list.replaceChildren(table('Clusters', [
            { label: 'Name', cell: c => c.name },
            { label: 'State', cell: state },
            { label: 'Last heartbeat', cell: c => when(c.last_seen_at) },
            { label: 'Operator', cell: c => c.operator_version || '—' },
            { label: 'Kubernetes', cell: c => c.kubernetes_version || '—' },
            { label: 'Components', cell: components },
            { label: 'Tenants in sync', cell: c => {
                const s = sync[c.name];
                if (!s) return 'no tenants';
                return `${s.synced} synced, ${s.pending} pending, ${s.error} error`;
            } },
            { label: 'Actions', cell: c => h('button', {
                type: 'button', class: 'danger', 'aria-label': `Delete cluster ${c.name}`,
                onclick: async () => {
                    if (!confirm(`Delete cluster ${c.name}?`)) return;
                    try {
                        await call('DELETE', `clusters/${seg(c.name)}`);
                        announce(`Cluster ${c.name} deleted.`);
                    } catch (e) { announce(`Cluster ${c.name} not deleted: ${e.message}`); }
                    await load();
                } }, 'Delete') },
        ], items, 'none registered yet.'));
    }
    const create = form('Register a cluster', [
        field('Name', { field: 'name', required: true,
                        hint: 'Lowercase letters, digits and dashes.' }),
    ], 'Register cluster', async f => {
        const c = await call('POST', 'clusters', { body: { name: value(f, 'name') } });
        f.reset();
        created.replaceChildren(h('div', { class: 'card' },
            h('h3', {}, `Cluster ${c.name} registered`),
            c.join_command ? secretBox('Join command', c.join_command,
                'Run it against the new cluster; the join token in it works once.') : null,
            c.install_url ? secretBox('Install URL', c.install_url) : null,
            c.secret ? secretBox('Cluster secret', c.secret,
                'Shown only now: give it to the cluster\'s Operator.') : null));
        announce(`Cluster ${c.name} registered.`);
        await load();
    });
    await load();
    ctx.main.replaceChildren(list, section('Add a cluster', create, created));
}
