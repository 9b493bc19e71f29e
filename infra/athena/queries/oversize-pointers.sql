-- Events whose record would have exceeded Firehose's 1,024,000-byte limit. Their archived row is a
-- pointer (data null): the exact body is the S3 object at body_uri, written before the 200.
SELECT
  id,
  type,
  "timestamp" AS received_at,
  oversize.bucket AS body_bucket,
  oversize.key AS body_key,
  oversize.bytes AS body_bytes,
  oversize.sha256 AS body_sha256,
  concat('s3://', oversize.bucket, '/', oversize.key) AS body_uri
FROM stripe_webhooks.events
WHERE oversize IS NOT NULL
ORDER BY "timestamp", id;
