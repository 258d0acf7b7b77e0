-- Verification gates query the Prometheus of a stage's cluster: its URL
-- and an optional bearer token, sealed like the kubeconfig (associated
-- data `cluster-prometheus:<id>`) and never read back out but by the
-- Prometheus client.
ALTER TABLE clusters ADD COLUMN prometheus_url TEXT;
ALTER TABLE clusters ADD COLUMN prometheus_token_sealed TEXT;
