-- Webhooks per UTC day (Firehose arrival date, the partition) and event type over the last 30 days:
-- distinct events, and deliveries (more deliveries than events: Stripe retried, or a sink or
-- Firehose delivered a record twice; readers dedupe on id).
-- The `year >=` predicate is a plain comparison on a partition column, so Athena prunes with it.
SELECT
  year,
  month,
  day,
  type,
  count(DISTINCT id) AS events,
  count(*) AS deliveries
FROM stripe_webhooks.events
WHERE year >= CAST(year(current_date - INTERVAL '30' DAY) AS varchar)
  AND CAST(concat(year, '-', month, '-', day) AS date) >= current_date - INTERVAL '30' DAY
GROUP BY year, month, day, type
ORDER BY year, month, day, events DESC, type;
