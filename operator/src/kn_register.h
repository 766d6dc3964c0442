/*
 * The Operator's identity over its life: loaded from where it is kept
 * (--identity-dir, or the --identity-secret Secret); when there is none,
 * or its certificate has expired, registered: a key made here, a CSR with
 * CN=<cluster> POSTed with the join token to the register URL (through
 * the event loop, verifying the Manager with the join CA), the signed
 * certificate stored with the key.  Then ready() hands it over for the
 * gRPC stream's mTLS.
 *
 * Renewal: at 2/3 of the certificate's life a CertificateRequest goes out
 * on the authenticated stream (send(); retried while there is no stream
 * or no answer); the CertificateIssued answer (kn_register_issued()) is
 * checked, stored, and handed to ready() again for the next connections.
 *
 * A stream refused UNAUTHENTICATED (the certificate revoked: the cluster
 * was deleted and made again, say) registers again with the join token,
 * the same key, while the streams go on with the identity they have; a
 * Welcome before that succeeds calls the registration off.
 */

#ifndef KN_REGISTER_H
#define KN_REGISTER_H


#include "kn_core.h"
#include "kn_identity.h"
#include "kn_kube.h"
#include "kn_log.h"
#include "kn_loop.h"
#include "kubenova.pb-c.h"


typedef struct kn_register_s  kn_register_t;

typedef void (*kn_register_ready_pt)(void *data, const kn_identity_t *id);
typedef kn_rc (*kn_register_send_pt)(void *data, const char *csr_pem,
    size_t len);


/* the strings must outlive the registrar */
typedef struct {
    const char  *cluster;
    const char  *join_dir;          /* NULL: an identity must exist */
    const char  *register_url;
    const char  *ca_file;           /* verifies register_url */

    const char  *identity_dir;      /* either this */
    kn_kube_t   *kube;              /* or these */
    const char  *secret_namespace;
    const char  *secret_name;
} kn_register_conf_t;


kn_rc kn_register_create(kn_loop_t *loop, const kn_log_t *log,
    const kn_register_conf_t *conf, kn_register_ready_pt ready,
    kn_register_send_pt send, void *data, kn_register_t **out);
void kn_register_destroy(kn_register_t *reg);

/* loads the identity, registering when needed; ready() follows */
kn_rc kn_register_start(kn_register_t *reg);

/* the Manager refused a stream UNAUTHENTICATED; it welcomed one */
void kn_register_refused(kn_register_t *reg);
void kn_register_welcomed(kn_register_t *reg);

/* the Manager's answer to a renewal request */
void kn_register_issued(kn_register_t *reg,
    const Kubenova__V1__CertificateIssued *issued);


#endif /* KN_REGISTER_H */
