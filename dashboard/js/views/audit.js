// Admin: the audit log, newest first, a page at a time.

import { h, table, when } from '../dom.js';
import { get, seg } from '../api.js';

export async function render(ctx) {
    const rows = [];
    const list = h('div');
    const more = h('button', { type: 'button' }, 'Show older entries');
    let cont = null;
    async function page() {
        const p = await get('audit?limit=50' + (cont ? `&continue=${seg(cont)}` : ''));
        rows.push(...p.items);
        cont = p.continue;
        more.hidden = !cont;
        list.replaceChildren(table('Audit log', [
            { label: 'When', cell: e => when(e.at) },
            { label: 'Who', cell: e => e.principal ?? 'signup' },
            { label: 'Action', cell: e => e.action },
            { label: 'Resource', cell: e => e.resource },
            { label: 'Answer', cell: e => h('span', {
                class: e.status < 400 ? 'ok' : 'bad' }, String(e.status)) },
        ], rows));
    }
    more.addEventListener('click', page);
    await page();
    ctx.main.replaceChildren(list, more);
}
