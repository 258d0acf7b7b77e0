-- What a measurement or attempt asked: a gate's query, or a smoke
-- request's URL, with the stage's namespace, Deployment, container and
-- pod-template hashes filled in (the plan holds only the template). The
-- work order page links a gate's query to the cluster's Prometheus.
ALTER TABLE verify_results ADD COLUMN asked TEXT NOT NULL DEFAULT '';
