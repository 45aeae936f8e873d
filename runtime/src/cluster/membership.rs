//! Where the list of processes comes from: fixed on the command line (`--peers`), or a file
//! that is watched (`--peers-file`: VMs, a mounted ConfigMap), whose change rescales the cluster.

use std::path::PathBuf;

use super::split_host_port;

#[derive(Clone)]
pub enum Membership {
    /// `--peers A,B,C`: the cluster never changes.
    Fixed(Vec<String>),
    /// `--peers-file PATH`: one `HOST:PORT` per line (blank lines and `#` comments ignored);
    /// read again every [`POLL`].
    File(PathBuf),
    /// `--kubernetes`: the pods of this pod's StatefulSet, as many as its watched
    /// `spec.replicas`.
    Kubernetes(std::sync::Arc<super::kubernetes::KubeMembership>),
}

/// How often a peers file is read again.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl Membership {
    /// The current list, or what is wrong with it (naming the file and line).
    pub fn current(&self) -> Result<Vec<String>, String> {
        match self {
            Membership::Fixed(peers) => Ok(peers.clone()),
            Membership::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the peers file `{}`: {e}", path.display()))?;
                parse_peers_file(&text).map_err(|e| format!("{}:{e}", path.display()))
            }
            Membership::Kubernetes(k) => Ok(k.current()),
        }
    }

    /// Whether the list can change while running.
    pub fn watched(&self) -> bool {
        matches!(self, Membership::File(_) | Membership::Kubernetes(_))
    }
}

/// Parses a peers file: one `HOST:PORT` per line. Errors read `LINE: message`.
pub fn parse_peers_file(text: &str) -> Result<Vec<String>, String> {
    let mut peers: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        split_host_port(entry).map_err(|e| format!("{}: `{entry}`: {e}", i + 1))?;
        if peers.iter().any(|p| p == entry) {
            return Err(format!(
                "{}: `{entry}` is listed twice: every process needs an address of its own",
                i + 1
            ));
        }
        peers.push(entry.to_string());
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_files_skip_comments_and_name_the_bad_line() {
        assert_eq!(
            parse_peers_file("# the cluster\na:1\n\n  b:2  # second\n").unwrap(),
            ["a:1", "b:2"]
        );
        assert_eq!(
            parse_peers_file("a:1\nb\n").unwrap_err(),
            "2: `b`: expected HOST:PORT"
        );
        assert_eq!(
            parse_peers_file("a:1\na:1\n").unwrap_err(),
            "2: `a:1` is listed twice: every process needs an address of its own"
        );
        assert!(parse_peers_file("").unwrap().is_empty());
    }
}
