-- The REST API's data (docs/api-design.md).  Tables live in "public": the
-- functions that read and write them live in schema "api", which sql/migrate
-- drops and recreates on every run, so nothing here may depend on "api".
--
-- Names are the keys the API exposes; they use the "C" collation so that
-- ordering (pagination) is bytewise and does not depend on the server locale.

-- gen_random_bytes() for bearer tokens (PostgreSQL 15 has no built-in one).
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Resource plans: what a tenant may use, and what it costs per month.
-- Quantities are kept as the user wrote them (the API shows them back) and
-- normalised (millicores, bytes) for billing and comparisons.
CREATE TABLE plans (
    name            text COLLATE "C" PRIMARY KEY,
    cpu             text        NOT NULL,
    cpu_millicores  bigint      NOT NULL CHECK (cpu_millicores >= 0),
    memory          text        NOT NULL,
    memory_bytes    bigint      NOT NULL CHECK (memory_bytes >= 0),
    storage         text        NOT NULL,
    storage_bytes   bigint      NOT NULL CHECK (storage_bytes >= 0),
    pods            integer     NOT NULL CHECK (pods >= 0),
    load_balancers  integer     NOT NULL DEFAULT 0 CHECK (load_balancers >= 0),
    gpus            integer     NOT NULL DEFAULT 0 CHECK (gpus >= 0),  -- nvidia.com/gpu
    price_monthly   bigint      NOT NULL CHECK (price_monthly >= 0),    -- minor units
    currency        text        NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    is_default      boolean     NOT NULL DEFAULT false,
    generation      bigint      NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- At most one default plan; the API keeps it at exactly one (the default
-- cannot be unset or deleted, only moved to another plan).
CREATE UNIQUE INDEX plans_single_default ON plans ((true)) WHERE is_default;

INSERT INTO plans (name, cpu, cpu_millicores, memory, memory_bytes,
                   storage, storage_bytes, pods, load_balancers, gpus,
                   price_monthly, is_default)
VALUES
    ('small',     '1',  1000,  '2Gi',  2::bigint  << 30, '10Gi',  10::bigint  << 30,  20, 0, 0,  1500, true),
    ('medium',    '4',  4000,  '8Gi',  8::bigint  << 30, '50Gi',  50::bigint  << 30, 100, 2, 0,  6000, false),
    ('large',     '16', 16000, '32Gi', 32::bigint << 30, '200Gi', 200::bigint << 30, 500, 5, 0, 24000, false),
    ('gpu-small', '8',  8000,  '32Gi', 32::bigint << 30, '100Gi', 100::bigint << 30, 100, 2, 1, 45000, false);

-- Member clusters.  connected .. kubernetes_version are written by the
-- gateway (the cluster's Operator reports them), never by the REST API.
CREATE TABLE clusters (
    name                text COLLATE "C" PRIMARY KEY,
    labels              jsonb       NOT NULL DEFAULT '{}',
    connected           boolean     NOT NULL DEFAULT false,
    last_seen_at        timestamptz,
    operator_version    text,
    kubernetes_version  text,
    generation          bigint      NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    name               text COLLATE "C" PRIMARY KEY
                       CHECK (length(name) <= 57),  -- "<name>-owner" fits 63
    plan               text COLLATE "C" NOT NULL REFERENCES plans (name),
    quota_overrides    jsonb       NOT NULL DEFAULT '{}',
    labels             jsonb       NOT NULL DEFAULT '{}',
    placement          jsonb       NOT NULL DEFAULT '{}',
    suspended          boolean     NOT NULL DEFAULT false,
    ingress_hostnames  text[]      NOT NULL DEFAULT '{}',
    status             text        NOT NULL DEFAULT 'active'
                       CHECK (status IN ('active', 'deleting')),
    generation         bigint      NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenants_plan ON tenants (plan);

-- One row per ingress host name, so that "unique across tenants" holds even
-- between concurrent transactions (tenants.ingress_hostnames keeps the order
-- the user gave).
CREATE TABLE tenant_hostnames (
    hostname  text COLLATE "C" PRIMARY KEY,
    tenant    text COLLATE "C" NOT NULL REFERENCES tenants (name) ON DELETE CASCADE
);

CREATE INDEX tenant_hostnames_tenant ON tenant_hostnames (tenant);

-- Admins have no tenant; everybody else belongs to exactly one.
CREATE TABLE users (
    name        text COLLATE "C" PRIMARY KEY,
    tenant      text COLLATE "C" REFERENCES tenants (name) ON DELETE CASCADE,
    role        text        NOT NULL CHECK (role IN ('admin', 'owner', 'readonly')),
    generation  bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'admin') = (tenant IS NULL))
);

CREATE INDEX users_tenant ON users (tenant, name);

-- Bearer tokens.  Only the SHA-256 of the secret is kept (lowercase hex, as
-- nginx computes it); the secret itself is shown once, when created.  A
-- user's token names are unique; creating one under the name of a revoked
-- or expired token replaces that row.
CREATE TABLE tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_name     text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name          text COLLATE "C" NOT NULL,
    token_hash    text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    UNIQUE (user_name, name)
);

-- KubeVela Application documents of a tenant, stored as given.
CREATE TABLE applications (
    tenant      text COLLATE "C" NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    name        text COLLATE "C" NOT NULL,
    document    jsonb       NOT NULL,
    status      text        NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'deleting')),
    generation  bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

-- What each cluster should run: kind "Tenant" (name "<tenant>") and kind
-- "Application" (name "<tenant>/<app>").  Rows with deleted = true are
-- tombstones: the cluster must remove the object, then the gateway
-- acknowledges (api.ack_deleted) and the row goes.  generation comes from
-- one sequence, so it only ever grows across the whole table: a gateway can
-- resume with "everything for my cluster above generation N".  tenant has
-- no foreign key on purpose: tombstones outlive the tenant row.
CREATE SEQUENCE desired_state_generation_seq;

CREATE TABLE desired_state (
    cluster     text COLLATE "C" NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('Tenant', 'Application')),
    name        text COLLATE "C" NOT NULL,
    tenant      text COLLATE "C" NOT NULL,
    generation  bigint      NOT NULL DEFAULT nextval('desired_state_generation_seq'),
    spec        jsonb       NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster, kind, name)
);

CREATE INDEX desired_state_tenant ON desired_state (tenant);
CREATE INDEX desired_state_cluster_generation ON desired_state (cluster, generation);

-- Gateways LISTEN on "kubenova_desired_state"; the payload is the cluster
-- whose rows changed.  Notifications are sent at commit, and identical ones
-- within a transaction are folded into one by PostgreSQL.
CREATE FUNCTION desired_state_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('kubenova_desired_state', OLD.cluster);
    ELSE
        PERFORM pg_notify('kubenova_desired_state', NEW.cluster);
        IF TG_OP = 'UPDATE' AND OLD.cluster <> NEW.cluster THEN
            PERFORM pg_notify('kubenova_desired_state', OLD.cluster);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER desired_state_notify
    AFTER INSERT OR UPDATE OR DELETE ON desired_state
    FOR EACH ROW EXECUTE FUNCTION desired_state_notify();

-- One row per write request (successful or refused after authentication),
-- written in the same transaction as the write itself.
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    principal  text,            -- 'user:<name>', 'bootstrap-admin', null (signup)
    tenant     text,            -- the caller's tenant (signup: the new one)
    action     text    NOT NULL,  -- the operation, e.g. 'tenant.put'
    resource   text    NOT NULL,  -- e.g. 'tenants/acme/apps/web'
    status     integer NOT NULL
);
