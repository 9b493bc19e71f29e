//! The Lambda's metrics: a [`metrics`] recorder that keeps what one invocation records and writes
//! it to stdout as CloudWatch Embedded Metric Format when the invocation ends
//! ([`EmfRecorder::flush`]). CloudWatch turns each document into metrics without any API call.
//!
//! The names, units and labels are the server's (`stripe-webhook-metrics`): each label becomes a
//! dimension, and one document is written per label set. Every document has one more dimension,
//! first: [`FUNCTION_DIMENSION`] (`function`), the name of the function that wrote it
//! ([`EmfRecorder::from_env`]: `AWS_LAMBDA_FUNCTION_NAME`, or [`LOCAL_FUNCTION`] outside Lambda),
//! so two functions in one account and region (staging and production) publish separate series
//! and each one's alarms see its own traffic only. Counters are the count since the last flush,
//! gauges their last value, histograms the values recorded (at most 100 per document, as EMF
//! allows; more are split across documents).
//!
//! ```
//! use stripe_webhook_lambda::emf::EmfRecorder;
//!
//! let recorder = EmfRecorder::new("stripe-webhooks-staging");
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("stripe_webhook_requests_total", "outcome" => "accepted").increment(1);
//! });
//! let mut out = Vec::new();
//! recorder.flush(&mut out, 1_700_000_000_000, &[]).unwrap();
//! let document: serde_json::Value = serde_json::from_slice(&out).unwrap();
//! let directive = &document["_aws"]["CloudWatchMetrics"][0];
//! assert_eq!(directive["Namespace"], "StripeWebhookArchive");
//! assert_eq!(directive["Dimensions"], serde_json::json!([["function", "outcome"]]));
//! assert_eq!(document["function"], "stripe-webhooks-staging");
//! assert_eq!(document["outcome"], "accepted");
//! assert_eq!(document["stripe_webhook_requests_total"], 1);
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{Map, Value, json};

/// The CloudWatch namespace the metrics are published in.
pub const NAMESPACE: &str = "StripeWebhookArchive";

/// The dimension naming the function, first in every document's dimension set.
pub const FUNCTION_DIMENSION: &str = "function";

/// The environment variable Lambda sets to the function's name.
pub const FUNCTION_NAME_VAR: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// The [`FUNCTION_DIMENSION`] value when [`FUNCTION_NAME_VAR`] is unset or empty (outside Lambda:
/// `cargo lambda watch`, tests).
pub const LOCAL_FUNCTION: &str = "local";

/// The most values EMF takes for one metric in one document.
const MAX_VALUES: usize = 100;

/// Label name/value pairs, sorted by name.
type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Recorded {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

#[derive(Debug, Default)]
struct Registry {
    metrics: BTreeMap<(Labels, String), Recorded>,
    /// Counter series the next flush writes at 0 where nothing was counted for them.
    zeros: Vec<(Labels, String)>,
}

/// The recorder of one function. Cheap to clone; install one with [`metrics::set_global_recorder`].
#[derive(Clone, Debug)]
pub struct EmfRecorder {
    registry: Arc<Mutex<Registry>>,
    function: Arc<str>,
}

struct Handle {
    registry: Arc<Mutex<Registry>>,
    id: (Labels, String),
}

impl Handle {
    /// Applies `f` to this metric's entry; the key is copied only when the entry is new.
    fn with(&self, f: impl FnOnce(&mut Recorded)) {
        let mut registry = lock(&self.registry);
        if let Some(entry) = registry.metrics.get_mut(&self.id) {
            f(entry);
            return;
        }
        let mut entry = Recorded::Counter(0);
        f(&mut entry);
        registry.metrics.insert(self.id.clone(), entry);
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.with(|r| match r {
            Recorded::Counter(n) => *n += value,
            other => *other = Recorded::Counter(value),
        });
    }

    fn absolute(&self, value: u64) {
        self.with(|r| *r = Recorded::Counter(value));
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.with(|r| match r {
            Recorded::Gauge(g) => *g += value,
            other => *other = Recorded::Gauge(value),
        });
    }

    fn decrement(&self, value: f64) {
        GaugeFn::increment(self, -value);
    }

    fn set(&self, value: f64) {
        self.with(|r| *r = Recorded::Gauge(value));
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.with(|r| match r {
            Recorded::Histogram(values) => values.push(value),
            other => *other = Recorded::Histogram(vec![value]),
        });
    }
}

impl EmfRecorder {
    /// A recorder whose documents carry `function` as the [`FUNCTION_DIMENSION`] value.
    pub fn new(function: &str) -> Self {
        Self {
            registry: Arc::default(),
            function: function.into(),
        }
    }

    /// A recorder for the running function: named by [`FUNCTION_NAME_VAR`], or [`LOCAL_FUNCTION`]
    /// when that is unset or empty.
    pub fn from_env() -> Self {
        let name = std::env::var(FUNCTION_NAME_VAR).ok();
        Self::new(function_or_local(name.as_deref()))
    }

    /// Has the next flush (only the next) write each of these counter series at 0 where nothing
    /// was counted for it, so CloudWatch has a data point for every series its alarms query from
    /// a sandbox's first invocation instead of "no data". Flushes skip counters at 0 otherwise:
    /// each series written is a custom metric.
    pub fn zero_at_next_flush(
        &self,
        series: impl IntoIterator<Item = stripe_webhook_core::metrics::Series>,
    ) {
        let mut registry = lock(&self.registry);
        for (name, label) in series {
            let labels: Labels = label
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into_iter()
                .collect();
            registry.zeros.push((labels, name.to_owned()));
        }
    }

    fn handle(&self, key: &Key) -> Arc<Handle> {
        let mut labels: Labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        Arc::new(Handle {
            registry: Arc::clone(&self.registry),
            id: (labels, key.name().to_owned()),
        })
    }

    /// Writes what was recorded since the last flush as EMF documents, one JSON line each, stamped
    /// `timestamp_ms` and carrying `properties` (e.g. the request id) as plain members; then
    /// forgets counters and histograms (gauges keep their value).
    ///
    /// # Errors
    /// If writing fails.
    pub fn flush(
        &self,
        out: &mut impl Write,
        timestamp_ms: i64,
        properties: &[(&str, &str)],
    ) -> std::io::Result<()> {
        let mut groups: BTreeMap<Labels, Vec<(String, Value)>> = BTreeMap::new();
        {
            let mut registry = lock(&self.registry);
            let Registry { metrics, zeros } = &mut *registry;
            for id in zeros.drain(..) {
                if matches!(metrics.get(&id), None | Some(Recorded::Counter(0))) {
                    let (labels, name) = id;
                    groups.entry(labels).or_default().push((name, json!(0)));
                }
            }
            for ((labels, name), recorded) in metrics.iter_mut() {
                let value = match recorded {
                    Recorded::Counter(0) => continue,
                    Recorded::Counter(n) => json!(std::mem::take(n)),
                    Recorded::Gauge(g) => json!(*g),
                    Recorded::Histogram(values) if values.is_empty() => continue,
                    Recorded::Histogram(values) => json!(std::mem::take(values)),
                };
                groups
                    .entry(labels.clone())
                    .or_default()
                    .push((name.clone(), value));
            }
        }
        for (labels, metrics) in groups {
            let documents = documents(&self.function, &labels, metrics, timestamp_ms, properties);
            for document in documents {
                serde_json::to_writer(&mut *out, &document)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }
}

/// The function's name, or [`LOCAL_FUNCTION`] for none (unset, not Unicode) or an empty one.
fn function_or_local(name: Option<&str>) -> &str {
    match name {
        Some(name) if !name.is_empty() => name,
        _ => LOCAL_FUNCTION,
    }
}

/// The EMF documents of one label set (several when a histogram has more than 100 values), with
/// the function's dimension first.
fn documents(
    function: &str,
    labels: &Labels,
    metrics: Vec<(String, Value)>,
    timestamp_ms: i64,
    properties: &[(&str, &str)],
) -> Vec<Value> {
    let mut pages: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (name, value) in metrics {
        match value {
            Value::Array(values) => {
                for (i, chunk) in values.chunks(MAX_VALUES).enumerate() {
                    if pages.len() <= i {
                        pages.push(Vec::new());
                    }
                    pages[i].push((name.clone(), Value::Array(chunk.to_vec())));
                }
            }
            scalar => pages[0].push((name, scalar)),
        }
    }
    let dimensions: Vec<&str> = std::iter::once(FUNCTION_DIMENSION)
        .chain(labels.iter().map(|(k, _)| k.as_str()))
        .collect();
    pages
        .into_iter()
        .filter(|page| !page.is_empty())
        .map(|page| {
            let definitions: Vec<Value> = page
                .iter()
                .map(|(name, _)| json!({"Name": name, "Unit": unit_of(name)}))
                .collect();
            let mut document = Map::new();
            document.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [dimensions],
                        "Metrics": definitions,
                    }],
                }),
            );
            document.insert(FUNCTION_DIMENSION.into(), json!(function));
            for (k, v) in labels {
                document.insert(k.clone(), json!(v));
            }
            for (k, v) in properties {
                document.insert((*k).to_owned(), json!(v));
            }
            for (name, value) in page {
                document.insert(name, value);
            }
            Value::Object(document)
        })
        .collect()
}

/// The CloudWatch unit of a metric, from its definition.
fn unit_of(name: &str) -> &'static str {
    match stripe_webhook_metrics::find(name).map(|m| m.unit) {
        Some(Unit::Seconds) => "Seconds",
        Some(Unit::Milliseconds) => "Milliseconds",
        Some(Unit::Bytes) => "Bytes",
        Some(Unit::Count) => "Count",
        _ => "None",
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stripe_webhook_metrics::{
        ARCHIVED_BYTES_TOTAL, REQUEST_SECONDS, REQUESTS_TOTAL, SINK_PUT_SECONDS,
    };

    const FUNCTION: &str = "stripe-webhooks-staging";

    fn flushed(recorder: &EmfRecorder) -> Vec<Value> {
        let mut out = Vec::new();
        recorder
            .flush(&mut out, 1_700_000_000_000, &[("request_id", "req-1")])
            .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn zero_series_are_written_once_where_nothing_was_counted() {
        let recorder = EmfRecorder::new(FUNCTION);
        recorder.zero_at_next_flush([
            (REQUESTS_TOTAL, Some(("outcome", "accepted"))),
            (REQUESTS_TOTAL, Some(("outcome", "bad_signature"))),
            (ARCHIVED_BYTES_TOTAL, None),
        ]);
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(REQUESTS_TOTAL, "outcome" => "accepted").increment(3);
        });
        let first = flushed(&recorder);
        let value = |docs: &[Value], outcome: Option<&str>, name: &str| {
            docs.iter()
                .find(|d| {
                    d.get("outcome").and_then(Value::as_str) == outcome && d.get(name).is_some()
                })
                .map(|d| d[name].clone())
        };
        assert_eq!(
            value(&first, Some("accepted"), REQUESTS_TOTAL),
            Some(json!(3))
        );
        assert_eq!(
            value(&first, Some("bad_signature"), REQUESTS_TOTAL),
            Some(json!(0))
        );
        assert_eq!(value(&first, None, ARCHIVED_BYTES_TOTAL), Some(json!(0)));
        // Only once: later flushes write what was counted.
        assert!(flushed(&recorder).is_empty());
    }

    #[test]
    fn one_document_per_label_set_with_units_and_dimensions() {
        let recorder = EmfRecorder::new(FUNCTION);
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(REQUESTS_TOTAL, "outcome" => "accepted").increment(2);
            metrics::counter!(REQUESTS_TOTAL, "outcome" => "bad_signature").increment(1);
            metrics::histogram!(REQUEST_SECONDS, "outcome" => "accepted").record(0.004);
            metrics::histogram!(SINK_PUT_SECONDS, "sink" => "firehose", "result" => "ok")
                .record(0.03);
            metrics::counter!(ARCHIVED_BYTES_TOTAL).increment(512);
        });
        let docs = flushed(&recorder);
        assert_eq!(docs.len(), 4, "{docs:?}");
        let accepted = docs.iter().find(|d| d["outcome"] == "accepted").unwrap();
        assert_eq!(accepted[REQUESTS_TOTAL], 2);
        assert_eq!(accepted[REQUEST_SECONDS], json!([0.004]));
        assert_eq!(accepted["request_id"], "req-1");
        let aws = &accepted["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(aws["Namespace"], NAMESPACE);
        assert_eq!(aws["Dimensions"], json!([["function", "outcome"]]));
        let units: BTreeMap<String, String> = aws["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap().into(),
                    m["Unit"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(units[REQUESTS_TOTAL], "Count");
        assert_eq!(units[REQUEST_SECONDS], "Seconds");
        // The function dimension comes first, then the labels in name order.
        let put = docs.iter().find(|d| d["sink"] == "firehose").unwrap();
        assert_eq!(
            put["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "result", "sink"]])
        );
        // A metric without labels is still the function's own series.
        let bytes = docs
            .iter()
            .find(|d| d.get(ARCHIVED_BYTES_TOTAL).is_some())
            .unwrap();
        assert_eq!(
            bytes["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function"]])
        );
        // Every document carries the dimension's value.
        assert!(docs.iter().all(|d| d["function"] == FUNCTION), "{docs:?}");

        // Counters and histograms restart at each flush; nothing new, nothing written.
        assert!(flushed(&recorder).is_empty());
    }

    #[test]
    fn two_functions_write_separate_series() {
        let staging = EmfRecorder::new("stripe-webhooks-staging");
        let production = EmfRecorder::new("stripe-webhooks-production");
        for recorder in [&staging, &production] {
            metrics::with_local_recorder(recorder, || {
                metrics::counter!(REQUESTS_TOTAL, "outcome" => "storage_failed").increment(1);
            });
        }
        let (staging, production) = (flushed(&staging), flushed(&production));
        assert_eq!(staging.len(), 1);
        assert_eq!(production.len(), 1);
        // Same namespace, name, dimension names and label value: only `function` tells them apart.
        let series = |doc: &Value| {
            (
                doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone(),
                doc["function"].clone(),
                doc["outcome"].clone(),
            )
        };
        assert_eq!(
            series(&staging[0]),
            (
                json!([["function", "outcome"]]),
                json!("stripe-webhooks-staging"),
                json!("storage_failed")
            )
        );
        assert_eq!(series(&production[0]).1, "stripe-webhooks-production");
        assert_ne!(series(&staging[0]), series(&production[0]));
    }

    #[test]
    fn the_function_is_named_by_lambda_or_local() {
        assert_eq!(
            function_or_local(Some("stripe-webhooks")),
            "stripe-webhooks"
        );
        assert_eq!(function_or_local(Some("")), LOCAL_FUNCTION);
        assert_eq!(function_or_local(None), LOCAL_FUNCTION);
    }

    #[test]
    fn no_metric_has_a_label_named_like_the_function_dimension() {
        // A label `function` would collide with the dimension (one member, two meanings).
        for metric in stripe_webhook_metrics::ALL {
            assert!(
                !metric.labels.contains(&FUNCTION_DIMENSION),
                "{} has a label {FUNCTION_DIMENSION:?}",
                metric.name
            );
        }
    }

    #[test]
    fn histograms_over_a_hundred_values_are_split() {
        let recorder = EmfRecorder::new(FUNCTION);
        metrics::with_local_recorder(&recorder, || {
            for i in 0..250 {
                metrics::histogram!(REQUEST_SECONDS, "outcome" => "accepted").record(f64::from(i));
            }
        });
        let docs = flushed(&recorder);
        let lens: Vec<usize> = docs
            .iter()
            .map(|d| d[REQUEST_SECONDS].as_array().unwrap().len())
            .collect();
        assert_eq!(lens, [100, 100, 50]);
        // Each part is a complete document of the same series.
        for doc in &docs {
            assert_eq!(doc["function"], FUNCTION);
            assert_eq!(
                doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["function", "outcome"]])
            );
        }
    }
}
