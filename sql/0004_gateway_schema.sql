-- The Operator gateway's data (docs/api-design.md, "Operator gateway: the
-- database side"): what each cluster reports over its gRPC stream.  The
-- functions that read and write it live in schema "gateway"
-- (sql/functions/90_gateway.sql), replaced on every run of sql/migrate.

-- Cluster credentials and the stream that currently speaks for a cluster.
-- secret_hash is the lowercase hex SHA-256 of the cluster secret (shown
-- once, by the REST API); null until one is made, and then no Operator can
-- connect.  stream_id names the one stream the cluster is connected by:
-- a newer Hello replaces it, and every gateway call of an older stream
-- learns so ("current" false).
ALTER TABLE clusters
    ADD COLUMN secret_hash   text CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    ADD COLUMN stream_id     text CHECK (length(stream_id) BETWEEN 1 AND 128),
    ADD COLUMN connected_at  timestamptz;

-- What each cluster has applied, as it said in its last Hello and acked
-- since.  generation is the last one applied successfully (null: none yet);
-- a failed ack keeps it and records the failure (ok false, error, and the
-- generation that failed in error_generation).  Columns and collations
-- match desired_state's, so the two join on (cluster, kind, name).  No
-- CHECK on kind: a cluster may report kinds the Manager does not send.
CREATE TABLE applied_state (
    cluster           text COLLATE "C" NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    kind              text        NOT NULL CHECK (length(kind) BETWEEN 1 AND 63),
    name              text COLLATE "C" NOT NULL CHECK (length(name) BETWEEN 1 AND 253),
    generation        bigint      CHECK (generation >= 0),
    ok                boolean     NOT NULL,
    error             text        CHECK (length(error) <= 1000),
    error_generation  bigint,
    acked_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, kind, name)
);

-- Usage reports, stored once per (cluster, sequence) whatever the number of
-- retries.  Billing history: no foreign key to clusters or tenants, the
-- figures outlive both (like the audit log).
CREATE TABLE usage_reports (
    cluster       text COLLATE "C" NOT NULL,
    sequence      bigint      NOT NULL CHECK (sequence >= 0),
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL CHECK (window_end >= window_start),
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, sequence)
);

-- One row per tenant of a report (TenantUsage in proto/kubenova.proto); the
-- window is repeated so that a tenant's usage over time needs no join.
CREATE TABLE tenant_usage (
    cluster                 text COLLATE "C" NOT NULL,
    sequence                bigint  NOT NULL,
    tenant                  text COLLATE "C" NOT NULL CHECK (length(tenant) BETWEEN 1 AND 253),
    cpu_request_millicores  bigint  NOT NULL CHECK (cpu_request_millicores >= 0),
    memory_request_bytes    bigint  NOT NULL CHECK (memory_request_bytes >= 0),
    storage_request_bytes   bigint  NOT NULL CHECK (storage_request_bytes >= 0),
    load_balancers          bigint  NOT NULL CHECK (load_balancers >= 0),
    pods                    bigint  NOT NULL CHECK (pods >= 0),
    namespaces              bigint  NOT NULL CHECK (namespaces >= 0),
    applications            bigint  NOT NULL CHECK (applications >= 0),
    gpu_requests            bigint  NOT NULL CHECK (gpu_requests >= 0),
    quota_violations        bigint  NOT NULL CHECK (quota_violations >= 0),
    window_start            timestamptz NOT NULL,
    window_end              timestamptz NOT NULL,
    PRIMARY KEY (cluster, sequence, tenant),
    FOREIGN KEY (cluster, sequence) REFERENCES usage_reports (cluster, sequence)
        ON DELETE CASCADE
);

CREATE INDEX tenant_usage_tenant_window ON tenant_usage (tenant, window_start);

-- The latest status of each application on each cluster.  It goes with the
-- cluster and with the application (a status of a deleted app means
-- nothing); the gateway also drops it when a cluster acknowledges that it
-- removed the app.
CREATE TABLE app_status (
    cluster              text COLLATE "C" NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    tenant               text COLLATE "C" NOT NULL,
    app                  text COLLATE "C" NOT NULL,
    generation           bigint      NOT NULL CHECK (generation >= 0),
    phase                text        NOT NULL,
    observed_generation  bigint,
    workflow_state       text,
    services             jsonb       NOT NULL DEFAULT '[]'
                         CHECK (jsonb_typeof(services) = 'array'),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, tenant, app),
    FOREIGN KEY (tenant, app) REFERENCES applications (tenant, name) ON DELETE CASCADE
);

-- An application's statuses on every cluster (REST reads, cascading deletes).
CREATE INDEX app_status_app ON app_status (tenant, app);

-- Live delivery: gateways LISTEN on "kubenova_desired_state"; every
-- inserted or changed row sends "<cluster>\t<kind>\t<name>\t<generation>",
-- at commit (so nothing is announced that a reader could not see yet, and
-- nothing committed goes unannounced while the gateway listens).  The
-- gateway reads the row with gateway.object().  Removing a row sends
-- nothing: only an acknowledged tombstone or a deleted cluster removes one,
-- and neither is news to the cluster.  This replaces 0002's per-cluster
-- payload.
CREATE OR REPLACE FUNCTION desired_state_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    -- every change a cluster must see comes with a new generation
    IF TG_OP = 'UPDATE' AND NEW.generation = OLD.generation THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('kubenova_desired_state',
                      NEW.cluster || E'\t' || NEW.kind || E'\t' || NEW.name
                      || E'\t' || NEW.generation);
    RETURN NULL;
END
$$;

DROP TRIGGER desired_state_notify ON desired_state;

CREATE TRIGGER desired_state_notify
    AFTER INSERT OR UPDATE ON desired_state
    FOR EACH ROW EXECUTE FUNCTION desired_state_notify();
