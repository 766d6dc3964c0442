-- Cluster configuration and components (issue 6): each cluster's
-- NovaClusterConfig, placed on it as desired_state kind "ClusterConfig"
-- (name: the cluster's own name, tenant: '' since it belongs to no
-- tenant), and the newest ComponentStatus its Operator reported.

ALTER TABLE desired_state DROP CONSTRAINT desired_state_kind_check;
ALTER TABLE desired_state ADD CONSTRAINT desired_state_kind_check
    CHECK (kind IN ('Tenant', 'Application', 'ClusterConfig'));

-- What PUT /clusters/{name}/config stored, normalised (every component
-- present, versions filled in); null until the first PUT.
ALTER TABLE clusters ADD COLUMN config jsonb
    CHECK (jsonb_typeof(config) = 'object');

-- The newest ComponentStatus of each cluster, as its Operator sent it
-- (components: [{name, version, state, message}]).
CREATE TABLE cluster_components (
    cluster            text COLLATE "C" PRIMARY KEY
                       REFERENCES clusters (name) ON DELETE CASCADE,
    config_generation  bigint      NOT NULL CHECK (config_generation >= 0),
    components         jsonb       NOT NULL CHECK (jsonb_typeof(components) = 'array'),
    reported_at        timestamptz NOT NULL DEFAULT now()
);
