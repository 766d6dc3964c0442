// A button for one API write on a listed object: it asks first when it
// destroys something, says in the status line how it went, then refreshes
// the list it sits in.

import { h, announce } from './dom.js';
import { call } from './api.js';

// o: label (shown), name (accessible name, when the label is not enough),
// ask (the question to confirm: a destructive write), method, path, body,
// done and failed (what the status line says), after (the refresh)
export function writeButton(o) {
    return h('button', {
        type: 'button', class: o.ask ? 'danger' : null, 'aria-label': o.name,
        onclick: async () => {
            if (o.ask && !confirm(o.ask)) return;
            try {
                await call(o.method, o.path, o.body === undefined ? {} : { body: o.body });
                announce(o.done);
            } catch (e) {
                announce(`${o.failed}: ${e.message}`);
            }
            await o.after();
        } }, o.label);
}
