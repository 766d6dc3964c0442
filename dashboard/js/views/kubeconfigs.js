// A tenant's kubeconfigs, one per cluster it is placed on and role: the
// file is fetched with the token and handed to the browser as a download
// (a plain link would need the token in its URL).

import { h, table, announce } from '../dom.js';
import { get, call, seg, query } from '../api.js';

async function download(ctx, cluster, role) {
    try {
        const r = await call('GET', `tenants/${seg(ctx.tenant)}/kubeconfig`
                             + query({ cluster, role, via: 'direct' }),
                             { raw: true, accept: 'application/yaml' });
        const disp = r.headers.get('content-disposition') || '';
        const name = /filename="([^"]+)"/.exec(disp)?.[1]
            || `${ctx.tenant}-${cluster}-${role}.kubeconfig`;
        const url = URL.createObjectURL(await r.blob());
        const a = h('a', { href: url, download: name, hidden: true });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        announce(`Kubeconfig ${name} downloaded.`);
    } catch (e) {
        announce(e.status === 404
            ? `No ${role} kubeconfig for ${cluster} yet: its Operator has not issued one.`
            : `Kubeconfig not downloaded: ${e.message}`);
    }
}

export async function render(ctx) {
    const t = await get(`tenants/${seg(ctx.tenant)}`);
    const clusters = [...new Set([...(t.placement?.clusters || []),
                                  ...(t.sync || []).map(s => s.cluster)])].sort();
    const roles = ctx.who.role === 'readonly' ? ['readonly'] : ['owner', 'readonly'];
    ctx.main.replaceChildren(
        h('p', {}, 'Each cluster\'s Operator issues the tenant two kubeconfigs: '
                 + 'owner (manages the tenant\'s namespaces) and readonly.'),
        table('Kubeconfigs', [
            { label: 'Cluster', cell: c => c },
            ...roles.map(role => ({ label: role, cell: c => h('button', {
                type: 'button', onclick: () => download(ctx, c, role),
                'aria-label': `Download the ${role} kubeconfig for ${c}` }, `Download ${role}`) })),
        ], clusters, 'the tenant is placed on no cluster.'));
}
