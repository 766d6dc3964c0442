-- One-shot bootstrap (issue 6): the kubeconfig a cluster was created with
-- (POST /clusters bootstrap_kubeconfig), sealed by nginx (AES-256-GCM,
-- kubenova_secret_key_file, bound to "bootstrap\n<cluster>") before it got
-- here.  kubenova-bootstrap takes the row, applies the cluster's
-- install.yaml with it and deletes it: the Manager keeps no Kubernetes
-- credential afterwards.
CREATE TABLE cluster_bootstrap (
    cluster     text COLLATE "C" PRIMARY KEY
                REFERENCES clusters (name) ON DELETE CASCADE,
    sealed      bytea       NOT NULL CHECK (length(sealed) > 29),
    created_at  timestamptz NOT NULL DEFAULT now()
);
