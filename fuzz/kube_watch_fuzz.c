/*
 * libFuzzer target for what the Operator reads from a Kubernetes watch
 * stream: the bounded line splitter (kn_watch_lines_feed) fed in pieces
 * whose sizes come from the input itself, and every line through the event
 * parser (kn_watch_parse_event).  See fuzz/README.md.
 */

#include <stddef.h>
#include <stdint.h>

#include "kn_watch.h"


static kn_rc
fuzz_line(const char *line, size_t len, void *data)
{
    json_t  *ev;
    char     err[256];

    (void) data;

    if (kn_watch_parse_event(line, len, &ev, err, sizeof(err)) == KN_OK) {
        json_decref(ev);
    }

    return KN_OK;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t            off, n;
    uint8_t           step;
    kn_watch_lines_t  lines;

    if (size < 1) {
        return 0;
    }

    /* the first byte: how the bytes arrive (1 to 256 at a time) */
    step = data[0];
    data++;
    size--;

    kn_watch_lines_init(&lines, 4096);

    for (off = 0; off < size; off += n) {
        n = (size_t) step + 1;
        if (n > size - off) {
            n = size - off;
        }
        if (kn_watch_lines_feed(&lines, (const char *) data + off, n,
                                fuzz_line, NULL) != KN_OK)
        {
            break;
        }
    }

    kn_watch_lines_reset(&lines);

    return 0;
}
