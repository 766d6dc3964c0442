// Admin: the clusters, their Operators' reports, where their tenants
// stand, and a new cluster with its one-time credentials (and the join
// command with its install URL where the Manager offers them).

import { h, table, section, when, announce, secretBox } from '../dom.js';
import { listAll, call, seg } from '../api.js';
import { field, form, value } from '../forms.js';
import { writeButton } from '../actions.js';

// connected, pending (never connected), disconnected or unavailable (too
// long silent); from "connected" alone where the API has no state
function state(c) {
    const s = c.state || (c.connected ? 'connected' : 'disconnected');
    const kind = s === 'connected' ? 'ok' : s === 'pending' ? 'wait' : 'bad';
    return h('span', { class: 'badge ' + kind }, s);
}

// the components the Operator last reported ({items: [{name, version,
// state, message}]}) and where the cluster's configuration stands
function components(c) {
    const raw = c.components;
    const list = Array.isArray(raw) ? raw : raw?.items || [];
    const parts = list.map(x => h('li', {},
        h('span', { class: 'badge ' + (x.state === 'installed' ? 'ok'
                                     : x.state === 'failed' ? 'bad' : 'wait') },
          `${x.name}${x.version ? ' ' + x.version : ''}: ${x.state}`),
        x.message ? ` ${x.message}` : ''));
    if (c.config_sync) parts.push(h('li', {}, `configuration: ${c.config_sync.state}`));
    return parts.length ? h('ul', { class: 'plain' }, parts) : '—';
}

// what joins a cluster, shown once: the command, its URL, the token
function joinBox(title, j) {
    return h('div', { class: 'card' },
        h('h3', {}, title),
        j.join_command ? secretBox('Join command', j.join_command,
            'Run it with kubectl against the new cluster: it installs the Operator, '
            + 'which registers itself once.') : null,
        j.install_url ? secretBox('Install URL', j.install_url) : null,
        j.join_token ? secretBox('Join token', j.join_token,
            `Shown only now; works once, until ${when(j.join_token_expires_at)}.`) : null);
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
            { label: 'Last heartbeat', cell: c => when(c.last_heartbeat_at ?? c.last_seen_at) },
            { label: 'Operator', cell: c => c.operator_version || '—' },
            { label: 'Kubernetes', cell: c => c.kubernetes_version || '—' },
            { label: 'Components', cell: components },
            { label: 'Tenants in sync', cell: c => {
                const s = sync[c.name];
                if (!s) return 'no tenants';
                return `${s.synced} synced, ${s.pending} pending, ${s.error} error`;
            } },
            { label: 'Actions', cell: c => h('div', { class: 'actions' },
              c.state === 'connected' ? null : h('button', {
                type: 'button', 'aria-label': `New join token for ${c.name}`,
                onclick: async () => {
                    try {
                        const j = await call('POST', `clusters/${seg(c.name)}/join-token`);
                        created.replaceChildren(joinBox(`Join ${c.name}`, j));
                        announce(`A new join token for ${c.name}; copy the join command now.`);
                    } catch (e) { announce(`No join token for ${c.name}: ${e.message}`); }
                } }, 'New join token'),
              writeButton({ label: 'Delete', name: `Delete cluster ${c.name}`,
                ask: `Delete cluster ${c.name}?`, method: 'DELETE', path: `clusters/${seg(c.name)}`,
                done: `Cluster ${c.name} deleted.`, failed: `Cluster ${c.name} not deleted`,
                after: load })) },
        ], items, 'none registered yet.'));
    }
    const create = form('Register a cluster', [
        field('Name', { field: 'name', required: true,
                        hint: 'Lowercase letters, digits and dashes.' }),
    ], 'Register cluster', async f => {
        const c = await call('POST', 'clusters', { body: { name: value(f, 'name') } });
        f.reset();
        created.replaceChildren(joinBox(`Cluster ${c.name} registered`, c));
        announce(`Cluster ${c.name} registered.`);
        await load();
    });
    await load();
    ctx.main.replaceChildren(list, section('Add a cluster', create, created));
}
