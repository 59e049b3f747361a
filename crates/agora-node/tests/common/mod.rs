//! The OpenAPI document as the HTTP tests hold the node to it: what an
//! operation documents, and each real response checked against that (its
//! status, media type, required headers and, for JSON, its body).
//!
//! Bodies are checked by a small JSON Schema reader covering what the
//! document uses (`$ref`, `type`, `enum`, `required`, `properties`, `items`,
//! `minimum`, `maximum`, `maxLength`); `pattern` is left to schemathesis
//! (scripts/schemathesis.sh), which checks the whole document in CI.
#![allow(dead_code)] // each test file uses its part

use serde_json::Value;

/// The document the node serves at `/openapi.json`.
pub fn api() -> Value {
    serde_json::from_str(agora_node::OPENAPI).expect("openapi.json is JSON")
}

/// What `value` refers to, if it is a `{"$ref": "#/..."}`; else itself.
pub fn resolve<'a>(api: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            api.pointer(pointer)
                .unwrap_or_else(|| panic!("{r} is not in the document"))
        }
        None => value,
    }
}

/// The operation `method` (lower case) of `path` (a template, e.g.
/// `/v1/cpo/board/{id}`).
pub fn operation<'a>(api: &'a Value, method: &str, path: &str) -> &'a Value {
    api["paths"]
        .get(path)
        .and_then(|p| p.get(method))
        .unwrap_or_else(|| panic!("{method} {path} is not in the OpenAPI document"))
}

/// The documented response of `method path` for `status`, resolved.
pub fn response<'a>(api: &'a Value, method: &str, path: &str, status: u16) -> Option<&'a Value> {
    operation(api, method, path)["responses"]
        .get(status.to_string())
        .map(|r| resolve(api, r))
}

/// The statuses `method path` documents.
pub fn statuses(api: &Value, method: &str, path: &str) -> Vec<u16> {
    operation(api, method, path)["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|k| k.parse().expect("a numeric status"))
        .collect()
}

/// Checks `value` against `schema`; the first thing wrong, with where.
pub fn validate(api: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(api, schema);
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: a type that is not a name")),
        };
        let is = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        };
        if !types.iter().any(|t| is(t)) {
            return Err(format!("{at}: {value} is not of type {t}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{at}: {n} is below {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{at}: {n} is above {max}"));
            }
        }
    }
    if let (Some(s), Some(max)) = (
        value.as_str(),
        schema.get("maxLength").and_then(Value::as_u64),
    ) {
        if s.chars().count() as u64 > max {
            return Err(format!("{at}: longer than {max} characters"));
        }
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap_or_default();
            if !obj.contains_key(r) {
                return Err(format!("{at}: {r} is missing"));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, s) in props {
                if let Some(v) = obj.get(k) {
                    validate(api, s, v, &format!("{at}.{k}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            validate(api, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The schema of `method path`'s documented `status` response in `media`.
pub fn body_schema<'a>(
    api: &'a Value,
    method: &str,
    path: &str,
    status: u16,
    media: &str,
) -> &'a Value {
    let r = response(api, method, path, status)
        .unwrap_or_else(|| panic!("{method} {path} documents no {status}"));
    r["content"]
        .get(media)
        .map(|c| &c["schema"])
        .unwrap_or_else(|| panic!("{method} {path} {status} documents no {media} body"))
}

/// A response as the checks read it.
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads a blocking reqwest response whole.
    pub fn of(r: reqwest::blocking::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Parses a raw HTTP/1.1 response (head and body as read).
    pub fn parse(raw: &[u8]) -> Answer {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head");
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Asserts that the document describes `a`, the answer to `method path`
/// (`path` the template): its status is documented, its media type is one
/// documented for that status, the headers documented as required are
/// there, and a JSON body (a problem document too) matches its schema.
pub fn assert_documented(api: &Value, method: &str, path: &str, a: &Answer) {
    let what = format!("{method} {path} answered {}", a.status);
    let r = response(api, method, path, a.status).unwrap_or_else(|| {
        panic!(
            "{what}, which openapi.json does not document (it documents {:?}); body: {}",
            statuses(api, method, path),
            String::from_utf8_lossy(&a.body)
        )
    });
    for (name, h) in r
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if h["required"] == true {
            assert!(
                a.header(&name.to_ascii_lowercase()).is_some(),
                "{what} without its required {name} header"
            );
        }
    }
    let Some(content) = r.get("content").and_then(Value::as_object) else {
        return;
    };
    let media = a
        .header("content-type")
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let documented = content.get(&media).unwrap_or_else(|| {
        panic!(
            "{what} as {media:?}, which is not among its documented media types {:?}",
            content.keys().collect::<Vec<_>>()
        )
    });
    if media.ends_with("json") {
        let body: Value = serde_json::from_slice(&a.body)
            .unwrap_or_else(|e| panic!("{what} with a body that is not JSON ({e})"));
        if let Err(e) = validate(api, &documented["schema"], &body, "body") {
            panic!("{what} with a body the document does not describe: {e}\n{body}");
        }
    }
}

/// A concrete URL path for a template: each `{param}` a valid 64-hex-digit
/// id.
pub fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push_str(&"ab".repeat(32));
        rest = &rest[rest[open..].find('}').map_or(rest.len(), |c| open + c + 1)..];
    }
    out.push_str(rest);
    out
}

/// `path` with its first `{param}` replaced by `bad`.
pub fn with_bad_param(path: &str, bad: &str) -> Option<String> {
    let open = path.find('{')?;
    let close = open + path[open..].find('}')?;
    Some(concrete(&format!(
        "{}{bad}{}",
        &path[..open],
        &path[close + 1..]
    )))
}

/// A request sent over a raw connection, for what a client library does
/// not send: a body cut short, a head past the node's bound.
pub struct Raw<'a> {
    /// The method, in lower case.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// Its `content-type`.
    pub content_type: &'a str,
    /// Bytes of body its head announces...
    pub declared: usize,
    /// ... and bytes of body sent.
    pub sent: usize,
    /// Bytes of a filler header added to its head.
    pub filler: usize,
}

/// Sends `r` to the node at `addr` and reads the answer until the node
/// closes or `wait` has passed.
pub fn raw_request(addr: &str, r: &Raw, wait: std::time::Duration) -> Answer {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connects");
    tcp.set_read_timeout(Some(wait)).expect("timeout");
    let filler = if r.filler > 0 {
        format!("x-filler: {}\r\n", "a".repeat(r.filler))
    } else {
        String::new()
    };
    let head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {}\r\n{filler}\
         content-length: {}\r\nconnection: close\r\n\r\n",
        r.method.to_ascii_uppercase(),
        r.path,
        r.content_type,
        r.declared,
    );
    // The node may answer (and close) before it has read all of it.
    let _ = tcp.write_all(head.as_bytes());
    let _ = tcp.write_all(&vec![0u8; r.sent]);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    Answer::parse(&raw)
}

/// A node served on a loopback port by a runtime on a thread of its own,
/// until [`Served::stop`] or drop.
pub struct Served {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Binds a loopback port and serves the node `build` makes for its URL.
    pub fn start(build: impl FnOnce(&str) -> agora_node::Node) -> Served {
        Served::start_with(|url| {
            let node = build(url);
            move |listener, stopped: tokio::sync::oneshot::Receiver<()>| {
                node.serve(listener, async {
                    let _ = stopped.await;
                })
            }
        })
    }

    /// A node with the tests' configuration (no rate limit on loopback,
    /// housekeeping hourly) hosting `service` alone.
    pub fn one(service: std::sync::Arc<dyn agora_node::Service>) -> Served {
        Served::start(|url| {
            agora_node::Node::new(agora_node::NodeConfig {
                public_url: url.to_owned(),
                housekeeping_every: std::time::Duration::from_secs(3600),
                rate_limit_loopback: false,
                ..agora_node::NodeConfig::default()
            })
            .with(service)
        })
    }

    /// Binds a loopback port and runs the server `build` makes for its URL
    /// (given the listener and the future that says stop) on a runtime of
    /// its own: a node, or another server (the client proxy).
    pub fn start_with<R, F>(build: impl FnOnce(&str) -> R) -> Served
    where
        R: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> F
            + Send
            + 'static,
        F: std::future::Future<Output = std::io::Result<()>> + Send,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let run = build(&format!("http://{addr}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                run(listener, stopped).await
            })
        });
        Served {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it; what `serve` returned (also `Ok` once stopped already).
    pub fn stop(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap(),
            None => Ok(()),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
