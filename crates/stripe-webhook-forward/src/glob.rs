//! `FORWARD_TYPES`: globs on the event type.
//!
//! Written here rather than taken from a crate (globset, wildmatch): event types are dotted ASCII
//! names and the only wildcard is `*` (any run of characters, dots included), a dozen lines; a
//! path-glob crate would bring rules (`/`, `**`, classes) that mean nothing for a type.

/// Which event types are forwarded: any of a list of globs, or every type when the list is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TypeFilter {
    globs: Vec<String>,
}

impl TypeFilter {
    /// Parses a comma-separated list of globs (blank: every type).
    ///
    /// # Errors
    /// A glob with a character other than ASCII letters, digits, `.`, `_`, `-` and `*`.
    pub fn parse(list: &str) -> Result<TypeFilter, String> {
        let globs: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        for (i, glob) in globs.iter().enumerate() {
            if !glob
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*'))
            {
                return Err(format!(
                    "element {} ({glob:?}) may hold only letters, digits, `.`, `_`, `-` and `*`",
                    i + 1
                ));
            }
        }
        Ok(TypeFilter { globs })
    }

    /// Whether every type passes (no globs given).
    pub fn is_all(&self) -> bool {
        self.globs.is_empty()
    }

    /// Whether `event_type` is forwarded.
    pub fn matches(&self, event_type: &str) -> bool {
        self.is_all() || self.globs.iter().any(|g| glob_match(g, event_type))
    }
}

/// Whether `text` matches `glob`, where `*` matches any run of characters (none included).
fn glob_match(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_types() {
        let f = TypeFilter::parse("invoice.*, charge.succeeded,*.deleted").unwrap();
        assert!(f.matches("invoice.paid"));
        assert!(f.matches("invoice.payment_failed"));
        assert!(f.matches("charge.succeeded"));
        assert!(f.matches("customer.subscription.deleted"));
        assert!(!f.matches("charge.refunded"));
        assert!(!f.matches("invoiceitem.created"));
        assert!(!f.matches("charge.succeeded.extra"));
        assert!(TypeFilter::parse("").unwrap().matches("anything.at_all"));
        assert!(TypeFilter::parse(" , ").unwrap().is_all());
        for (glob, text, yes) in [
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            (
                "v1.*.meter.*",
                "v1.billing.meter.error_report_triggered",
                true,
            ),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_match(glob, text), yes, "{glob} {text}");
        }
        let e = TypeFilter::parse("invoice.*,bad type").unwrap_err();
        assert!(e.starts_with("element 2"), "{e}");
    }
}
