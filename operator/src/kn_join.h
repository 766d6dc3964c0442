/*
 * The join directory (--join-dir): the data of the kubenova-join Secret
 * that the cluster's install.yaml creates, one file per key, as a Secret
 * volume mounts it (or as a test writes it out of cluster):
 *
 *   cluster        the cluster's name at the Manager
 *   join-token     the single-use token that authorizes registration
 *   register-url   where the CSR is POSTed
 *   gateway-url    the gRPC gateway, https://host:port
 *   ca.crt         the CA that verifies the Manager's server certificate
 *
 * It stands for --cluster, --manager-url and --manager-ca; the join token
 * is read again for every registration attempt (an admin may issue a
 * fresh one into the Secret while the Operator waits).
 */

#ifndef KN_JOIN_H
#define KN_JOIN_H


#include "kn_config.h"
#include "kn_core.h"


/* fills cfg->cluster, manager_url, manager_ca, register_url from the dir */
kn_rc kn_join_load(kn_config_t *cfg, char *err, size_t err_size);

/* the join token, malloc'd, or NULL with err set */
char *kn_join_token(const char *dir, char *err, size_t err_size);


#endif /* KN_JOIN_H */
