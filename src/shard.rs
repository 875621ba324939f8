//! Shards of a run: which contiguous slice of the inputs shard K of N simulates, and which shard
//! a job array's task is.
//!
//! Shards are numbered from 1 (`1/3`, `2/3`, `3/3`). The inputs `0..total` are cut into N
//! contiguous slices in order; their sizes differ by at most one, the larger ones first. The
//! slicing depends only on K, N and the input count, so every task of a job array computes the
//! same cut.

use std::fmt;
use std::ops::Range;

use thiserror::Error;

/// Shard `index` of `count` (1-based: `1 <= index <= count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, from 1.
    pub index: usize,
    /// The number of shards.
    pub count: usize,
}

/// Why a shard cannot be named or sliced.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShardError {
    /// `--shard` text that is not `K/N`, `auto` or `auto/N`.
    #[error("--shard `{0}` is not a shard; write K/N with 1 <= K <= N (e.g. 2/8), auto or auto/N")]
    Syntax(String),
    /// K outside `1..=N`.
    #[error("--shard {index}/{count}: shards are numbered from 1 to N, so K must be between 1 and {count}")]
    OutOfRange {
        /// K.
        index: usize,
        /// N.
        count: usize,
    },
    /// More shards than inputs: some shard would be empty.
    #[error("{count} shards of {total} inputs would leave shards without inputs; use at most {total} shards")]
    TooManyShards {
        /// N.
        count: usize,
        /// The number of inputs.
        total: usize,
    },
    /// `auto` outside a job array.
    #[error("--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; run inside such a job or give --shard K/N")]
    NoJobArray,
    /// A job-array variable that is missing or not a whole number.
    #[error("--shard auto: {name} is {}; {hint}", value.as_deref().map_or("not set".to_string(), |v| format!("`{v}`, not a whole number")))]
    Variable {
        /// The variable.
        name: &'static str,
        /// Its value, if set.
        value: Option<String>,
        /// What to do.
        hint: &'static str,
    },
    /// Job-array variables that do not describe shards 1..N.
    #[error("--shard auto: {0}")]
    Inconsistent(String),
}

impl Shard {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if index == 0 || index > count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Parses `K/N`.
    pub fn parse(text: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (k, n) = text.split_once('/').ok_or_else(syntax)?;
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| syntax());
        Shard::new(number(k)?, number(n)?)
    }

    /// The shard `--shard TEXT` names: `K/N`, or `auto` / `auto/N` for the task of a job array,
    /// read through `env` (see [`Shard::from_env`]).
    pub fn from_arg(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        match text.trim() {
            "auto" => Shard::from_env(None, env),
            t => match t.strip_prefix("auto/") {
                Some(n) => {
                    let n = n.trim().parse::<usize>().map_err(|_| ShardError::Syntax(text.to_string()))?;
                    if n == 0 {
                        return Err(ShardError::Syntax(text.to_string()));
                    }
                    Shard::from_env(Some(n), env)
                }
                None => Shard::parse(t),
            },
        }
    }

    /// The shard of the running task of a job array, from its environment (`env(name)` gives a
    /// variable's value).
    ///
    /// - Slurm (`sbatch --array=0-7` or `--array=1-8`): K = `SLURM_ARRAY_TASK_ID` −
    ///   `SLURM_ARRAY_TASK_MIN` + 1, N = `SLURM_ARRAY_TASK_COUNT`. The array must be one range
    ///   without steps starting at 0 or 1, so that N is the range's length; `count`, when given,
    ///   must equal it.
    /// - Kubernetes Indexed Job: K = `JOB_COMPLETION_INDEX` + 1; N is not in the environment, so
    ///   `count` must be given (`--shard auto/N`, N = the Job's `completions`).
    pub fn from_env(count: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        let read = |name: &'static str, hint: &'static str| -> Result<usize, ShardError> {
            let value = env(name);
            value.as_deref().and_then(|v| v.trim().parse::<usize>().ok()).ok_or(ShardError::Variable {
                name,
                value,
                hint,
            })
        };
        if env("SLURM_ARRAY_TASK_ID").is_some() {
            let slurm = "Slurm sets it in every task of a job array (sbatch --array=0-N)";
            let id = read("SLURM_ARRAY_TASK_ID", slurm)?;
            let min = read("SLURM_ARRAY_TASK_MIN", slurm)?;
            let max = read("SLURM_ARRAY_TASK_MAX", slurm)?;
            let tasks = read("SLURM_ARRAY_TASK_COUNT", slurm)?;
            if min > 1 {
                return Err(ShardError::Inconsistent(format!(
                    "the job array starts at task {min} (SLURM_ARRAY_TASK_MIN); shards are found only in an array starting at 0 or 1 (--array=0-{} or --array=1-{}); to run single shards again, give --shard K/N",
                    tasks.saturating_sub(1).max(1),
                    tasks.max(1)
                )));
            }
            if max < min || max - min + 1 != tasks {
                return Err(ShardError::Inconsistent(format!(
                    "the job array's tasks run from {min} to {max} but there are {tasks} (SLURM_ARRAY_TASK_COUNT): an array with steps or a list (--array=0-9:2, --array=1,3,5) does not give contiguous shards; use --array={min}-{} or give --shard K/N",
                    min + tasks.saturating_sub(1)
                )));
            }
            if id < min || id > max {
                return Err(ShardError::Inconsistent(format!(
                    "SLURM_ARRAY_TASK_ID {id} lies outside the array {min}-{max}"
                )));
            }
            if let Some(n) = count.filter(|&n| n != tasks) {
                return Err(ShardError::Inconsistent(format!(
                    "--shard auto/{n} but the Slurm job array has {tasks} tasks; give --shard auto or make the array {n} tasks long"
                )));
            }
            return Shard::new(id - min + 1, tasks);
        }
        if env("JOB_COMPLETION_INDEX").is_some() {
            let index = read("JOB_COMPLETION_INDEX", "Kubernetes sets it in the pods of an Indexed Job")?;
            let Some(count) = count else {
                return Err(ShardError::Inconsistent(format!(
                    "JOB_COMPLETION_INDEX is {index} (a Kubernetes Indexed Job), which does not say how many shards there are; give --shard auto/N with N the Job's completions"
                )));
            };
            if index >= count {
                return Err(ShardError::Inconsistent(format!(
                    "JOB_COMPLETION_INDEX {index} but --shard auto/{count}: the Job's indices run from 0 to {}; make its completions equal to N",
                    count - 1
                )));
            }
            return Shard::new(index + 1, count);
        }
        Err(ShardError::NoJobArray)
    }

    /// The global input indices of this shard among `total` inputs.
    pub fn range(&self, total: usize) -> Result<Range<usize>, ShardError> {
        if self.count > total {
            return Err(ShardError::TooManyShards { count: self.count, total });
        }
        Ok(slice(self.index - 1, self.count, total))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The `k`-th (0-based) of `n` contiguous slices of `0..total`: the first `total % n` slices hold
/// one input more than the others.
fn slice(k: usize, n: usize, total: usize) -> Range<usize> {
    let (size, extra) = (total / n, total % n);
    let start = k * size + k.min(extra);
    start..start + size + usize::from(k < extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn slices_cover_the_inputs_in_order_without_overlap_and_differ_by_at_most_one() {
        for total in 1..=40 {
            for n in 1..=total {
                let ranges: Vec<Range<usize>> =
                    (1..=n).map(|k| Shard::new(k, n).unwrap().range(total).unwrap()).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[n - 1].end, total);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "{total} inputs, {n} shards");
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(*min >= 1 && max - min <= 1, "{total} inputs, {n} shards: {sizes:?}");
            }
        }
    }

    #[test]
    fn ten_inputs_in_three_shards() {
        let ranges: Vec<Range<usize>> = (1..=3).map(|k| Shard::new(k, 3).unwrap().range(10).unwrap()).collect();
        assert_eq!(ranges, vec![0..4, 4..7, 7..10]);
        assert_eq!(Shard::new(1, 1).unwrap().range(7).unwrap(), 0..7);
    }

    #[test]
    fn more_shards_than_inputs_are_refused() {
        assert_eq!(Shard::new(1, 5).unwrap().range(3), Err(ShardError::TooManyShards { count: 5, total: 3 }));
    }

    #[test]
    fn k_of_n_is_parsed_from_one() {
        assert_eq!(Shard::parse("2/8").unwrap(), Shard { index: 2, count: 8 });
        assert_eq!(Shard::parse(" 8 / 8 ").unwrap(), Shard { index: 8, count: 8 });
        assert_eq!(Shard::parse("0/3"), Err(ShardError::OutOfRange { index: 0, count: 3 }));
        assert_eq!(Shard::parse("4/3"), Err(ShardError::OutOfRange { index: 4, count: 3 }));
        for bad in ["3", "a/3", "1/", "/3", "1/3/4", "-1/3", ""] {
            assert!(matches!(Shard::parse(bad), Err(ShardError::Syntax(_))), "{bad}");
        }
        assert!(Shard::parse("0/3").unwrap_err().to_string().contains("numbered from 1"));
    }

    #[test]
    fn slurm_arrays_from_zero_and_from_one() {
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(Shard::from_arg("auto", env(&vars)).unwrap(), Shard { index: 1, count: 4 });
        assert_eq!(Shard::from_arg("auto/4", env(&vars)).unwrap(), Shard { index: 1, count: 4 });
        let vars = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(Shard::from_arg("auto", env(&vars)).unwrap(), Shard { index: 4, count: 4 });
    }

    #[test]
    fn slurm_arrays_that_do_not_give_contiguous_shards_are_refused() {
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "5"),
        ];
        let error = Shard::from_arg("auto", env(&stepped)).unwrap_err().to_string();
        assert!(error.contains("steps") && error.contains("--array=0-4"), "{error}");
        let late = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_MAX", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
        ];
        let error = Shard::from_arg("auto", env(&late)).unwrap_err().to_string();
        assert!(error.contains("starts at task 2") && error.contains("--shard K/N"), "{error}");
        let missing = [("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "0")];
        let error = Shard::from_arg("auto", env(&missing)).unwrap_err().to_string();
        assert!(error.contains("SLURM_ARRAY_TASK_MAX is not set"), "{error}");
        let wrong_count = [
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let error = Shard::from_arg("auto/3", env(&wrong_count)).unwrap_err().to_string();
        assert!(error.contains("auto/3") && error.contains("4 tasks"), "{error}");
    }

    #[test]
    fn kubernetes_indexed_jobs_need_the_count() {
        let vars = [("JOB_COMPLETION_INDEX", "2")];
        assert_eq!(Shard::from_arg("auto/3", env(&vars)).unwrap(), Shard { index: 3, count: 3 });
        let error = Shard::from_arg("auto", env(&vars)).unwrap_err().to_string();
        assert!(error.contains("auto/N"), "{error}");
        let error = Shard::from_arg("auto/2", env(&vars)).unwrap_err().to_string();
        assert!(error.contains("completions"), "{error}");
        let bad = [("JOB_COMPLETION_INDEX", "x")];
        let error = Shard::from_arg("auto/2", env(&bad)).unwrap_err().to_string();
        assert!(error.contains("`x`, not a whole number"), "{error}");
    }

    #[test]
    fn auto_outside_a_job_array_says_what_is_missing() {
        assert_eq!(Shard::from_arg("auto", env(&[])), Err(ShardError::NoJobArray));
        assert!(matches!(Shard::from_arg("auto/0", env(&[])), Err(ShardError::Syntax(_))));
    }
}
