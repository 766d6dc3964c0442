// Building the page from data without innerHTML: every text from the API
// goes in as a text node, so nothing it holds is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
}

export function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith('on') && typeof v === 'function') {
            el.addEventListener(k.slice(2), v);
        } else if (k === 'class') {
            el.setAttribute('class', v);
        } else if (k === 'value' || k === 'checked') {
            el[k] = v;
        } else {
            el.setAttribute(k, v === true ? '' : String(v));
        }
    }
}

export function append(el, children) {
    for (const c of [children].flat(Infinity)) {
        if (c === null || c === undefined || c === false) continue;
        el.append(c instanceof Node ? c : String(c));
    }
    return el;
}

let uid = 0;
export function id(prefix) { return `${prefix}-${++uid}`; }

// Polite announcements for screen readers (and tests): the one live region.
export function announce(text) {
    const s = document.getElementById('status');
    s.textContent = '';
    // a new text node even when the message repeats, so it is read again
    requestAnimationFrame(() => { s.textContent = text; });
}

export function when(ts) {
    if (!ts) return '—';
    const d = new Date(ts);
    if (isNaN(d)) return String(ts);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');
}

// A table with a caption; columns: [{label, cell(row) -> node or text}].
export function table(caption, columns, rows, empty = 'None yet.') {
    if (!rows.length) return h('p', { class: 'empty' }, `${caption}: ${empty}`);
    return h('div', { class: 'scroll', tabindex: 0, role: 'region',
                      'aria-label': caption },
        h('table', {},
            h('caption', {}, caption),
            h('thead', {}, h('tr', {}, columns.map(
                c => h('th', { scope: 'col' }, c.label)))),
            h('tbody', {}, rows.map(r => h('tr', {}, columns.map(
                (c, i) => h(i === 0 ? 'th' : 'td', i === 0 ? { scope: 'row' } : {},
                            c.cell(r))))))));
}

export function section(title, ...children) {
    const hid = id('sec');
    return h('section', { 'aria-labelledby': hid },
             h('h2', { id: hid }, title), ...children);
}

export async function copyText(text, what) {
    try {
        await navigator.clipboard.writeText(text);
        announce(`${what} copied to the clipboard.`);
    } catch {
        announce(`Could not copy: select the ${what.toLowerCase()} and copy it yourself.`);
    }
}

// A secret shown once: a read-only field with a copy button.
export function secretBox(label, value, note) {
    const fid = id('secret');
    return h('div', { class: 'secret' },
        h('label', { for: fid }, label),
        h('div', { class: 'row' },
            h('input', { id: fid, type: 'text', readonly: true, value,
                         class: 'mono', 'data-secret': label }),
            h('button', { type: 'button',
                          onclick: () => copyText(value, label) },
              `Copy ${label[0].toLowerCase()}${label.slice(1)}`)),
        note ? h('p', { class: 'hint' }, note) : null);
}
