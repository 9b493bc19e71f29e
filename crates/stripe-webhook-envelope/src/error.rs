//! Why a verified body cannot be archived.

/// Why [`encode`](crate::encode) refused a body.
///
/// Every variant means the body verified but is not a Stripe event: answer 400 and log it
/// loudly (a misconfigured sender, not an attack). [`EnvelopeError::label`] is a stable label
/// for metrics. Messages name positions and kinds, never payload content.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body is empty or only whitespace.
    #[error("the body is empty")]
    EmptyBody,
    /// The body is not valid JSON (or not valid UTF-8).
    #[error("the body is not valid JSON: {what} at line {line}, column {column} (byte {offset})")]
    NotJson {
        /// What was wrong.
        what: &'static str,
        /// Byte offset of the problem.
        offset: usize,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in bytes) of the problem.
        column: usize,
    },
    /// The body is valid JSON but not an object.
    #[error("the body is {found}, not a JSON object")]
    NotAnObject {
        /// The kind of value found (`an array`, `a string`, …).
        found: &'static str,
    },
    /// The event has no `id` member.
    #[error("the event has no `id`")]
    MissingId,
    /// The event's `id` is not a string.
    #[error("the event's `id` is {found}, not a string")]
    IdNotString {
        /// The kind of value found.
        found: &'static str,
    },
    /// The event has no `type` member.
    #[error("the event has no `type`")]
    MissingType,
    /// The event's `type` is not a string.
    #[error("the event's `type` is {found}, not a string")]
    TypeNotString {
        /// The kind of value found.
        found: &'static str,
    },
    /// A member the envelope reads (`id`, `type`, `data`, `created`, …) appears twice, so the
    /// event is ambiguous. Stripe never sends duplicate keys.
    #[error("the event has more than one `{field}` member")]
    DuplicateField {
        /// The duplicated member.
        field: &'static str,
    },
}

impl EnvelopeError {
    /// A stable snake_case label for metrics and structured logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::EmptyBody => "empty_body",
            Self::NotJson { .. } => "not_json",
            Self::NotAnObject { .. } => "not_an_object",
            Self::MissingId => "missing_id",
            Self::IdNotString { .. } => "id_not_string",
            Self::MissingType => "missing_type",
            Self::TypeNotString { .. } => "type_not_string",
            Self::DuplicateField { .. } => "duplicate_field",
        }
    }

    /// A [`EnvelopeError::NotJson`] for a problem at `offset` of `body`.
    pub(crate) fn not_json(body: &[u8], what: &'static str, offset: usize) -> Self {
        let before = &body[..offset.min(body.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        Self::NotJson {
            what,
            offset,
            line,
            column: offset - line_start + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let e = EnvelopeError::not_json(b"{\n  \"a\": x\n}", "expected a value", 9);
        assert_eq!(
            e,
            EnvelopeError::NotJson {
                what: "expected a value",
                offset: 9,
                line: 2,
                column: 8
            }
        );
        assert_eq!(
            e.to_string(),
            "the body is not valid JSON: expected a value at line 2, column 8 (byte 9)"
        );
        assert_eq!(e.label(), "not_json");
    }
}
