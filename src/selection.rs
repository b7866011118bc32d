//! Which outputs a command works on: `--only` glob patterns over output names (`Qwen*`) or `name/frame`
//! (`*/gamma_prime`), and `--shard K/N`, a deterministic partition of the jobs by a stable hash of their names.
//! A selected frame brings its inputs along, and a job's outputs always land in the same shard, so γ′ is built
//! where its γ is. The union of all shards is exactly the whole plan, with no overlap.

use crate::error::{Error, Result};
use crate::job::{Job, JobFile};
use sha2::Digest;

/// `K/N`: the K-th (0-based, as `SLURM_ARRAY_TASK_ID` and `JOB_COMPLETION_INDEX` count) of N shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) index: u32,
    pub(crate) count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected K/N, e.g. 0/4"))?;
        let index: u32 = k.trim().parse().map_err(|_| format!("{s:?}: K is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("{s:?}: N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("{s:?}: need 0 ≤ K < N (shards are numbered from 0)"));
        }
        Ok(Shard { index, count })
    }
}

/// The shard a job belongs to: the first 8 bytes of SHA-256 of its output name, modulo N.
pub(crate) fn shard_of(name: &str, count: u32) -> u32 {
    let h = sha2::Sha256::digest(name.as_bytes());
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) % count as u64) as u32
}

/// The jobs (with only their selected frames, inputs included) that `only` and `shard` select.
pub(crate) fn select(jf: &JobFile, only: &[String], shard: Option<Shard>) -> Result<Vec<Job>> {
    let patterns: Vec<(String, glob::Pattern)> = only
        .iter()
        .map(|o| {
            glob::Pattern::new(o).map(|p| (o.clone(), p)).map_err(|e| Error::Selection(format!("--only {o:?}: {e}")))
        })
        .collect::<Result<_>>()?;
    let matches = |job: &Job, frame: &str| {
        patterns.is_empty()
            || patterns.iter().any(|(raw, p)| {
                if raw.contains('/') { p.matches(&format!("{}/{frame}", job.name)) } else { p.matches(&job.name) }
            })
    };
    for (raw, p) in &patterns {
        let hit = jf.jobs.iter().any(|j| {
            j.frames.iter().any(|f| {
                if raw.contains('/') { p.matches(&format!("{}/{}", j.name, f.name())) } else { p.matches(&j.name) }
            })
        });
        if !hit {
            let names: Vec<&str> = jf.jobs.iter().map(|j| j.name.as_str()).collect();
            return Err(Error::Selection(format!(
                "--only {raw:?} matches no output in {}; names: {}",
                jf.path.display(),
                names.join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for job in &jf.jobs {
        if shard.is_some_and(|s| shard_of(&job.name, s.count) != s.index) {
            continue;
        }
        let wanted: Vec<&crate::job::FrameReq> = job.frames.iter().filter(|f| matches(job, f.name())).collect();
        if wanted.is_empty() {
            continue;
        }
        // Keep a frame if it was selected or is an input of one that was (frames are in dependency order).
        let needed: Vec<&str> =
            wanted.iter().flat_map(|w| crate::frame::with_inputs(w.frame)).map(super::frame::Frame::name).collect();
        let mut j = job.clone();
        j.frames.retain(|f| needed.contains(&f.name()));
        for f in &mut j.frames {
            f.selected = matches(job, f.name());
        }
        out.push(j);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_names_exactly() {
        let names: Vec<String> = (0..500).map(|i| format!("model-{i}")).collect();
        for n in [1, 2, 3, 7, 16] {
            let mut seen = vec![0u32; names.len()];
            for k in 0..n {
                for (i, name) in names.iter().enumerate() {
                    if shard_of(name, n) == k {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "N={n}: every name in exactly one shard");
        }
        // Stable across runs, machines and versions: pinned values (computed independently with Python's hashlib).
        assert_eq!(shard_of("Qwen3-4B-Instruct-2507", 4), 3);
        assert_eq!(shard_of("Qwen3-4B-Instruct-2507", 7), 5);
        assert_eq!(shard_of("gemma-3-4b-it", 4), 0);
        assert_eq!(shard_of("Phi-3-mini-4k-instruct", 7), 6);
        let counts: Vec<usize> = (0..4).map(|k| names.iter().filter(|n| shard_of(n, 4) == k).count()).collect();
        assert!(counts.iter().all(|&c| c > 90), "roughly balanced: {counts:?}");
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
