//! The open-file limit (`RLIMIT_NOFILE`): raised at start, and the connection cap sized to it so
//! the server's own files never run out.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// File descriptors kept for the server itself, beyond its connections: the listeners, the
/// runtime's epoll and event fds, stdio, the archive's open segments and the sealer's files, the
/// metrics listener's scrapes, and one connection accepted beyond the cap while an older one is
/// shed. Measured at about 15 in use on an idle server; the rest is headroom.
pub(crate) const OWN_FILES: u64 = 128;

/// The most file descriptors the kernel lets a process have when the hard limit is unlimited
/// (Linux's default `fs.nr_open`).
const NR_OPEN: u64 = 1 << 20;

/// What [`raise`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenFiles {
    /// The soft limit at start.
    pub(crate) was: u64,
    /// The soft limit now (the hard limit, if raising worked).
    pub(crate) now: u64,
}

impl OpenFiles {
    /// How many connections fit next to the server's own files.
    pub(crate) fn connections(self) -> usize {
        usize::try_from(self.now.saturating_sub(OWN_FILES)).unwrap_or(usize::MAX)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Never fails: if the limit cannot be read or
/// raised, the current soft limit is what there is (and that is logged).
pub(crate) fn raise() -> OpenFiles {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let was = current.unwrap_or(NR_OPEN);
    let hard = maximum.unwrap_or(NR_OPEN);
    if hard <= was {
        return OpenFiles { was, now: was };
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => OpenFiles { was, now: hard },
        Err(e) => {
            tracing::warn!(soft = was, hard, error = %e, "could not raise the open-file limit to its hard limit");
            OpenFiles { was, now: was }
        }
    }
}

/// The connection cap to use: `MAX_CONNECTIONS`, lowered (and said so, at start) when the
/// open-file limit cannot hold that many connections next to the server's own files.
pub(crate) fn size_connections(files: OpenFiles, max_connections: usize) -> usize {
    let fit = files.connections();
    if files.now > files.was {
        tracing::info!(
            from = files.was,
            to = files.now,
            "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
        );
    }
    if fit >= max_connections {
        return max_connections;
    }
    let usable = fit.max(1);
    tracing::warn!(
        open_file_limit = files.now,
        max_connections,
        connections = usable,
        own_files = OWN_FILES,
        "the open-file limit is too low for MAX_CONNECTIONS: serving at most {usable} connections \
         at once, so the server's own files never run out. Raise the hard limit (systemd \
         LimitNOFILE=, docker --ulimit nofile=, ulimit -Hn) to at least MAX_CONNECTIONS + {OWN_FILES}"
    );
    usable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_servers_own_files() {
        let files = OpenFiles {
            was: 1024,
            now: 1024,
        };
        assert_eq!(size_connections(files, 1024), 1024 - OWN_FILES as usize);
        assert_eq!(size_connections(files, 100), 100);
        let tiny = OpenFiles { was: 64, now: 64 };
        assert_eq!(size_connections(tiny, 1024), 1);
    }
}
