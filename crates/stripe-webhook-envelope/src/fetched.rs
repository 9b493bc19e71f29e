//! Fetched records (envelope v2): an event fetched from Stripe's API, not received as a webhook.
//!
//! A fetched record says where its body came from in its `fetched` member ([`Fetched`]): the
//! API it was fetched from, the request, which key made it (a key id, never the key), the
//! connected account and the `Stripe-Version` of the request, and Stripe's request id. It has
//! no `signature`: nothing Stripe signed was received. Its `timestamp` is when it was fetched.
//! Written by [`encode_fetched`](crate::encode_fetched), read back as
//! [`StoredBody::Fetched`](crate::read::StoredBody::Fetched).

use std::borrow::Cow;

use crate::escape;

/// The envelope version of fetched records (`"v":2`); webhook records stay version 1.
pub const FETCHED_ENVELOPE_VERSION: u64 = 2;

/// The provenance of a fetched record: the `fetched` member of an envelope v2 line.
///
/// Every member is a JSON string (`account`, `stripe_version` and `request_id` may be `null`),
/// written in this order:
///
/// ```text
/// "fetched":{"api":"https://api.stripe.com","request":"GET /v1/events/evt_1",
///            "key":"rk_live_...abcd","account":null,"stripe_version":null,"request_id":"req_1"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched<'a> {
    /// The API base the request went to, e.g. `https://api.stripe.com` (another origin means
    /// a proxy or a test double answered, not necessarily Stripe).
    pub api: Cow<'a, str>,
    /// The request that returned the body: method and path, e.g. `GET /v1/events/evt_1` or
    /// `GET /v2/core/events/evt_1`.
    pub request: Cow<'a, str>,
    /// Which API key made the request: a key id (its kind prefix and last four characters, e.g.
    /// `rk_live_...abcd`), never the key itself.
    pub key: Cow<'a, str>,
    /// The connected account the request was made for (its `Stripe-Account` or
    /// `Stripe-Context` header), or `None` for the key's own account.
    pub account: Option<Cow<'a, str>>,
    /// The `Stripe-Version` header the request sent, if any.
    pub stripe_version: Option<Cow<'a, str>>,
    /// Stripe's `Request-Id` of the response, if it had one.
    pub request_id: Option<Cow<'a, str>>,
}

impl Fetched<'_> {
    /// The same provenance, owning its strings.
    pub fn into_owned(self) -> Fetched<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        Fetched {
            api: own(self.api),
            request: own(self.request),
            key: own(self.key),
            account: self.account.map(own),
            stripe_version: self.stripe_version.map(own),
            request_id: self.request_id.map(own),
        }
    }

    /// Appends the member's value, the JSON object, to `out`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        let optional = |out: &mut Vec<u8>, value: &Option<Cow<'_, str>>| match value {
            Some(s) => escape::json_string_into(out, s),
            None => out.extend_from_slice(b"null"),
        };
        out.extend_from_slice(b"{\"api\":");
        escape::json_string_into(out, &self.api);
        out.extend_from_slice(b",\"request\":");
        escape::json_string_into(out, &self.request);
        out.extend_from_slice(b",\"key\":");
        escape::json_string_into(out, &self.key);
        out.extend_from_slice(b",\"account\":");
        optional(out, &self.account);
        out.extend_from_slice(b",\"stripe_version\":");
        optional(out, &self.stripe_version);
        out.extend_from_slice(b",\"request_id\":");
        optional(out, &self.request_id);
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_members_in_order_with_nulls() {
        let fetched = Fetched {
            api: "https://api.stripe.com".into(),
            request: "GET /v1/events/evt_\"1".into(),
            key: "rk_live_...abcd".into(),
            account: Some("acct_1".into()),
            stripe_version: None,
            request_id: None,
        };
        let mut out = Vec::new();
        fetched.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"api":"https://api.stripe.com","request":"GET /v1/events/evt_\"1","key":"rk_live_...abcd","account":"acct_1","stripe_version":null,"request_id":null}"#
        );
        let owned = fetched.clone().into_owned();
        assert_eq!(owned, fetched);
    }
}
