-- The cluster secrets are retired (issue 6): an Operator authenticates only
-- with the certificate the Manager's CA signed when it registered with its
-- join token (0007_registration.sql, cluster_certificates).  The hashes of
-- the secrets go with them.
ALTER TABLE clusters DROP COLUMN secret_hash;
