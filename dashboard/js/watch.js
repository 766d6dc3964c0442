// Live status of one application: the Manager's server-sent events
// (GET .../apps/{app}/status?watch=1) read with fetch, so the token stays
// in the Authorization header (EventSource cannot send one and would need
// it in the URL).  Where the stream is not offered, or breaks, the
// application is polled instead.

import { call, seg } from './api.js';

const MAX_EVENT = 1 << 20;      // one event's text; past it the stream is dropped
const POLL_MS = 2000;

// onUpdate(data) for each status event (parsed JSON, or null: "changed,
// read it again"); onGone() once the application no longer exists.
// Returns stop().
export function watchApp(tenant, app, { onUpdate, onGone, onMode }) {
    const ctl = new AbortController();         // everything, on stop()
    const stream = new AbortController();      // the event stream alone
    let timer = null;
    let stopped = false;
    const path = `tenants/${seg(tenant)}/apps/${seg(app)}`;

    function poll() {
        if (stopped) return;
        onMode?.('polling');
        timer = setTimeout(async () => {
            try {
                onUpdate(await call('GET', path, { signal: ctl.signal }));
            } catch (e) {
                if (e.name === 'AbortError') return;
                if (e.status === 404) { onGone(); return; }
            }
            poll();
        }, POLL_MS);
    }

    // one event: "status" (the status document), "deleted" (the end),
    // "error" (the stream is over: fall back to polling, which also tells
    // whether the app is still readable)
    function dispatch(block) {
        let data = '', event = 'message';
        for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;           // a comment: heartbeat
            if (line.startsWith('event:')) event = line.slice(6).trim();
            if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '');
        }
        if (event === 'deleted') return 'gone';
        if (event === 'error') return 'error';
        if (!data) return null;
        let parsed = null;
        try { parsed = JSON.parse(data); } catch { /* not JSON: re-read the app */ }
        onUpdate(parsed);
        return null;
    }

    (async () => {
        let r;
        try {
            r = await call('GET', `${path}/status?watch=1`,
                           { raw: true, accept: 'text/event-stream', signal: stream.signal });
        } catch (e) {
            if (e.name === 'AbortError') return;
            return poll();              // no stream here (or the app is gone: polling tells)
        }
        if (!(r.headers.get('content-type') || '').startsWith('text/event-stream') || !r.body) {
            return poll();
        }
        onMode?.('live');
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '', cr = '';
        try {
            for (;;) {
                const { value, done } = await reader.read();
                if (done) break;
                // line ends to \n; a \r at a chunk's end waits for the next
                // chunk, which may start with the \n of the same line end
                let text = cr + dec.decode(value, { stream: true });
                cr = text.endsWith('\r') ? '\r' : '';
                if (cr) text = text.slice(0, -1);
                buf += text.replace(/\r\n?/g, '\n');
                let i;
                while ((i = buf.indexOf('\n\n')) >= 0) {
                    const end = dispatch(buf.slice(0, i));
                    buf = buf.slice(i + 2);
                    if (end === 'gone') { stopped = true; ctl.abort(); onGone(); return; }
                    if (end === 'error') { stream.abort(); return poll(); }
                }
                if (buf.length > MAX_EVENT) throw new Error('event too large');
            }
        } catch (e) {
            if (e.name === 'AbortError' || stopped) return;
            return poll();
        }
        // the server ends the stream when the application is deleted
        if (!stopped) {
            try { onUpdate(await call('GET', path, { signal: ctl.signal })); poll(); }
            catch (e) { if (e.status === 404) onGone(); else poll(); }
        }
    })();

    return () => { stopped = true; clearTimeout(timer); ctl.abort(); stream.abort(); };
}
