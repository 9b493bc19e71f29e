//! Ephemeral storage is never silent: the file sink's directory on a filesystem that will not
//! outlive the container (overlay, tmpfs), or on the root filesystem of a known container platform,
//! gets a warning at start that says what to do.

use std::path::{Path, PathBuf};

/// Filesystems whose contents end with the container (or the machine's power).
const EPHEMERAL: &[&str] = &["overlay", "tmpfs", "ramfs", "aufs"];

/// Environment variables that name the container platform running this process.
const PLATFORMS: &[(&str, &str)] = &[
    ("ECS_CONTAINER_METADATA_URI_V4", "Amazon ECS"),
    ("ECS_CONTAINER_METADATA_URI", "Amazon ECS"),
    ("KUBERNETES_SERVICE_HOST", "Kubernetes"),
    ("RAILWAY_ENVIRONMENT", "Railway"),
    ("RENDER", "Render"),
    ("FLY_APP_NAME", "Fly.io"),
    ("K_SERVICE", "Cloud Run"),
];

/// The container platform this process runs on, if one is known (from its environment variables,
/// or a container runtime's marker file).
fn platform() -> Option<&'static str> {
    PLATFORMS
        .iter()
        .find(|(var, _)| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
        .map(|(_, name)| *name)
        .or_else(|| {
            ["/.dockerenv", "/run/.containerenv"]
                .iter()
                .any(|marker| Path::new(marker).exists())
                .then_some("a container")
        })
}

/// Logs a warning when records written under `dir` would not outlive this container.
pub(crate) fn warn_if_ephemeral(dir: &Path) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(reason) = ephemeral_reason(&mountinfo, &dir, platform()) {
        tracing::warn!(
            archive_dir = %dir.display(),
            "{reason}: the archive is LOST when the container is replaced (every redeploy). Mount a \
             persistent volume at ARCHIVE_DIR, or use SINK=firehose"
        );
    }
}

/// Why `dir` is ephemeral, from `/proc/self/mountinfo` and the detected platform; `None` when it
/// is not (or it cannot be told).
pub(crate) fn ephemeral_reason(
    mountinfo: &str,
    dir: &Path,
    platform: Option<&str>,
) -> Option<String> {
    let (mount_point, fstype) = mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|(mount_point, _)| dir.starts_with(mount_point))
        .max_by_key(|(mount_point, _)| mount_point.components().count())?;
    if EPHEMERAL.contains(&fstype.as_str()) {
        return Some(format!(
            "ARCHIVE_DIR is on {fstype} (mounted at {})",
            mount_point.display()
        ));
    }
    match platform {
        Some(platform) if mount_point == Path::new("/") => Some(format!(
            "ARCHIVE_DIR is on the root filesystem of {platform}, not on a mounted volume"
        )),
        _ => None,
    }
}

/// `(mount point, filesystem type)` of one `mountinfo` line: `id parent maj:min root mount-point
/// options [optional fields…] - fstype source super-options`, with `\040`-style octal escapes.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, String)> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let fstype = after.split(' ').next()?;
    Some((PathBuf::from(unescape(mount_point)), fstype.to_owned()))
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 1 0:22 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
25 24 0:23 / /proc rw,nosuid - proc proc rw
26 24 0:24 / /dev/shm rw,nosuid,nodev - tmpfs shm rw,size=65536k
27 24 259:1 /volumes/archive /archive rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw
28 24 259:1 /x /srv/my\\040archive rw,relatime - xfs /dev/nvme0n1p2 rw
";

    #[test]
    fn a_container_root_or_tmpfs_is_ephemeral_a_volume_is_not() {
        let reason = |dir: &str, platform| ephemeral_reason(MOUNTINFO, Path::new(dir), platform);
        assert_eq!(
            reason("/app/archive", None).as_deref(),
            Some("ARCHIVE_DIR is on overlay (mounted at /)")
        );
        assert!(reason("/dev/shm/archive", None).unwrap().contains("tmpfs"));
        assert_eq!(reason("/archive", None), None);
        assert_eq!(reason("/archive/webhooks", Some("Amazon ECS")), None);
        assert_eq!(
            reason("/srv/my archive", None),
            None,
            "octal escapes decoded"
        );
    }

    #[test]
    fn the_root_filesystem_of_a_container_platform_is_ephemeral() {
        let mountinfo = "24 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert!(
            ephemeral_reason(mountinfo, Path::new("/data"), Some("Render"))
                .unwrap()
                .contains("root filesystem of Render")
        );
        assert_eq!(ephemeral_reason(mountinfo, Path::new("/data"), None), None);
        assert_eq!(
            ephemeral_reason("", Path::new("/data"), Some("Render")),
            None
        );
    }
}
