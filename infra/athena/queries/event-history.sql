-- Every archived delivery of one event, oldest first. Bind the event id as the only parameter:
--   aws athena start-query-execution --query-string file://event-history.sql \
--     --execution-parameters "'evt_1Abc...'" --work-group primary
-- Stripe retries an event until an endpoint answers 2xx, and at-least-once delivery downstream can
-- repeat a record, so one id may have several rows. signed_at_unix is the t= of the Stripe-Signature
-- that verified each delivery (Stripe signs every retry anew); same_body_as_first shows retries carry
-- the same event. Add a year/month/day filter to scan less when you know roughly when it happened.
SELECT
  id,
  type,
  row_number() OVER (ORDER BY "timestamp", signature) AS delivery,
  count(*) OVER () AS deliveries,
  "timestamp" AS received_at,
  CAST(regexp_extract(signature, 't=([0-9]+)', 1) AS bigint) AS signed_at_unix,
  raw = first_value(raw) OVER (ORDER BY "timestamp", signature) AS same_body_as_first,
  year,
  month,
  day,
  created,
  livemode,
  api_version,
  account
FROM stripe_webhooks.events
WHERE id = ?
ORDER BY "timestamp", signature;
