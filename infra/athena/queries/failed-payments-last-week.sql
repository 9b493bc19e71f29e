-- Failed payments received in the last 7 days, each event once (the first delivery of each id).
-- charge.failed carries failure_code/failure_message; payment_intent.payment_failed carries
-- last_payment_error. Amounts are in the currency's smallest unit.
WITH failed AS (
  SELECT
    id,
    type,
    created,
    data,
    row_number() OVER (PARTITION BY id ORDER BY "timestamp") AS nth
  FROM stripe_webhooks.events
  WHERE type IN ('payment_intent.payment_failed', 'charge.failed')
    AND year >= CAST(year(current_date - INTERVAL '7' DAY) AS varchar)
    AND CAST(concat(year, '-', month, '-', day) AS date) >= current_date - INTERVAL '7' DAY
)
SELECT
  id AS event_id,
  type,
  from_unixtime(CAST(created AS bigint)) AS created_at,
  json_extract_scalar(data, '$.object.id') AS object_id,
  json_extract_scalar(data, '$.object.customer') AS customer,
  CAST(json_extract_scalar(data, '$.object.amount') AS bigint) AS amount,
  upper(json_extract_scalar(data, '$.object.currency')) AS currency,
  coalesce(
    json_extract_scalar(data, '$.object.failure_code'),
    json_extract_scalar(data, '$.object.last_payment_error.code')
  ) AS failure_code,
  coalesce(
    json_extract_scalar(data, '$.object.failure_message'),
    json_extract_scalar(data, '$.object.last_payment_error.message')
  ) AS failure_message
FROM failed
WHERE nth = 1
ORDER BY created_at DESC, event_id;
