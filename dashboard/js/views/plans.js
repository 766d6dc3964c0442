// Admin: the plans tenants are on (quotas and prices), and a new plan.

import { h, table, section, announce } from '../dom.js';
import { listAll, call, seg } from '../api.js';
import { field, form, value } from '../forms.js';
import { writeButton } from '../actions.js';

export function money(minor, currency) {
    try {
        return new Intl.NumberFormat('en', { style: 'currency', currency })
            .format(minor / 100);
    } catch {
        return `${minor} ${currency} (minor units)`;
    }
}

export async function render(ctx) {
    const list = h('div');
    async function load() {
        const items = await listAll('plans');
        list.replaceChildren(table('Plans', [
            { label: 'Name', cell: p => p.name + (p.default ? ' (default)' : '') },
            { label: 'CPU', cell: p => p.cpu },
            { label: 'Memory', cell: p => p.memory },
            { label: 'Storage', cell: p => p.storage },
            { label: 'Pods', cell: p => p.pods },
            { label: 'Per month', cell: p => money(p.price_monthly, p.currency) },
            { label: 'Actions', cell: p => p.default ? '—' : writeButton({
                label: 'Delete', name: `Delete plan ${p.name}`, ask: `Delete plan ${p.name}?`,
                method: 'DELETE', path: `plans/${seg(p.name)}`, done: `Plan ${p.name} deleted.`,
                failed: `Plan ${p.name} not deleted`, after: load }) },
        ], items));
    }
    const create = form('New plan', [
        field('Name', { field: 'name', required: true }),
        field('CPU', { field: 'cpu', required: true, hint: 'A quantity: 2, 500m' }),
        field('Memory', { field: 'memory', required: true, hint: '4Gi' }),
        field('Storage', { field: 'storage', required: true, hint: '20Gi' }),
        field('Pods', { field: 'pods', type: 'number', required: true,
                        attrs: { min: 0, inputmode: 'numeric' } }),
        field('Price per month (cents)', { field: 'price_monthly', type: 'number',
                        required: true, attrs: { min: 0, inputmode: 'numeric' } }),
        field('Currency', { field: 'currency', value: 'EUR',
                            attrs: { maxlength: 3, autocapitalize: 'characters' } }),
    ], 'Create plan', async f => {
        const num = n => (value(f, n) === '' ? null : Number(value(f, n)));
        const plan = await call('POST', 'plans', { body: {
            name: value(f, 'name'), cpu: value(f, 'cpu'), memory: value(f, 'memory'),
            storage: value(f, 'storage'), pods: num('pods'),
            price_monthly: num('price_monthly'), currency: value(f, 'currency') || undefined,
        } });
        f.reset();
        announce(`Plan ${plan.name} created.`);
        await load();
    });
    await load();
    ctx.main.replaceChildren(list, section('Add a plan', create));
}
