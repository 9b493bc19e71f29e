//! Which connections the server holds when it is full, so honest webhooks get through a flood.
//!
//! - **Per source**: at most `MAX_CONNECTIONS_PER_SOURCE` connections from one peer address; a
//!   further one is closed as soon as it is accepted, before anything is read. Peers in
//!   `TRUSTED_PROXIES` are exempt: behind a proxy every client shares its address, and the proxy
//!   absorbs abusive clients.
//! - **At capacity** (`MAX_CONNECTIONS`, lowered to what the open-file limit holds): a new
//!   connection sheds the oldest connection that is waiting for a request head (an idle keep-alive
//!   one, or one trickling its head). Connections with a request in progress are never shed; if
//!   every connection has one, the new connection waits for a slot. A shed connection keeps its
//!   slot until its task has closed it, and at most [`SHED_AHEAD`] are being closed at once, so
//!   the file descriptors in use never exceed the cap by more than that.
//!
//! - **Behind a trusted proxy** every client shares the proxy's connections, so the cap applies to
//!   the client address the proxy forwarded instead ([`ClientRequests`]): at most
//!   `MAX_CONNECTIONS_PER_SOURCE` webhooks in progress per client; a further one gets 503 (`busy`,
//!   retried by Stripe) before its body is read.
//!
//! A connection counts as "in a request" from the moment hyper hands its complete head to the
//! service until its response body is dropped (fully written, or the connection is gone).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Connections admitted beyond the cap while as many shed ones are still being closed (part of
/// the file descriptors [`crate::nofile::OWN_FILES`] keeps aside).
pub(crate) const SHED_AHEAD: usize = 32;

/// The admission state shared by the accept loop and every connection.
#[derive(Debug)]
pub(crate) struct Admission {
    state: Mutex<State>,
    /// Signalled whenever a slot frees up.
    freed: Notify,
    max: usize,
    per_source: usize,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Every admitted connection, oldest first (ids grow).
    connections: BTreeMap<u64, Entry>,
    /// Connections per source address (exempt sources are not counted).
    by_source: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry {
    /// The source counted in `by_source`, if any.
    counted: Option<IpAddr>,
    /// Requests in progress (head received, response body not yet dropped).
    requests: usize,
    /// Told to close; its slot is freed once its task dropped it.
    shedding: bool,
    /// Notified to close the connection when it is shed.
    shed: Arc<Notify>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its source already holds `MAX_CONNECTIONS_PER_SOURCE` connections.
    SourceFull,
    /// Every slot holds a connection with a request in progress: wait for one to free.
    Full,
}

impl Admission {
    /// `max` connections at once, at most `per_source` from one address (0: no per-source cap).
    pub(crate) fn new(max: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            max: max.max(1),
            per_source,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `source` (`exempt`: a trusted proxy, not capped per source),
    /// shedding the oldest connection waiting for a head if the server is full.
    ///
    /// # Errors
    /// [`Refused::SourceFull`] (close it now) or [`Refused::Full`] (wait for [`Admission::freed`]
    /// and try again).
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr, exempt: bool) -> Result<Ticket, Refused> {
        let mut state = self.state();
        let counted = (!exempt && self.per_source > 0).then_some(source);
        if let Some(source) = counted
            && state.by_source.get(&source).copied().unwrap_or(0) >= self.per_source
        {
            return Err(Refused::SourceFull);
        }
        if state.connections.len() >= self.max {
            if state.connections.len() >= self.max + SHED_AHEAD {
                return Err(Refused::Full);
            }
            let Some(entry) = state
                .connections
                .values_mut()
                .find(|entry| entry.requests == 0 && !entry.shedding)
            else {
                return Err(Refused::Full);
            };
            entry.shedding = true;
            entry.shed.notify_one();
            tracing::debug!("at capacity: shed the oldest connection waiting for a request head");
        }
        let id = state.next_id;
        state.next_id += 1;
        let shed = Arc::new(Notify::new());
        state.connections.insert(
            id,
            Entry {
                counted,
                requests: 0,
                shedding: false,
                shed: Arc::clone(&shed),
            },
        );
        if let Some(source) = counted {
            *state.by_source.entry(source).or_default() += 1;
        }
        Ok(Ticket {
            admission: Arc::clone(self),
            id,
            shed,
        })
    }

    /// Resolves when a slot may have freed up (call [`Admission::admit`] again).
    pub(crate) async fn freed(&self) {
        self.freed.notified().await;
    }

    /// Connections held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().connections.len()
    }
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.connections.remove(&id)?;
        if let Some(source) = entry.counted
            && let Some(n) = self.by_source.get_mut(&source)
        {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&source);
            }
        }
        Some(entry)
    }
}

/// One admitted connection's slot; freed on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    shed: Arc<Notify>,
}

impl Ticket {
    /// Resolves when the connection was shed to make room: close it.
    pub(crate) async fn shed(&self) {
        self.shed.notified().await;
    }

    /// After [`Ticket::shed`]: `true` if the connection is to close now (no request in progress);
    /// `false` if a request head arrived meanwhile, and then it is no longer being shed.
    pub(crate) fn confirm_shed(&self) -> bool {
        let mut state = self.admission.state();
        match state.connections.get_mut(&self.id) {
            Some(entry) if entry.requests > 0 => {
                entry.shedding = false;
                false
            }
            _ => true,
        }
    }

    /// Marks a request in progress until the returned guard drops.
    pub(crate) fn request(&self) -> InRequest {
        if let Some(entry) = self.admission.state().connections.get_mut(&self.id) {
            entry.requests += 1;
        }
        InRequest {
            admission: Arc::clone(&self.admission),
            id: self.id,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.state().remove(self.id);
        self.admission.freed.notify_waiters();
    }
}

/// A request in progress on a connection (it is not shed meanwhile).
#[derive(Debug)]
pub(crate) struct InRequest {
    admission: Arc<Admission>,
    id: u64,
}

impl Drop for InRequest {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        if let Some(entry) = state.connections.get_mut(&self.id) {
            entry.requests = entry.requests.saturating_sub(1);
        }
    }
}

/// Webhooks in progress per forwarded client address (requests from trusted proxies).
#[derive(Debug)]
pub(crate) struct ClientRequests {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientRequests {
    /// At most `max` at once per client (0: no cap).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a webhook from `client` in progress until the guard drops; `None` if the client
    /// already has the most.
    pub(crate) fn enter(self: &Arc<Self>, client: IpAddr) -> Option<ClientRequest> {
        if self.max == 0 {
            return Some(ClientRequest {
                requests: None,
                client,
            });
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(client).or_default();
        if *n >= self.max {
            if *n == 0 {
                counts.remove(&client);
            }
            return None;
        }
        *n += 1;
        Some(ClientRequest {
            requests: Some(Arc::clone(self)),
            client,
        })
    }
}

/// One webhook in progress from a forwarded client.
#[derive(Debug)]
pub(crate) struct ClientRequest {
    requests: Option<Arc<ClientRequests>>,
    client: IpAddr,
}

impl Drop for ClientRequest {
    fn drop(&mut self) {
        if let Some(requests) = &self.requests {
            let mut counts = requests
                .counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = counts.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_source_over_its_cap_is_refused_and_trusted_proxies_are_exempt() {
        let admission = Admission::new(100, 2);
        let _a1 = admission.admit(A, false).unwrap();
        let a2 = admission.admit(A, false).unwrap();
        assert_eq!(admission.admit(A, false).unwrap_err(), Refused::SourceFull);
        let _b = admission.admit(B, false).unwrap();
        let _proxied: Vec<Ticket> = (0..5).map(|_| admission.admit(A, true).unwrap()).collect();
        drop(a2);
        let _a3 = admission.admit(A, false).unwrap();
    }

    #[test]
    fn forwarded_clients_are_capped_per_address() {
        let requests = ClientRequests::new(2);
        let a1 = requests.enter(A).unwrap();
        let _a2 = requests.enter(A).unwrap();
        assert!(requests.enter(A).is_none());
        let _b = requests.enter(B).unwrap();
        drop(a1);
        let _a3 = requests.enter(A).unwrap();
        assert!(ClientRequests::new(0).enter(A).is_some());
    }

    #[tokio::test]
    async fn at_capacity_the_oldest_connection_waiting_for_a_head_is_shed() {
        let admission = Admission::new(3, 0);
        let busy = admission.admit(A, false).unwrap();
        let _request = busy.request();
        let idle_old = admission.admit(A, false).unwrap();
        let idle_new = admission.admit(A, false).unwrap();
        let _fresh = admission.admit(B, false).unwrap();
        // The oldest without a request in progress was told to close; the busy one was not.
        tokio::time::timeout(std::time::Duration::from_secs(1), idle_old.shed())
            .await
            .expect("the oldest idle connection is shed");
        let kept =
            tokio::time::timeout(std::time::Duration::from_millis(50), idle_new.shed()).await;
        assert!(kept.is_err(), "only one connection is shed per admission");
        // The shed connection keeps its slot until it is closed: 4 slots used of 3.
        assert_eq!(admission.len(), 4);
        drop(idle_old);
        assert_eq!(admission.len(), 3);
        let _idle_new_request = idle_new.request();
        let _fresh_request = _fresh.request();
        assert_eq!(admission.admit(B, false).unwrap_err(), Refused::Full);
    }
}
