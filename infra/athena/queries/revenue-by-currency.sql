-- Gross volume of succeeded charges received this year, by currency, each event counted once
-- (the first delivery of each id). Amounts are in the currency's smallest unit (cents; JPY has
-- none): divide in the application, per currency. Test and live mode are kept apart.
WITH charges AS (
  SELECT
    id,
    livemode,
    data,
    row_number() OVER (PARTITION BY id ORDER BY "timestamp") AS nth
  FROM stripe_webhooks.events
  WHERE type = 'charge.succeeded'
    AND year = CAST(year(current_date) AS varchar)
)
SELECT
  livemode,
  upper(json_extract_scalar(data, '$.object.currency')) AS currency,
  count(*) AS charges,
  sum(CAST(json_extract_scalar(data, '$.object.amount') AS bigint)) AS amount
FROM charges
WHERE nth = 1
GROUP BY livemode, upper(json_extract_scalar(data, '$.object.currency'))
ORDER BY livemode, currency;
