-- Which Manager node holds a cluster's Operator stream, for the kube proxy
-- (docs/adr/0005): the owner node registers the URL of its kube proxy
-- (kubenova_kube_proxy_node_url) when the stream's hello is accepted and
-- removes it when the stream ends; another node relays a request for that
-- cluster there.  One row per cluster: the newest stream's node wins.
CREATE TABLE kube_proxy_routes (
    cluster     text COLLATE "C" PRIMARY KEY
                REFERENCES clusters (name) ON DELETE CASCADE,
    node_url    text        NOT NULL CHECK (node_url ~ '^https?://[^\s]+$'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
