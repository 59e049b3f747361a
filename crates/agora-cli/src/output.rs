//! What the CLI prints: a human summary or JSON, and errors as one line.

use serde_json::Value;
use std::io::Write;

/// Print `json` if `--json` was given, else the human text.
pub fn emit(json_mode: bool, human: &str, json: Value) {
    if json_mode {
        say(&json.to_string());
    } else {
        say(human);
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

/// One readable line on stderr (the whole chain with `--verbose`); with
/// `--json`, an object on stdout as well so that scripts can branch on it.
pub fn report_error(e: &anyhow::Error, json_mode: bool, verbose: bool) {
    if json_mode {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        say(
            &serde_json::json!({ "error": { "code": code(e), "message": e.to_string(), "causes": chain } })
                .to_string(),
        );
    }
    if verbose {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    } else {
        // The outermost context plus the root cause, on one line.
        let root = e.root_cause().to_string();
        let top = e.to_string();
        if top == root {
            eprintln!("error: {top}");
        } else {
            eprintln!("error: {top}: {root}");
        }
    }
}
