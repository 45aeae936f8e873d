//! What every process of a cluster must agree on before it computes anything with the others:
//! the pipeline (each section of the interpolated spec, the model plugins' bytes) and the flags
//! that change the computation (worker threads, `--bounded`, key groups). It travels in the
//! handshake; a process that differs is refused with a message naming what differs (a rolling
//! ConfigMap or image update that reached only some pods, a flag given to one process only).

/// Hashes of the pipeline's parts and the flags, as exchanged in the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub sources: u64,
    pub steps: u64,
    pub sinks: u64,
    /// Dead letters and checkpoints.
    pub outputs: u64,
    /// The bytes of every model plugin, in step order.
    pub plugins: u64,
    /// Worker threads per process (`--workers`).
    pub threads: u32,
    pub bounded: bool,
    pub key_groups: u32,
}

/// FNV-1a, 64 bits: the same in every process and every build.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

impl Fingerprint {
    /// The pipeline's part, from the interpolated spec (as JSON, keys in written order) and
    /// the files its components read (`files`: their bytes count, not their paths). The
    /// `local` fields (section, component, field) are left out: each may differ between
    /// processes (a replay's `path`: the same file may be mounted at different paths, and the
    /// source checks that every process reads the same bytes itself), and so is `metrics`.
    pub fn of_spec(
        spec: &serde_json::Value,
        local: &[(&str, &str, &str)],
        files: &[&str],
    ) -> Fingerprint {
        let section = |name: &str| -> u64 {
            let mut v = spec.get(name).cloned().unwrap_or(serde_json::Value::Null);
            for (_, component, field) in local.iter().filter(|(s, _, _)| *s == name) {
                if let Some(o) = v.get_mut(*component).and_then(|c| c.as_object_mut()) {
                    o.remove(*field);
                }
            }
            fnv(FNV_START, v.to_string().as_bytes())
        };
        let mut plugins = FNV_START;
        for path in files {
            // Unreadable files are a planning error already.
            plugins = fnv(plugins, &std::fs::read(path).unwrap_or_default());
        }
        Fingerprint {
            sources: section("sources"),
            steps: section("steps"),
            sinks: section("sinks"),
            outputs: fnv(
                section("dead_letters"),
                &section("checkpoints").to_le_bytes(),
            ),
            plugins,
            ..Fingerprint::default()
        }
    }

    /// With the flags of this process.
    pub fn with_flags(self, threads: usize, bounded: bool, key_groups: u32) -> Fingerprint {
        Fingerprint {
            threads: threads as u32,
            bounded,
            key_groups,
            ..self
        }
    }

    /// What differs between `self` (this process) and `theirs`, in words (empty: nothing).
    pub fn differences(&self, theirs: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (name, a, b) in [
            ("its sources", self.sources, theirs.sources),
            (
                "its steps (windows, aggregates, expressions, models)",
                self.steps,
                theirs.steps,
            ),
            ("its sinks", self.sinks, theirs.sinks),
            (
                "its dead letters or checkpoints",
                self.outputs,
                theirs.outputs,
            ),
            ("its model plugin files", self.plugins, theirs.plugins),
        ] {
            if a != b {
                out.push(format!("{name} differ"));
            }
        }
        if self.threads != theirs.threads {
            out.push(format!(
                "it runs --workers {}, this process --workers {}",
                theirs.threads, self.threads
            ));
        }
        if self.bounded != theirs.bounded {
            let flag = |b: bool| {
                if b {
                    "with --bounded"
                } else {
                    "without --bounded"
                }
            };
            out.push(format!(
                "it runs {}, this process {}",
                flag(theirs.bounded),
                flag(self.bounded)
            ));
        }
        if self.key_groups != theirs.key_groups && self.steps == theirs.steps {
            out.push(format!(
                "it has {} key groups, this process {}",
                theirs.key_groups, self.key_groups
            ));
        }
        out
    }

    pub const LEN: usize = 5 * 8 + 4 + 4 + 4;

    pub fn encode(&self, b: &mut [u8]) {
        for (i, h) in [
            self.sources,
            self.steps,
            self.sinks,
            self.outputs,
            self.plugins,
        ]
        .iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&h.to_le_bytes());
        }
        b[40..44].copy_from_slice(&self.threads.to_le_bytes());
        b[44..48].copy_from_slice(&(self.bounded as u32).to_le_bytes());
        b[48..52].copy_from_slice(&self.key_groups.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Fingerprint {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Fingerprint {
            sources: u64_at(0),
            steps: u64_at(8),
            sinks: u64_at(16),
            outputs: u64_at(24),
            plugins: u64_at(32),
            threads: u32_at(40),
            bounded: u32_at(44) != 0,
            key_groups: u32_at(48),
        }
    }
}
