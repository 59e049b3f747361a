//! What the CLI prints: a human summary or JSON, and errors as one line.

use serde_json::Value;

/// Print `json` if `--json` was given, else the human text.
pub fn emit(json_mode: bool, human: &str, json: Value) {
    if json_mode {
        println!("{json}");
    } else {
        println!("{human}");
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
        println!(
            "{}",
            serde_json::json!({ "error": { "code": code(e), "message": e.to_string(), "causes": chain } })
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
