// A bar chart in SVG, drawn by hand: one bar per bucket, the largest value
// and the first and last dates on the axes, each bar titled with its
// figure; the same numbers as a table for those who do not see it.

import { h, id } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const W = 640, H = 220, L = 56, B = 28, T = 12, R = 8;

function s(tag, attrs = {}, text) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    return el;
}

export function fmt(v) {
    if (v === 0) return '0';
    if (Math.abs(v) >= 100) return v.toFixed(0);
    if (Math.abs(v) >= 1) return v.toFixed(2).replace(/\.?0+$/, '');
    return v.toPrecision(2);
}

// points: [{label, value}], unit: what the values count
export function barChart(title, unit, points) {
    const tid = id('chart'), did = id('chart-desc');
    const max = Math.max(0, ...points.map(p => p.value));
    const total = points.reduce((a, p) => a + p.value, 0);
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img',
                           'aria-labelledby': `${tid} ${did}`, class: 'chart' });
    svg.append(s('title', { id: tid }, title),
               s('desc', { id: did }, `${points.length} days, total ${fmt(total)} ${unit}, `
                                      + `highest ${fmt(max)} ${unit}.`));
    const plotW = W - L - R, plotH = H - T - B;
    svg.append(s('line', { x1: L, y1: T + plotH, x2: W - R, y2: T + plotH, class: 'axis' }),
               s('line', { x1: L, y1: T, x2: L, y2: T + plotH, class: 'axis' }),
               s('text', { x: L - 6, y: T + 10, 'text-anchor': 'end', class: 'tick' }, fmt(max)),
               s('text', { x: L - 6, y: T + plotH, 'text-anchor': 'end', class: 'tick' }, '0'));
    const step = plotW / Math.max(points.length, 1);
    points.forEach((p, i) => {
        const bh = max > 0 ? (p.value / max) * plotH : 0;
        const bar = s('rect', { x: L + i * step + step * 0.15, y: T + plotH - bh,
                                width: step * 0.7, height: bh, class: 'bar',
                                'data-value': p.value });
        bar.append(s('title', {}, `${p.label}: ${fmt(p.value)} ${unit}`));
        svg.append(bar);
    });
    if (points.length) {
        svg.append(s('text', { x: L, y: H - 8, class: 'tick' }, points[0].label),
                   s('text', { x: W - R, y: H - 8, 'text-anchor': 'end', class: 'tick' },
                     points[points.length - 1].label));
    }
    const data = h('details', {},
        h('summary', {}, `${title}: the figures`),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'),
                                              h('th', { scope: 'col' }, unit))),
          h('tbody', {}, points.filter(p => p.value).map(p => h('tr', {},
              h('th', { scope: 'row' }, p.label), h('td', {}, fmt(p.value)))))));
    return h('figure', { class: 'card chart-box' },
             h('figcaption', {}, title, h('span', { class: 'hint' }, ` (${unit})`)), svg, data);
}
