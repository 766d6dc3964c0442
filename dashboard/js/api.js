// The public REST API (/api/v1, docs/openapi.yaml) with the signed-in
// token.  The token lives in sessionStorage only: it is sent in the
// Authorization header, never in a URL, and is gone with the tab.

const KEY = 'kubenova.token';

export const session = {
    get token() { return sessionStorage.getItem(KEY); },
    set(token) { sessionStorage.setItem(KEY, token); },
    clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
    constructor(status, error) {
        super(error?.message || `The server answered ${status}.`);
        this.status = status;
        this.code = error?.code || 'http_' + status;
        this.details = error?.details || [];
    }
}

export const seg = encodeURIComponent;

export function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
        if (v !== undefined && v !== null && v !== '') q.set(k, v);
    }
    const s = q.toString();
    return s ? '?' + s : '';
}

// fetch with the token; opts: body (object: JSON, string: as is),
// type (Content-Type of a string body), token (another than the
// session's), signal, raw (answer the Response itself)
export async function call(method, path, opts = {}) {
    const token = opts.token ?? session.token;
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (opts.body !== undefined) {
        if (typeof opts.body === 'string') {
            body = opts.body;
            headers['Content-Type'] = opts.type || 'application/json';
        } else {
            body = JSON.stringify(opts.body);
            headers['Content-Type'] = 'application/json';
        }
    }
    if (opts.accept) headers.Accept = opts.accept;
    let r;
    try {
        r = await fetch('/api/v1/' + path, { method, headers, body,
                                             signal: opts.signal,
                                             cache: 'no-store' });
    } catch (e) {
        if (e.name === 'AbortError') throw e;
        throw new ApiError(0, { code: 'network',
            message: 'The Manager cannot be reached; check the connection and try again.' });
    }
    if (!r.ok) {
        let err = null;
        try { err = (await r.json()).error; } catch { /* not JSON */ }
        if (r.status === 401 && !opts.token) {
            window.dispatchEvent(new CustomEvent('kn-unauthorized'));
        }
        throw new ApiError(r.status, err);
    }
    if (opts.raw) return r;
    if (r.status === 204) return null;
    const ct = r.headers.get('content-type') || '';
    return ct.includes('json') ? r.json() : r.text();
}

export const get = (path, opts) => call('GET', path, opts);

// every item of a list, following "continue" (at most `pages` pages)
export async function listAll(path, pages = 20) {
    const items = [];
    let cont = null;
    for (let i = 0; i < pages; i++) {
        const sep = path.includes('?') ? '&' : '?';
        const page = await get(path + (cont ? `${sep}continue=${seg(cont)}` : ''));
        items.push(...page.items);
        cont = page.continue;
        if (!cont) break;
    }
    return items;
}
