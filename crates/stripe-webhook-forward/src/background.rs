//! The forwarder's file work (reading the archive, storing its cursor, measuring its lag) on
//! threads of its own, off tokio's blocking pool, so a long lag scan never holds back reading.
//!
//! Priorities, both measured: the reading thread runs at normal priority (at the lowest, a
//! loaded 2-core test run starved it and deliveries stalled); the lag thread at the lowest, since
//! at normal priority its scan of what is appended (the whole ingest rate) competed with the
//! webhooks on a saturated core (p99 +2 ms in the pinned load bench). A starved lag scan only
//! makes the gauge late; it catches up when the core has time.

use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

const STOPPED: &str = "the forwarder's file thread stopped (a panic: see the log)";

/// A thread's CPU priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Priority {
    /// As the rest of the process.
    Normal,
    /// The lowest (as the file sink's sealer): it runs when the core has nothing else to do.
    Lowest,
}

/// A thread running closures one at a time, in order; it ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(crate) struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts the thread, named `name`, at `priority`.
    pub(crate) fn start(name: &str, priority: Priority) -> Result<Background, String> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                if priority == Priority::Lowest
                    && let Err(e) = thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Min,
                    )
                {
                    tracing::debug!(error = ?e, "could not lower the forwarder thread's priority");
                }
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| format!("starting the {name} thread: {e}"))?;
        Ok(Background { jobs })
    }

    /// Queues `f` on the thread without waiting for it.
    ///
    /// # Errors
    /// The thread has stopped (a job panicked).
    pub(crate) fn spawn(&self, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
        self.jobs.send(Box::new(f)).map_err(|_| STOPPED.to_owned())
    }

    /// Runs `f` on the thread and waits for its result.
    ///
    /// # Errors
    /// The thread has stopped (a job panicked).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(move || {
            let _ = tx.send(f());
        })?;
        rx.await.map_err(|_| STOPPED.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_and_a_panic_is_an_error_not_a_hang() {
        let bg = Background::start("test-bg", Priority::Lowest).unwrap();
        assert_eq!(bg.run(|| 1 + 1).await.unwrap(), 2);
        let name = bg
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("test-bg"));
        assert!(bg.run(|| panic!("boom")).await.is_err());
        assert!(bg.run(|| 3).await.is_err(), "the thread has stopped");
    }
}
