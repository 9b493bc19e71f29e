-- The archive as a table: one row per archived delivery (envelope v1, one JSON object per line).
-- Replace YOUR_BUCKET (twice) with the stack's BucketName output. No MSCK REPAIR / ALTER TABLE ADD
-- PARTITION needed: partition projection computes the year/month/day partitions from the layout.
-- Every row carries `id`; Stripe and Firehose deliver at least once, so dedupe on it (see queries/).
CREATE EXTERNAL TABLE IF NOT EXISTS stripe_webhooks.events (
  `v` int COMMENT 'envelope version (1)',
  `timestamp` string COMMENT 'receipt time, RFC 3339 UTC with milliseconds: from_iso8601_timestamp("timestamp")',
  `id` string COMMENT 'event id, evt_...; not unique: dedupe on it',
  `type` string COMMENT 'event type, e.g. charge.succeeded or v1.billing.meter.error_report_triggered',
  `object` string COMMENT 'event (snapshot) or v2.core.event (thin)',
  `created` string COMMENT 'as the event has it: Unix seconds for snapshot events, ISO 8601 for thin events',
  `livemode` boolean,
  `api_version` string,
  `account` string COMMENT 'Connect account, or null',
  `data` string COMMENT 'the event data member as JSON text (null for thin events): json_extract_scalar(data, ''$.object.amount'')',
  `raw` string COMMENT 'the exact verified request body (null when the server runs with ENVELOPE_INCLUDE_RAW=false)',
  `signature` string COMMENT 'the Stripe-Signature header that verified raw',
  `oversize` struct<`bucket`:string,`key`:string,`bytes`:bigint,`sha256`:string> COMMENT 'pointer to the body in S3 when the record exceeded Firehose''s limit, else null'
)
COMMENT 'Stripe webhooks received by stripe-webhook-server, envelope v1'
PARTITIONED BY (
  `year` string,
  `month` string,
  `day` string
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('ignore.malformed.json' = 'false')
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://YOUR_BUCKET/webhooks/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.year.type' = 'integer',
  'projection.year.range' = '2024,2099',
  'projection.year.digits' = '4',
  'projection.month.type' = 'integer',
  'projection.month.range' = '1,12',
  'projection.month.digits' = '2',
  'projection.day.type' = 'integer',
  'projection.day.range' = '1,31',
  'projection.day.digits' = '2',
  'storage.location.template' = 's3://YOUR_BUCKET/webhooks/year=${year}/month=${month}/day=${day}/'
);
