-- Cluster registration (docs/api-design.md, "Registration"): join tokens
-- that let a new cluster's Operator get its first certificate, and the
-- certificates the Manager's CA (kubenova_ca) signed for Operators.

-- A join token authorizes one registration of one cluster (and serves its
-- install.yaml until then).  Only the SHA-256 is stored (api.secret_hash).
-- Used and expired tokens are kept a while so that a refusal can say which
-- it was; issuing a new token drops the cluster's unused ones.
CREATE TABLE join_tokens (
    token_hash  text PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    cluster     text COLLATE "C" NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);

CREATE INDEX join_tokens_cluster ON join_tokens (cluster);

-- Every certificate issued to an Operator: serial as lowercase hex (what
-- nginx reads from the client certificate), its cluster and expiry.  No
-- foreign key to clusters: the row outlives its cluster, revoked, so that a
-- certificate of a deleted cluster stays refused even when a cluster of the
-- same name is created later.  The gateway accepts a client certificate
-- only while its row exists, is not revoked and names the hello's cluster.
CREATE TABLE cluster_certificates (
    serial      text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{2,64}$'),
    cluster     text COLLATE "C" NOT NULL CHECK (length(cluster) BETWEEN 1 AND 63),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    not_after   timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE INDEX cluster_certificates_cluster ON cluster_certificates (cluster);
