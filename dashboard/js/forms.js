// Forms whose errors come from the API: each `details` entry of a 422 is
// shown at the input whose data-field names it (or a prefix of it), the
// rest in the form's summary; the first bad input gets the focus.

import { h, id, announce } from './dom.js';

// a labelled input; opts: field (API member), type, hint, required, attrs
export function field(label, opts = {}) {
    const fid = id('f');
    const hintId = opts.hint ? fid + '-hint' : null;
    const errId = fid + '-err';
    const tag = opts.type === 'textarea' ? 'textarea'
              : opts.type === 'select' ? 'select' : 'input';
    const input = h(tag, {
        id: fid, name: opts.field, 'data-field': opts.field,
        type: tag === 'input' ? (opts.type || 'text') : null,
        required: opts.required,
        'aria-describedby': [hintId, errId].filter(Boolean).join(' '),
        ...opts.attrs,
    }, (opts.options || []).map(o => h('option', { value: o.value,
                                                   selected: o.selected }, o.label)));
    if (opts.value !== undefined) input.value = opts.value;
    return h('div', { class: 'field' + (opts.type === 'checkbox' ? ' check' : '') },
        opts.type === 'checkbox' ? [input, h('label', { for: fid }, label)]
                                 : [h('label', { for: fid }, label), input],
        hintId ? h('p', { id: hintId, class: 'hint' }, opts.hint) : null,
        h('p', { id: errId, class: 'field-error', 'data-error-for': opts.field || '' }));
}

export function clearErrors(form) {
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    const s = form.querySelector('.form-error');
    if (s) s.textContent = '';
}

// the input a detail's field belongs to: the longest data-field that is
// the path itself or a prefix of it ("metadata.name" -> "metadata"), else
// the form's catch-all (data-field="*")
function inputFor(form, path) {
    let best = null;
    for (const el of form.querySelectorAll('[data-field]')) {
        const f = el.dataset.field;
        if (!f || f === '*') continue;
        if (path === f || path.startsWith(f + '.') || path.startsWith(f + '[')) {
            if (!best || f.length > best.dataset.field.length) best = el;
        }
    }
    return best || form.querySelector('[data-field="*"]');
}

export function showError(form, err) {
    clearErrors(form);
    const summary = form.querySelector('.form-error');
    const rest = [];
    let first = null;
    for (const d of err.details || []) {
        const input = inputFor(form, d.field);
        if (!input) { rest.push(d); continue; }
        input.setAttribute('aria-invalid', 'true');
        const p = form.querySelector(`#${input.id}-err`);
        const text = (d.field ? `${d.field}: ` : '') + d.message;
        p.textContent = p.textContent ? p.textContent + '; ' + text : text;
        first = first || input;
    }
    const catchAll = form.querySelector('[data-field="*"]');
    if (!err.details?.length && catchAll && (err.status === 400 || err.status === 413)) {
        // the document itself is bad (invalid_yaml, invalid_json, too large)
        catchAll.setAttribute('aria-invalid', 'true');
        form.querySelector(`#${catchAll.id}-err`).textContent = err.message;
        first = catchAll;
    }
    const lines = [err.message, ...rest.map(d => `${d.field || 'body'}: ${d.message}`)];
    summary.textContent = lines.join(' ');
    (first || summary).focus();
}

// a form: fields, a submit button; onsubmit(form) may throw an ApiError
export function form(title, fields, submitLabel, onsubmit) {
    const summaryId = id('ferr');
    const f = h('form', { class: 'card', novalidate: true, 'aria-label': title },
        h('h3', {}, title),
        fields,
        h('p', { id: summaryId, class: 'form-error', role: 'alert', tabindex: -1 }),
        h('button', { type: 'submit' }, submitLabel));
    f.addEventListener('submit', async ev => {
        ev.preventDefault();
        const button = f.querySelector('button[type=submit]');
        clearErrors(f);
        button.disabled = true;
        try {
            await onsubmit(f);
        } catch (e) {
            if (e.name === 'AbortError') return;
            if (e.status === undefined) throw e;
            showError(f, e);
            announce(`${title}: ${e.message}`);
        } finally {
            button.disabled = false;
        }
    });
    return f;
}

export const value = (form, name) => form.querySelector(`[data-field="${name}"]`).value.trim();
