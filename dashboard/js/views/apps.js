// A tenant's applications: deploy one from a pasted KubeVela document
// (YAML or JSON, the API's validation errors shown at the document), its
// per-cluster status live, delete it and see which clusters still have to
// remove it.

import { h, append, table, section, when, announce } from '../dom.js';
import { listAll, call, get, seg } from '../api.js';
import { field, form } from '../forms.js';
import { watchApp } from '../watch.js';

const SAMPLE = `apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: web
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: nginx:1.25`;

const stateOf = a => a.state || a.status || 'active';

// one row per cluster: its sync entry and its reported status, merged;
// the API's per-cluster view ("clusters": sync, phase, services, ...),
// where it has one, last so that it wins
export function perCluster(a) {
    const by = new Map();
    const add = (list, sync) => {
        for (const x of list || []) {
            if (!x.cluster) continue;
            by.set(x.cluster, { ...(by.get(x.cluster) || {}), ...x,
                                ...(sync ? { sync_state: sync(x) } : {}) });
        }
    };
    add(a.sync, x => x.state);
    add(a.cluster_status);
    add(a.clusters, x => x.sync);
    return [...by.values()];
}

function phaseBadge(phase) {
    const ok = /^(running|healthy)$/i.test(phase || '');
    return h('span', { class: 'badge ' + (ok ? 'ok' : phase ? 'wait' : ''), 'data-phase': phase || '' },
             phase || 'not reported');
}

function summary(a) {
    const rows = perCluster(a);
    if (!rows.length) return 'placed on no cluster';
    return h('ul', { class: 'plain' }, rows.map(r => h('li', {},
        `${r.cluster}: `, phaseBadge(r.phase), r.sync_state ? ` (${r.sync_state})` : '')));
}

function services(r) {
    const s = r.services || [];
    if (!s.length) return '—';
    const healthy = s.filter(x => x.healthy).length;
    return `${healthy}/${s.length} healthy` + s.filter(x => !x.healthy && x.message)
        .map(x => `; ${x.name}: ${x.message}`).join('');
}

function details(ctx, name, onDeleted, onChanged) {
    const box = h('section', { class: 'card', 'aria-labelledby': 'app-title' });
    const body = h('div', { id: 'app-live' });
    const mode = h('p', { class: 'hint' });
    // what a screen reader hears on a change: one line, not the table
    const heard = h('p', { class: 'visually-hidden', 'aria-live': 'polite' });
    let app = null;
    function render() {
        const line = `${name}: ${stateOf(app)}; ` + perCluster(app).map(
            r => `${r.cluster} ${r.phase || 'not reported'}`).join(', ');
        if (heard.textContent !== line) heard.textContent = line;
        const deleting = stateOf(app) === 'deleting';
        if (del) del.hidden = deleting;           // once is enough
        // still to remove it: the clusters the API names, else every
        // cluster whose entry is not synced (one that only reports a
        // status has not removed it yet)
        const pending = deleting ? (app.pending
            || perCluster(app).filter(r => r.sync_state !== 'synced').map(r => r.cluster)) : [];
        body.replaceChildren(
            h('p', {}, 'State: ', h('strong', { 'data-app-state': stateOf(app) }, stateOf(app)),
              ` · generation ${app.generation} · updated ${when(app.updated_at)}`),
            deleting ? h('p', { class: 'warn', 'data-pending': pending.join(',') },
                pending.length ? `Deleting: waiting for ${pending.join(', ')} to remove it.`
                               : 'Deleting: no cluster left to wait for.') : '',
            table(`Status of ${app.name} per cluster`, [
                { label: 'Cluster', cell: r => r.cluster },
                { label: 'Sync', cell: r => r.sync_state || '—' },
                { label: 'Applied generation', cell: r => r.applied_generation ?? r.observed_generation ?? '—' },
                { label: 'Phase', cell: r => phaseBadge(r.phase) },
                { label: 'Workflow', cell: r => r.workflow_state || '—' },
                { label: 'Services', cell: services },
                { label: 'Reported', cell: r => when(r.status_updated_at || r.updated_at) },
            ], perCluster(app), 'the tenant is placed on no cluster.'));
    }
    const del = ctx.canWrite ? h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete application ${name}?`)) return;
        try {
            const r = await call('DELETE', `tenants/${seg(ctx.tenant)}/apps/${seg(name)}`);
            if (r) { app = { ...app, ...r }; render(); onChanged(); }
            announce(r ? `Application ${name} is being deleted.` : `Application ${name} deleted.`);
            if (!r) onDeleted();
        } catch (e) { announce(`Application ${name} not deleted: ${e.message}`); }
    } }, `Delete ${name}`) : null;
    // an event's status document (ApplicationStatus: state, clusters,
    // pending) updates what is shown; anything else: read the app again
    const apply = async data => {
        if (app && data && typeof data === 'object' && Array.isArray(data.clusters)) {
            app = { ...app, ...data };
        } else {
            app = await get(`tenants/${seg(ctx.tenant)}/apps/${seg(name)}`);
        }
        render();
    };
    const stop = watchApp(ctx.tenant, name, {
        onUpdate: d => apply(d).catch(() => {}),
        onGone: () => { announce(`Application ${name} is gone.`); onDeleted(); },
        onMode: m => { mode.textContent = m === 'live' ? 'Status updates live.'
                                                      : 'Status refreshed every few seconds.'; },
    });
    append(box, [h('h2', { id: 'app-title', tabindex: -1 }, `Application ${name}`),
                 mode, heard, body, del]);
    apply(null).catch(e => body.replaceChildren(h('p', { role: 'alert' }, e.message)));
    return { box, stop };
}

export async function render(ctx) {
    const list = h('div');
    const panel = h('div');
    let current = null;
    const close = () => { if (current) current.stop(); current = null; panel.replaceChildren(); };
    function show(name) {
        close();
        current = details(ctx, name, () => { close(); load(); }, load);
        panel.append(current.box);
        current.box.querySelector('h2').focus();
    }
    async function load() {
        const items = await listAll(`tenants/${seg(ctx.tenant)}/apps`);
        list.replaceChildren(table('Applications', [
            { label: 'Name', cell: a => h('button', { type: 'button', class: 'link',
                'aria-label': `Show application ${a.name}`, onclick: () => show(a.name) }, a.name) },
            { label: 'State', cell: stateOf },
            { label: 'Generation', cell: a => a.generation },
            { label: 'Clusters', cell: summary },
            { label: 'Updated', cell: a => when(a.updated_at) },
        ], items));
    }
    const deploy = ctx.canWrite ? form('Deploy an application', [
        field('Application document (YAML or JSON)', {
            field: '*', type: 'textarea', required: true,
            hint: 'A KubeVela Application (core.oam.dev/v1beta1); '
                + 'its metadata.name names it.',
            attrs: { rows: 12, spellcheck: 'false', class: 'mono', placeholder: SAMPLE },
        }),
    ], 'Deploy', async f => {
        const text = f.querySelector('textarea').value;
        const json = /^\s*[{[]/.test(text);
        const a = await call('POST', `tenants/${seg(ctx.tenant)}/apps`,
                             { body: text, type: json ? 'application/json' : 'application/yaml' });
        f.reset();
        announce(`Application ${a.name} deployed.`);
        await load();
        show(a.name);
    }) : null;
    await load();
    ctx.main.replaceChildren(list, panel, deploy ? section('Deploy', deploy) : '');
    return close;
}
