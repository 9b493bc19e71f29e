//! Strict Stripe webhook signature verification (being written: see issue 2).
