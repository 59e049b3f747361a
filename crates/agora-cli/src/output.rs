//! What the CLI prints: a human summary or JSON, and errors as one line.

use serde_json::Value;
use std::io::Write;

/// Print `json` if `--json` was given, else the human text. Times in the
/// JSON are given as people and most tools read them ([`iso_times`]).
pub fn emit(json_mode: bool, human: &str, json: Value) {
    if json_mode {
        let mut json = json;
        iso_times(&mut json);
        say(&json.to_string());
    } else {
        say(human);
    }
}

/// The keys whose values are times, in every JSON the CLI prints (its own
/// and the node's public data it passes on).
const TIME_KEYS: &[&str] = &[
    "at",
    "awarded_at",
    "bound_at",
    "delivered_at",
    "end",
    "next_update",
    "not_after",
    "not_before",
    "paid_at",
    "posted_at",
    "recorded_at",
    "start",
    "t",
    "t3",
    "t_response",
    "until",
];

/// Every time in `v` (a key of [`TIME_KEYS`] with a number of Unix
/// seconds) as RFC 3339 / ISO 8601 in UTC, `2026-12-07T14:00:00Z`, with
/// the seconds kept beside it as `<key>_unix` for scripts.
pub fn iso_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let times: Vec<(String, u64)> = map
                .iter()
                .filter(|(k, _)| TIME_KEYS.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect();
            for (k, secs) in times {
                let iso = crate::cert::fmt_time(agora_core::Timestamp(secs));
                map.insert(format!("{k}_unix"), secs.into());
                map.insert(k, iso.into());
            }
            for v in map.values_mut() {
                iso_times(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(iso_times),
        _ => {}
    }
}

/// Writes `line` and a newline to stdout. When the reader has gone (`agora
/// status | head -1`), there is nobody left to tell anything: the command
/// ends quietly and successfully instead of panicking as `println!` does on
/// a closed pipe. (The write is all a command has left to do when it
/// prints: its work, and any durable step, is done.)
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Any other failure to print is reported as the command's error
        // would be, on stderr, once.
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// The stable error code of `e`, if it carries one of agora's typed errors
/// (or a node's problem document).
fn code(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<agora_client::transport::ClientError>() {
            return err.code().to_owned();
        }
        if let Some(err) = cause.downcast_ref::<agora_core::Error>() {
            return err.code().to_owned();
        }
        if let Some(r) = cause.downcast_ref::<agora_pki::Refusal>() {
            return r.code().to_owned();
        }
    }
    "error".to_owned()
}

/// A step of a flow that failed with something pending: what is pending,
/// and the one command that finishes it. Attached as the outermost context
/// of the error; [`report_error`] prints the error, then these two lines.
#[derive(Debug)]
pub struct Resume {
    /// What is left undone, e.g. "the payment of 1.00 EUR for order ...".
    pub pending: String,
    /// The command that carries it on, as the user would type it.
    pub command: String,
}

impl std::fmt::Display for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pending: {}; resume: {}", self.pending, self.command)
    }
}

impl std::error::Error for Resume {}

/// `e` with `resume` as its outermost context, unless it says already how
/// to resume (the innermost step knows best).
pub fn resumable(e: anyhow::Error, resume: impl FnOnce() -> Resume) -> anyhow::Error {
    if e.downcast_ref::<Resume>().is_some() {
        e
    } else {
        e.context(resume())
    }
}

/// Quotes `arg` for a POSIX shell when it needs it, so that a printed
/// command runs as printed.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// One readable line on stderr (the whole chain with `--verbose`), and for a
/// flow left pending ([`Resume`]) what is pending and the command that
/// finishes it; with `--json`, an object on stdout as well so that scripts
/// can branch on it.
pub fn report_error(e: &anyhow::Error, json_mode: bool, verbose: bool) {
    let resume = e.downcast_ref::<Resume>();
    // The causes without the resume hint, which is printed apart.
    let hint = resume.map(|r| r.to_string());
    let causes: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| Some(c) != hint.as_ref())
        .collect();
    if json_mode {
        let mut err = serde_json::json!({
            "code": code(e),
            "message": causes.first().cloned().unwrap_or_default(),
            "causes": causes,
        });
        if let Some(r) = resume {
            err["pending"] = r.pending.clone().into();
            err["resume"] = r.command.clone().into();
        }
        say(&serde_json::json!({ "error": err }).to_string());
    }
    let (Some(top), Some(root)) = (causes.first(), causes.last()) else {
        return;
    };
    if verbose {
        eprintln!("error: {top}");
        for cause in &causes[1..] {
            eprintln!("  caused by: {cause}");
        }
    } else if says_it_all(top, root) {
        eprintln!("error: {top}");
    } else {
        // The outermost context plus the root cause, on one line.
        eprintln!("error: {top}: {root}");
    }
    if let Some(r) = resume {
        eprintln!("pending: {}", r.pending);
        eprintln!("resume:  {}", r.command);
    }
}

/// Refuses to replace `path` unless `force`: a file that `--out` names is
/// checked before any protocol runs, so that a refusal changes nothing
/// (a second purchase must not overwrite the first one's product).
pub fn check_out(path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        anyhow::bail!(
            "{} exists already: name another file, or give --force to replace it",
            path.display()
        );
    }
    Ok(())
}

/// Whether `e` says the node could not be reached or could not take the
/// request now (408, 429, 503, 504): the same request may succeed later.
pub fn retryable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(err) = c.downcast_ref::<agora_client::transport::ClientError>() {
            return match err {
                agora_client::transport::ClientError::Transport(_) => true,
                agora_client::transport::ClientError::Problem(p) => {
                    matches!(p.status, 408 | 429 | 503 | 504)
                }
            };
        }
        cause = c.source();
    }
    false
}

/// `e` with this very command ([`this_command`]) as the way to resume,
/// when `retry` says the node could not be reached or could not take the
/// request ([`retryable`], asked before the error was converted) and a step
/// that was not finished left `pending` behind; else `e` as it is.
pub fn run_again_if(retry: bool, e: anyhow::Error, pending: &str) -> anyhow::Error {
    if !retry {
        return e;
    }
    resumable(e, || Resume {
        pending: pending.to_owned(),
        command: this_command(),
    })
}

/// This command as it was typed (its arguments quoted for the shell), as
/// `agora ...`: to run again when nothing was done.
pub fn this_command() -> String {
    std::iter::once("agora".to_owned())
        .chain(std::env::args().skip(1).map(|a| shell_quote(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether the outermost context says all a person needs on one line: it
/// is the root cause, or it repeats the root's words (a refusal whose
/// detail it quotes). (`--verbose` prints the whole chain.)
fn says_it_all(top: &str, root: &str) -> bool {
    let words = root.split_once(": ").map_or(root, |(_, w)| w);
    top == root || top.contains(words) || top.ends_with(human_detail(words))
}

/// A sentence for a missing file, with nothing of the operating system's
/// text appended: `Err` becomes `say()` alone when its cause is a file that
/// does not exist, which the sentence explains ("no purchase with that id
/// here"); any other cause (a permission, a disk error) stays beneath it.
pub trait Plainly<T> {
    /// See the trait.
    fn plainly(self, say: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> Plainly<T> for Result<T, E> {
    fn plainly(self, say: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| {
            let e: anyhow::Error = e.into();
            let missing = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
            });
            if missing {
                anyhow::anyhow!(say())
            } else {
                e.context(say())
            }
        })
    }
}

/// The detail of a role's refusal as a person reads it: a certificate's
/// refusal, `certificate <code>: <sentence>` on the wire (the code is for
/// scripts), is its sentence.
pub fn human_detail(detail: &str) -> &str {
    match detail
        .strip_prefix("certificate ")
        .and_then(|r| r.split_once(": "))
    {
        Some((code, sentence)) if code.chars().all(|c| c.is_ascii_lowercase() || c == '-') => {
            sentence
        }
        _ => detail,
    }
}
