-- Kubeconfigs the Operators issue for each tenant and role, per cluster.
-- The Manager encrypts them (AES-256-GCM, kubenova_secret_key_file) before
-- they reach the database: only ciphertext is stored.
CREATE TABLE kubeconfigs (
    cluster     text        NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    tenant      text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('owner', 'readonly')),
    ciphertext  bytea       NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, tenant, role)
);

CREATE INDEX kubeconfigs_tenant ON kubeconfigs (tenant, cluster);
