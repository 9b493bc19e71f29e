-- Run once per account and region (Athena console, or `aws athena start-query-execution`).
CREATE DATABASE IF NOT EXISTS stripe_webhooks
COMMENT 'Stripe webhook archive (envelope v1 NDJSON written by Firehose)';
