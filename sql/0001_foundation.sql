-- The installation itself: one row, created with the schema, so every
-- Manager node sharing this database reports the same installation id.

CREATE TABLE installation (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    singleton   boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO installation DEFAULT VALUES;
