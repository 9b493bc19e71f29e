//! One record as an SQS message: body, attributes, FIFO ids, and its size as SQS counts it.
//! Specified in `docs/forwarding-sqs.md`.

use serde::Deserialize;
use stripe_webhook_sink::Record;

/// The message attribute holding the event id (`evt_…`).
pub const ATTR_EVENT_ID: &str = "stripe_event_id";
/// The message attribute holding the event type (`charge.succeeded`, …).
pub const ATTR_EVENT_TYPE: &str = "stripe_event_type";
/// The attribute data type of both attributes.
const STRING: &str = "String";
/// The longest `MessageGroupId` / `MessageDeduplicationId` SQS takes.
const MAX_ID_CHARS: usize = 128;

/// What one `SendMessageBatch` entry carries for a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The envelope line, byte for byte (trailing `\n` included).
    pub body: String,
    /// The event id (attribute, and the FIFO deduplication id).
    pub event_id: String,
    /// The event type (attribute).
    pub event_type: String,
    /// FIFO queues only: the event's `data.object.id`, else the event id.
    pub group_id: Option<String>,
}

impl Message {
    /// The message for `record`; FIFO ids when `fifo`.
    pub fn new(record: &Record, fifo: bool) -> Message {
        Message {
            body: String::from_utf8_lossy(record.line()).into_owned(),
            event_id: record.id().to_owned(),
            event_type: record.event_type().to_owned(),
            group_id: fifo.then(|| group_id(record)),
        }
    }

    /// The size SQS counts against its message limit: the body plus, for each attribute, its name,
    /// data type and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + ATTR_EVENT_ID.len()
            + STRING.len()
            + self.event_id.len()
            + ATTR_EVENT_TYPE.len()
            + STRING.len()
            + self.event_type.len()
    }

    /// Whether SQS can carry the body within `max_bytes`: small enough, and only characters SQS
    /// allows (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`; a JSON body
    /// may hold U+FFFE or U+FFFF unescaped, which SQS refuses).
    pub fn fits(&self, max_bytes: usize) -> bool {
        self.size() <= max_bytes && self.body.chars().all(allowed)
    }

    /// The FIFO deduplication id: the event id (SQS drops a resend of the same event within its
    /// five-minute window).
    pub fn deduplication_id(&self) -> Option<String> {
        self.group_id.as_ref().map(|_| fifo_id(&self.event_id))
    }
}

fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `data.object.id` of the verified body, else the event id; cut to what SQS takes.
fn group_id(record: &Record) -> String {
    #[derive(Deserialize)]
    struct Body {
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        object: Option<Object>,
    }
    #[derive(Deserialize)]
    struct Object {
        id: Option<String>,
    }
    let object_id = serde_json::from_slice::<Body>(record.body())
        .ok()
        .and_then(|b| b.data?.object?.id)
        .filter(|id| !id.is_empty());
    fifo_id(object_id.as_deref().unwrap_or(record.id()))
}

/// An id as SQS takes it for FIFO ids: printable ASCII (`!` to `~`), at most 128 characters;
/// anything else becomes `_`. Stripe's ids are always taken unchanged.
fn fifo_id(id: &str) -> String {
    id.chars()
        .take(MAX_ID_CHARS)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use stripe_webhook_envelope::{EnvelopeOptions, ReceivedAt, encode};

    fn record(body: &str) -> Record {
        encode(
            Bytes::from(body.to_owned()),
            "t=1,v1=00",
            ReceivedAt::from_unix_millis(1_700_000_000_000),
            &EnvelopeOptions::default(),
        )
        .expect("encodes")
    }

    #[test]
    fn the_body_is_the_envelope_line_and_fifo_ids_follow_the_object() {
        let r = record(
            r#"{"id":"evt_1","object":"event","type":"charge.succeeded","data":{"object":{"id":"ch_9","object":"charge"}}}"#,
        );
        let m = Message::new(&r, true);
        assert_eq!(m.body.as_bytes(), &r.line()[..]);
        assert_eq!(m.event_id, "evt_1");
        assert_eq!(m.event_type, "charge.succeeded");
        assert_eq!(m.group_id.as_deref(), Some("ch_9"));
        assert_eq!(m.deduplication_id().as_deref(), Some("evt_1"));
        let standard = Message::new(&r, false);
        assert_eq!(standard.group_id, None);
        assert_eq!(standard.deduplication_id(), None);
    }

    #[test]
    fn without_an_object_id_the_group_is_the_event() {
        let thin = record(
            r#"{"id":"evt_thin","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","related_object":{"id":"mtr_1"}}"#,
        );
        assert_eq!(
            Message::new(&thin, true).group_id.as_deref(),
            Some("evt_thin")
        );
    }

    #[test]
    fn size_counts_body_and_attributes_and_refuses_what_sqs_refuses() {
        let r = record(r#"{"id":"evt_1","object":"event","type":"t","data":{}}"#);
        let m = Message::new(&r, false);
        let attrs = "stripe_event_id".len() + 6 + 5 + "stripe_event_type".len() + 6 + 1;
        assert_eq!(m.size(), r.len() + attrs);
        assert!(m.fits(m.size()));
        assert!(!m.fits(m.size() - 1));
        let odd = record(
            "{\"id\":\"evt_2\",\"object\":\"event\",\"type\":\"t\",\"data\":{\"n\":\"\u{FFFF}\"}}",
        );
        let m = Message::new(&odd, false);
        assert!(
            !m.fits(usize::MAX),
            "U+FFFF is valid JSON but not an SQS character"
        );
    }

    #[test]
    fn fifo_ids_are_printable_ascii_within_128() {
        assert_eq!(fifo_id("ch_1"), "ch_1");
        assert_eq!(fifo_id("a b\u{e9}"), "a_b_");
        assert_eq!(fifo_id(&"x".repeat(300)).len(), 128);
    }
}
