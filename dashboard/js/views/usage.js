// A tenant's usage per day over the last 30 days (CPU, memory, storage,
// pods), as charts, and its invoice for the current month so far.

import { h, table, section } from '../dom.js';
import { get, seg, query } from '../api.js';
import { barChart } from '../chart.js';
import { money } from './plans.js';

const DAYS = 30;
const SERIES = [
    ['cpu_core_hours', 'CPU', 'core-hours'],
    ['memory_gib_hours', 'Memory', 'GiB-hours'],
    ['storage_gib_hours', 'Storage', 'GiB-hours'],
    ['pods_max', 'Pods', 'pods, the most at once'],
];

const day = d => d.toISOString().slice(0, 10);

export async function render(ctx) {
    const end = new Date();
    const start = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth(),
                                    end.getUTCDate() - (DAYS - 1)));
    const [usage, invoice] = await Promise.all([
        get(`tenants/${seg(ctx.tenant)}/usage` + query({
            granularity: 'day', from: day(start), limit: 10000 })),
        get(`tenants/${seg(ctx.tenant)}/invoice`).catch(e => ({ error: e })),
    ]);
    const byDay = new Map(usage.items.map(u => [u.start.slice(0, 10), u]));
    const days = [];
    for (let d = new Date(start); d <= end; d.setUTCDate(d.getUTCDate() + 1)) days.push(day(d));
    const charts = h('div', { class: 'charts' }, SERIES.map(([key, title, unit]) =>
        barChart(`${title} per day`, unit,
                 days.map(d => ({ label: d, value: Number(byDay.get(d)?.[key] || 0) })))));
    const inv = invoice.error
        ? h('p', { role: 'alert' }, `No invoice: ${invoice.error.message}`)
        : h('div', {},
            h('p', {}, `${invoice.month}, ${invoice.final ? 'final' : 'so far'}: `,
              h('strong', { 'data-total': invoice.total }, money(invoice.total, invoice.currency))),
            table(`Invoice ${invoice.month}`, [
                { label: 'Resource', cell: l => l.resource },
                { label: 'Plan', cell: l => l.plan },
                { label: 'Quantity', cell: l => `${l.quantity} ${l.unit}` },
                { label: 'Unit price', cell: l => money(l.unit_price, invoice.currency) },
                { label: 'Amount', cell: l => money(l.amount, invoice.currency) },
            ], invoice.lines, 'nothing charged yet.'));
    ctx.main.replaceChildren(
        usage.items.length ? ''
            : h('p', { class: 'empty' }, 'No usage reported in the last 30 days.'),
        section('Usage, last 30 days', charts),
        section('Invoice this month', inv));
}
