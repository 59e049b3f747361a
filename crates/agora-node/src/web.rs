//! The node's public web board: server-rendered HTML for people, beside the
//! JSON of [`crate::cpo`].
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the board: a search form and the open CPOs in the order chosen (`sort`), with the time each has left and the bids each bidding one has taken, a page at a time |
//! | `GET /cpo/{id}` | one CPO: its public fields, its status, its time left, how to bind it |
//! | `GET /recent` | the CPOs bound or awarded lately (they leave the board when they are) |
//! | `GET /store` | the SPEED vendor's catalogue, its prices, and the command that buys each product |
//! | `GET /how-to-bind` | for sellers: bond, browse session, bind or bid, with the CLI |
//! | `GET /style.css` | the one stylesheet |
//! | `GET /favicon.svg`, `GET /favicon.ico` | the icon (SVG, built in) |
//!
//! The pages use no JavaScript and read well on a phone (fluid layout,
//! nothing scrolls sideways). They show only what [`crate::cpo::public_json`]
//! makes public, never the buyer nor a bond, and every text that comes from
//! a CPO or from the request is escaped with [`escape`]. Errors are pages
//! too, with the right status (`400` for bad input, `404` for an unknown
//! CPO), not problem documents: these routes are for people.
//!
//! The renderers ([`render_board`], [`render_cpo`], [`render_recent`],
//! [`render_store`], [`render_how_to_bind`], [`render_error`]) are pure
//! functions of the JSON the services give and of the time, so that the
//! tests can hold the HTML to what it must (and must not) say.
//!
//! Commands in the how-to boxes keep each line whole (`white-space: pre`):
//! a box too narrow for a line scrolls sideways inside itself, and the page
//! does not, so no command is broken in the middle of a flag.

use crate::cpo::{BoardPage, BoardQuery, CpoService};
use crate::{blocking, Core, Problem, Service};
use agora_core::{Currency, KeyId, Money, Timestamp};
use agora_store::BoardOrder;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;

/// The stylesheet served at `/style.css`.
pub const STYLE_CSS: &str = include_str!("web/style.css");

/// The icon served at `/favicon.svg` (and at `/favicon.ico`, where browsers
/// and feed readers look without being told).
pub const FAVICON_SVG: &str = include_str!("web/favicon.svg");

/// CPOs on the page of those bound lately.
pub const RECENT: usize = 50;

/// CPOs per page of the board, unless the query asks for another number.
pub const PAGE: usize = 20;
/// CPOs per page of the board, at most.
pub const MAX_WEB_PAGE: usize = 100;

/// What every page may load: its own stylesheet, nothing else. No script
/// runs, no form posts elsewhere, no one frames the pages.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The web board as a node service, reading the board of a [`CpoService`].
#[derive(Debug)]
pub struct WebService {
    cpo: Arc<CpoService>,
}

impl WebService {
    /// The pages of `cpo`'s board.
    pub fn new(cpo: Arc<CpoService>) -> WebService {
        WebService { cpo }
    }
}

type Web = (Arc<WebService>, Arc<Core>);

impl Service for WebService {
    fn name(&self) -> &'static str {
        "web"
    }

    fn router(self: Arc<Self>, core: Arc<Core>) -> Router {
        Router::new()
            .route("/", get(board_page))
            .route("/cpo/{id}", get(cpo_page))
            .route("/how-to-bind", get(how_to_bind_page))
            .route("/recent", get(recent_page))
            .route("/store", get(store_page))
            .route("/style.css", get(style_css))
            .route("/favicon.svg", get(favicon))
            .route("/favicon.ico", get(favicon))
            .with_state((self, core))
    }

    fn describe(&self) -> Value {
        serde_json::json!({
            "pages": ["/", "/cpo/{id}", "/recent", "/store", "/how-to-bind"],
            "stylesheet": "/style.css",
            "icon": "/favicon.svg",
        })
    }
}

// ------------------------------------------------------------ text

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by entities: safe in HTML
/// text and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters (with an ellipsis if cut): for
/// echoing what a person typed without echoing a megabyte.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both fit: day is in [1, 31], month in [1, 12].
    (year, day_or_month(month), day_or_month(day))
}

fn day_or_month(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A Unix time for people: `21 Nov 2026, 08:55 UTC`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS
        .get(m.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("?");
    format!(
        "{d} {month} {y}, {:02}:{:02} UTC",
        rest / 3600,
        (rest % 3600) / 60
    )
}

/// A Unix time for machines, for `<time datetime=...>`.
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

fn time_html(secs: u64) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        rfc3339(secs),
        escape(&utc(secs))
    )
}

/// A span of time for people, to the minute: `29 days`, `1 day 4 h`,
/// `5 h 12 min`, `7 min`, `under a minute`.
pub fn span(secs: u64) -> String {
    let (days, hours, mins) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    match (days, hours, mins) {
        (d, _, _) if d >= 2 => format!("{d} days"),
        (1, 0, _) => "1 day".to_owned(),
        (1, h, _) => format!("1 day {h} h"),
        (0, 0, 0) => "under a minute".to_owned(),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (_, h, m) => format!("{h} h {m} min"),
    }
}

/// What is left of a CPO active from `start` to `end`, at `now`: `3 days
/// left`, `starts in 2 h`, `ended`.
pub fn time_left(now: u64, start: u64, end: u64) -> String {
    if end <= now {
        "ended".to_owned()
    } else if start > now {
        format!("starts in {}", span(start - now))
    } else {
        format!("{} left", span(end - now))
    }
}

fn mode_text(mode: &str) -> &str {
    match mode {
        "first-come" => "first come",
        other => other,
    }
}

fn status_class(status: &str) -> String {
    let slug: String = status
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("status status-{slug}")
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn secs(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// The node's URL as the CLI wants it: no trailing slash.
fn node_url(public_url: &str) -> &str {
    public_url.trim_end_matches('/')
}

// ------------------------------------------------------------ the page

/// A whole page: `title` (plain text) around `body` (HTML).
pub fn page(title: &str, body: &str, public_url: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title} · agora</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body>\n\
         <header class=\"site\"><div class=\"wrap\"><a class=\"brand\" href=\"/\">agora</a>\
         <nav aria-label=\"site\"><a href=\"/\">Board</a><a href=\"/recent\">Recently bound</a>\
         <a href=\"/store\">Store</a><a href=\"/how-to-bind\">How to bind</a></nav></div></header>\n\
         <main class=\"wrap\">\n{body}\n</main>\n\
         <footer class=\"site\"><div class=\"wrap\"><p>An agora node at <span class=\"id\">{url}</span>. \
         The board shows what a Conditional Purchase Order makes public: never the buyer, never a bond. \
         The same data as JSON: <a href=\"/v1/cpo/board\">/v1/cpo/board</a>.</p></div></footer>\n\
         </body>\n</html>\n",
        title = escape(title),
        url = escape(node_url(public_url)),
    )
}

/// An error page: `heading` and `message` are plain text.
pub fn render_error(heading: &str, message: &str, public_url: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<div class=\"error\" role=\"alert\" id=\"error\"><p>{}</p></div>\n\
         <p><a href=\"/\">Back to the board</a></p>",
        escape(heading),
        escape(message)
    );
    page(heading, &body, public_url)
}

// ------------------------------------------------------------ the board

/// The board's search form as typed (every field is text, so that nothing a
/// person types fails to parse before it can be explained to them).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct BoardForm {
    /// Words that must all occur in the goods or the terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Lowest price, e.g. `10 EUR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_price: Option<String>,
    /// Highest price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<String>,
    /// Currency code, e.g. `EUR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// `any`, `first-come` or `bidding`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Only CPOs active at this Unix time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_at: Option<String>,
    /// Paging in the id order (older links): the last CPO id of the
    /// previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// CPOs per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The order ([`BoardOrder::name`]); newest first if none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Paging: the cursor the previous page ended with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl BoardForm {
    /// Parses a query string; unknown fields are ignored.
    pub fn from_query(raw: &str) -> Result<BoardForm, String> {
        serde_urlencoded::from_str::<BoardForm>(raw)
            .map(|f| f.cleaned())
            .map_err(|e| format!("The address's query is malformed ({e})."))
    }

    /// The form with blank fields dropped, codes in capitals, and a bare
    /// number as a price taken in the chosen currency.
    fn cleaned(&self) -> BoardForm {
        let opt = |v: &Option<String>| given(v).map(str::to_owned);
        let currency = given(&self.currency).map(str::to_ascii_uppercase);
        let price = |v: &Option<String>| {
            given(v).map(|p| match (p.rsplit_once(' '), &currency) {
                (Some((amount, code)), _) => {
                    format!("{} {}", amount.trim(), code.to_ascii_uppercase())
                }
                (None, Some(c)) if p.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                    format!("{p} {c}")
                }
                _ => p.to_owned(),
            })
        };
        BoardForm {
            q: opt(&self.q),
            min_price: price(&self.min_price),
            max_price: price(&self.max_price),
            currency,
            mode: given(&self.mode).filter(|m| *m != "any").map(str::to_owned),
            active_at: opt(&self.active_at),
            after: opt(&self.after),
            limit: opt(&self.limit),
            sort: opt(&self.sort),
            cursor: opt(&self.cursor),
        }
    }

    /// The order asked for (newest first if none, or none that exists).
    pub fn order(&self) -> BoardOrder {
        self.sort
            .as_deref()
            .and_then(BoardOrder::from_name)
            .unwrap_or(BoardOrder::Newest)
    }

    /// Whether this is a later page (not the first of its search).
    pub fn paged(&self) -> bool {
        self.after.is_some() || self.cursor.is_some()
    }

    /// Whether a filter (not paging) is set.
    pub fn filtered(&self) -> bool {
        self.q.is_some()
            || self.min_price.is_some()
            || self.max_price.is_some()
            || self.currency.is_some()
            || self.mode.is_some()
            || self.active_at.is_some()
    }

    /// CPOs per page.
    pub fn page_len(&self) -> usize {
        self.limit
            .as_deref()
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(PAGE)
            .clamp(1, MAX_WEB_PAGE)
    }

    /// The board query for this form, asking for one CPO more than a page
    /// (to know whether there is a next page); or what is wrong with the
    /// input, one sentence per field, for a person.
    pub fn board_query(&self) -> Result<BoardQuery, Vec<String>> {
        let mut wrong = Vec::new();
        for (what, v) in [
            ("Minimum price", &self.min_price),
            ("Maximum price", &self.max_price),
        ] {
            if let Some(p) = v {
                if p.parse::<Money>().is_err() {
                    wrong.push(format!(
                        "{what}: “{}” is not an amount of money; write it like 10 EUR or 12.50 EUR.",
                        clip(p, 40)
                    ));
                }
            }
        }
        if let Some(c) = &self.currency {
            if Currency::new(c).is_err() {
                wrong.push(format!(
                    "Currency: “{}” is not a currency code; use three letters such as EUR or USD.",
                    clip(c, 40)
                ));
            }
        }
        if let Some(m) = &self.mode {
            if agora_cpo::Mode::from_name(m).is_none() {
                wrong.push(format!(
                    "Mode: “{}” is not a mode; choose any, first-come or bidding.",
                    clip(m, 40)
                ));
            }
        }
        let active_at = match &self.active_at {
            None => None,
            Some(t) => match t.parse::<u64>() {
                Ok(t) => Some(t),
                Err(_) => {
                    wrong.push(format!(
                        "Active at: “{}” is not a time; give it in Unix seconds.",
                        clip(t, 40)
                    ));
                    None
                }
            },
        };
        if let Some(l) = &self.limit {
            if l.parse::<usize>().is_err() {
                wrong.push(format!(
                    "Limit: “{}” is not a number of CPOs per page.",
                    clip(l, 40)
                ));
            }
        }
        if let Some(a) = &self.after {
            if KeyId::from_hex(a).is_err() {
                wrong.push(format!(
                    "Paging: “{}” is not a CPO id (64 hexadecimal digits).",
                    clip(a, 80)
                ));
            }
        }
        if let Some(o) = &self.sort {
            if BoardOrder::from_name(o).is_none() {
                wrong.push(format!(
                    "Sort: “{}” is not an order; choose newest, ending, price or price-desc.",
                    clip(o, 40)
                ));
            }
        }
        if !wrong.is_empty() {
            return Err(wrong);
        }
        let order = self.order();
        // Older links page the id order with `after`.
        let order = if self.after.is_some() && self.sort.is_none() && self.cursor.is_none() {
            BoardOrder::Id
        } else {
            order
        };
        let q = BoardQuery {
            q: self.q.clone(),
            min_price: self.min_price.clone(),
            max_price: self.max_price.clone(),
            currency: self.currency.clone(),
            active_at,
            mode: self.mode.clone(),
            after: self.after.clone(),
            limit: Some(self.page_len()),
            sort: Some(order.name().to_owned()),
            cursor: self.cursor.clone(),
        };
        // What is left to check: currencies that disagree, a search text over
        // its limits, a cursor of another order.
        match q.filter().and_then(|_| q.order_and_start()) {
            Ok(_) => Ok(q),
            Err(p) => Err(vec![p
                .detail
                .unwrap_or_else(|| "This search cannot be run.".to_owned())]),
        }
    }

    /// The address of this search's page starting at `cursor` (none: the
    /// first page), for links.
    pub fn href(&self, cursor: Option<&str>) -> String {
        let mut f = self.clone();
        f.after = None;
        f.cursor = cursor.map(str::to_owned);
        if f.sort.is_none() && self.after.is_some() {
            f.sort = Some(BoardOrder::Id.name().to_owned());
        }
        f.link()
    }

    /// The address of this search's first page in `order`.
    pub fn href_sorted(&self, order: BoardOrder) -> String {
        let mut f = self.clone();
        f.after = None;
        f.cursor = None;
        f.sort = (order != BoardOrder::Newest).then(|| order.name().to_owned());
        f.link()
    }

    fn link(&self) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(qs) if !qs.is_empty() => format!("/?{qs}"),
            _ => "/".to_owned(),
        }
    }
}

fn input(id: &str, label: &str, value: &Option<String>, extra: &str) -> String {
    format!(
        "<div class=\"field{wide}\"><label for=\"{id}\">{label}</label>\
         <input id=\"{id}\" name=\"{id}\" value=\"{value}\"{extra}></div>\n",
        wide = if id == "q" { " wide" } else { "" },
        value = escape(value.as_deref().unwrap_or("")),
    )
}

fn search_form(form: &BoardForm) -> String {
    let mut h = String::from(
        "<form class=\"search\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Search the board\">\n",
    );
    h.push_str(&input(
        "q",
        "Search words",
        &form.q,
        " type=\"search\" placeholder=\"e.g. bicycle red\" maxlength=\"200\"",
    ));
    h.push_str(&input(
        "min_price",
        "Minimum price",
        &form.min_price,
        " placeholder=\"10 EUR\"",
    ));
    h.push_str(&input(
        "max_price",
        "Maximum price",
        &form.max_price,
        " placeholder=\"200 EUR\"",
    ));
    h.push_str(&input(
        "currency",
        "Currency",
        &form.currency,
        " placeholder=\"EUR\" autocapitalize=\"characters\"",
    ));
    let mode = form.mode.as_deref().unwrap_or("");
    h.push_str(
        "<div class=\"field\"><label for=\"mode\">Mode</label><select id=\"mode\" name=\"mode\">",
    );
    for (value, label) in [
        ("", "any"),
        ("first-come", "first come"),
        ("bidding", "bidding"),
    ] {
        let _ = write!(
            h,
            "<option value=\"{value}\"{}>{label}</option>",
            if value == mode { " selected" } else { "" }
        );
    }
    h.push_str("</select></div>\n");
    // Kept across searches: the page length, the activity time and the
    // order, which the form has no fields for.
    for (name, v) in [
        ("limit", &form.limit),
        ("active_at", &form.active_at),
        ("sort", &form.sort),
    ] {
        if let Some(v) = v {
            let _ = write!(
                h,
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(v)
            );
        }
    }
    h.push_str("<div class=\"actions\"><button type=\"submit\" id=\"search\">Search</button>");
    if form.filtered() {
        h.push_str("<a href=\"/\">Clear the search</a>");
    }
    h.push_str("</div>\n</form>\n");
    h
}

/// One CPO of the list, at `now`.
fn entry_html(e: &Value, now: u64) -> String {
    let id = text(e, "id");
    let status = text(e, "status");
    let mut h = format!(
        "<li class=\"cpo\"><a class=\"goods\" href=\"/cpo/{}\">{}</a>",
        escape(id),
        escape(text(e, "goods"))
    );
    if !status.is_empty() && status != "open" {
        let _ = write!(h, " <span class=\"badge\">{}</span>", escape(status));
    }
    let _ = write!(
        h,
        "\n<dl class=\"facts\"><div><dt>Price</dt><dd class=\"price\">{}</dd></div>\
         <div><dt>Mode</dt><dd class=\"mode\">{}</dd></div>",
        escape(text(e, "price")),
        escape(mode_text(text(e, "mode")))
    );
    if let Some(n) = e.get("bids").and_then(Value::as_u64) {
        let _ = write!(h, "<div><dt>Bids</dt><dd class=\"bids\">{n}</dd></div>");
    }
    if let Some(end) = secs(e, "end") {
        let _ = write!(
            h,
            "<div><dt>Ends</dt><dd class=\"ends\">{}</dd></div>\
             <div><dt>Time left</dt><dd class=\"left\">{}</dd></div>",
            time_html(end),
            escape(&time_left(now, secs(e, "start").unwrap_or(0), end))
        );
    }
    h.push_str("</dl></li>\n");
    h
}

/// The links that sort the board, the current order marked.
fn sort_links(form: &BoardForm) -> String {
    let current = form.order();
    let mut h = String::from(
        "<nav class=\"sort\" aria-label=\"Sort\" id=\"sort\"><span class=\"label\">Sort:</span>",
    );
    for (order, label) in [
        (BoardOrder::Newest, "Newest"),
        (BoardOrder::EndingSoonest, "Ending soonest"),
        (BoardOrder::PriceLow, "Price: low to high"),
        (BoardOrder::PriceHigh, "Price: high to low"),
    ] {
        let _ = write!(
            h,
            "<a href=\"{}\" data-sort=\"{}\"{}>{label}</a>",
            escape(&form.href_sorted(order)),
            order.name(),
            if order == current {
                " aria-current=\"true\""
            } else {
                ""
            }
        );
    }
    h.push_str("</nav>\n");
    h
}

/// The board page at `now`: the form as typed, then either what is wrong
/// with it (`errors`) or the `page` (public JSON of
/// [`crate::cpo::public_json`], with bid counts), in the order chosen,
/// with a link to the next page if there is one.
pub fn render_board(
    form: &BoardForm,
    page_of: &BoardPage,
    errors: &[String],
    public_url: &str,
    now: u64,
) -> String {
    let entries = &page_of.entries;
    let mut h = String::from(
        "<h1>Open purchase orders</h1>\n<p class=\"lead\">Buyers post bonded, arbiter-approved \
         Conditional Purchase Orders: what they want and the price they will pay. \
         A bonded seller binds one and the deal is made. \
         <a href=\"/how-to-bind\">How to bind a CPO</a>.</p>\n",
    );
    h.push_str(&search_form(form));
    if !errors.is_empty() {
        h.push_str(
            "<div class=\"error\" role=\"alert\" id=\"error\"><p>The search could not be run:</p><ul>",
        );
        for e in errors {
            let _ = write!(h, "<li>{}</li>", escape(e));
        }
        h.push_str("</ul></div>\n");
        return page("Open purchase orders", &h, public_url);
    }
    h.push_str(&sort_links(form));
    if entries.is_empty() {
        let said = if form.paged() {
            "No more open CPOs match."
        } else if form.filtered() {
            "No open CPOs match your search. Try fewer words or a wider price range."
        } else {
            "There are no open CPOs on this board right now."
        };
        let _ = writeln!(h, "<p class=\"empty\" id=\"empty\">{said}</p>");
    } else {
        let n = entries.len();
        let what = if form.paged() {
            " on this page"
        } else if form.filtered() {
            if n == 1 {
                " matches"
            } else {
                " match"
            }
        } else {
            ""
        };
        let _ = write!(
            h,
            "<p class=\"count\" id=\"count\">{n} open CPO{}{what}</p>\n<ul class=\"cpos\" id=\"results\">\n",
            if n == 1 { "" } else { "s" },
        );
        for e in entries {
            h.push_str(&entry_html(e, now));
        }
        h.push_str("</ul>\n");
    }
    let next = page_of.next.as_deref();
    if form.paged() || next.is_some() {
        h.push_str("<nav class=\"pager\" aria-label=\"pages\">");
        if form.paged() {
            let _ = write!(h, "<a href=\"{}\">First page</a>", escape(&form.href(None)));
        }
        if let Some(cursor) = next {
            let _ = write!(
                h,
                "<a rel=\"next\" id=\"next\" href=\"{}\">Next page</a>",
                escape(&form.href(Some(cursor)))
            );
        }
        h.push_str("</nav>\n");
    }
    page("Open purchase orders", &h, public_url)
}

// ------------------------------------------------------------ one CPO

fn row(h: &mut String, id: &str, label: &str, value_html: &str, class: &str) {
    let _ = writeln!(
        h,
        "<div><dt>{label}</dt><dd id=\"{id}\"{}>{value_html}</dd></div>",
        if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        }
    );
}

/// The CPO page for `cpo` (the JSON of [`CpoService::cpo_json`]) at
/// `now`: its public fields, its status, the time it has left, and the
/// commands that bind it through the node at `public_url`.
pub fn render_cpo(cpo: &Value, public_url: &str, now: u64) -> String {
    let id = text(cpo, "id");
    let goods = text(cpo, "goods");
    let status = text(cpo, "status");
    let mode = text(cpo, "mode");
    let url = node_url(public_url);
    let mut h = format!(
        "<p><a href=\"/\">← All open CPOs</a></p>\n<article>\n<h1 id=\"goods\">{}</h1>\n\
         <p>Status: <span id=\"status\" class=\"{}\">{}</span></p>\n<dl class=\"detail\">\n",
        escape(goods),
        status_class(status),
        escape(status)
    );
    row(
        &mut h,
        "price",
        "Price",
        &escape(text(cpo, "price")),
        "price",
    );
    row(&mut h, "mode", "Mode", &escape(mode_text(mode)), "");
    for (key, label) in [
        ("start", "Starts"),
        ("end", "Ends"),
        ("bound_at", "Bound"),
        ("taken_down_at", "Taken down"),
    ] {
        if let Some(t) = secs(cpo, key) {
            row(&mut h, &key.replace('_', "-"), label, &time_html(t), "");
        }
    }
    if let (Some(end), "open" | "not yet active") = (secs(cpo, "end"), status) {
        let left = time_left(now, secs(cpo, "start").unwrap_or(0), end);
        row(&mut h, "time-left", "Time left", &escape(&left), "");
    }
    if let Some(n) = cpo.get("bids").and_then(Value::as_u64) {
        row(&mut h, "bids", "Bids", &n.to_string(), "");
    }
    let terms = text(cpo, "terms");
    row(
        &mut h,
        "terms",
        "Terms",
        &if terms.is_empty() {
            "(none)".to_owned()
        } else {
            escape(terms)
        },
        "",
    );
    row(
        &mut h,
        "arbiter",
        "Arbiter key id",
        &escape(text(cpo, "arbiter")),
        "id",
    );
    row(&mut h, "cpo-id", "CPO id", &escape(id), "id");
    h.push_str("</dl>\n</article>\n");

    let bidding = mode == "bidding";
    let _ = write!(
        h,
        "<section class=\"howto\" id=\"how-to-bind\" aria-labelledby=\"how-to-bind-h\">\n<h2 id=\"how-to-bind-h\">How to {} this CPO</h2>\n",
        if bidding { "bid on" } else { "bind" }
    );
    match status {
        "open" | "not yet active" => {
            h.push_str(
                "<p>With a seller's bond from a bonding agency this node trusts, open a browse \
                 session with the node, then ",
            );
            h.push_str(if bidding {
                "bid. The arbiter awards the CPO to the lowest bid when bidding closes.</p>\n"
            } else {
                "bind. The first valid binding wins; the server's signed BOUND_CPO is the contract.</p>\n"
            });
            let last = if bidding {
                format!(
                    "agora cpo bid {} --seller <you> --price \"<your price>\" --out bid.cose --node {url}",
                    id
                )
            } else {
                format!("agora cpo bind {id} --seller <you> --out bound.cose --node {url}")
            };
            let cmds = format!(
                "agora cpo session --seller <you> --bond <your-bond.pem> --node {url}\n{last}"
            );
            let _ = writeln!(
                h,
                "<pre id=\"commands\"><code>{}</code></pre>",
                escape(&cmds)
            );
            if status == "not yet active" {
                h.push_str("<p>It can be bound from its start date on.</p>\n");
            }
            h.push_str("<p><a href=\"/how-to-bind\">Step by step, for sellers</a></p>\n");
        }
        other => {
            let _ = writeln!(
                h,
                "<p>This CPO is {}: it can no longer be {}. \
                 <a href=\"/\">See the open CPOs</a>.</p>",
                escape(other),
                if bidding { "bid on" } else { "bound" }
            );
        }
    }
    h.push_str("</section>\n");
    let title = if goods.is_empty() { "A CPO" } else { goods };
    page(&clip(title, 60), &h, public_url)
}

// ------------------------------------------------------------ for sellers

/// The sellers' guide: bond, trusting the node, browse session, bind or
/// bid, end the session, with the node at `public_url`, whose CPO server and
/// arbiter have the key ids `server` and `arbiter` (as its `/v1/node` says).
pub fn render_how_to_bind(public_url: &str, server: Option<&str>, arbiter: Option<&str>) -> String {
    let url = escape(node_url(public_url));
    let mut says = String::new();
    for (what, kid) in [("CPO server", server), ("arbiter", arbiter)] {
        if let Some(k) = kid {
            let _ = write!(
                says,
                "<li>its {what}: <span class=\"id\" id=\"{}-key\">{}</span></li>",
                if what == "arbiter" {
                    "arbiter"
                } else {
                    "server"
                },
                escape(k)
            );
        }
    }
    let says = if says.is_empty() {
        String::new()
    } else {
        format!("<p>This node says its keys are:</p><ul>{says}</ul>\n")
    };
    let body = format!(
        r#"<h1>How to bind a CPO</h1>
<p class="lead">A Conditional Purchase Order (CPO) is a buyer's signed promise to pay its price for its goods, on its terms,
approved by an arbiter and posted on this board. As a seller you <em>bind</em> it: the first valid binding wins, and the
server's signature on it (BOUND_CPO) is the contract. CPOs in bidding mode take bids instead, and the arbiter awards them.
You need the <code>agora</code> command-line tool; every command below talks to this node through <code>--node</code>.</p>
<ol class="steps">
<li><h2>Get a seller's bond</h2>
<p>Make your key pair, then ask a bonding agency that this node trusts to bond you as a seller, for at least the prices
you want to bind. The agency gives you a bond certificate (a PEM file).</p>
<pre><code>agora key new &lt;you&gt;
agora cert verify &lt;your-bond.pem&gt; --role seller</code></pre></li>
<li><h2>Trust this node</h2>
<p>Pin the node's CPO server and arbiter keys in your trust store, once. Check the key ids against the ones the
node's operator gives you, not only against this page: the command refuses to pin other keys.</p>
{says}<pre><code>agora cpo trust-node {url} --expect-server &lt;server key id&gt; --expect-arbiter &lt;arbiter key id&gt;</code></pre>
<p>Every command below takes <code>--node {url}</code>; setting <code>AGORA_NODE={url}</code> in your shell does the same.</p></li>
<li><h2>Open a browse session</h2>
<p>The node checks your bond and gives you a session key, kept in your keystore. A session lasts 24 hours;
<code>--hours</code> sets another length.</p>
<pre><code>agora cpo session --seller &lt;you&gt; --bond &lt;your-bond.pem&gt; --node {url}</code></pre></li>
<li><h2>Find a CPO</h2>
<p>Search <a href="/">this board</a>, or list the open CPOs from the command line:</p>
<pre><code>agora cpo list --search "bicycle red" --max-price "200 EUR" --node {url}</code></pre></li>
<li><h2>Bind it (first come)</h2>
<p>If you are first, the server signs BOUND_CPO: your contract with the buyer, written to the file you name.
If someone was faster, the node says the CPO is already bound.</p>
<pre><code>agora cpo bind &lt;cpo-id&gt; --seller &lt;you&gt; --offer "Ships tomorrow" --out bound.cose --node {url}</code></pre></li>
<li><h2>Or bid (bidding CPOs)</h2>
<p>Offer your price, at most the CPO's, in its currency. The server's signed receipt says when the award is due; after
bidding closes the arbiter awards the lowest bid.</p>
<pre><code>agora cpo bid &lt;cpo-id&gt; --seller &lt;you&gt; --price "95.00 EUR" --details "3 days" --out bid.cose --node {url}</code></pre></li>
<li><h2>End the session</h2>
<p>When you are done, end the session: its key binds nothing more.</p>
<pre><code>agora cpo end-session --seller &lt;you&gt; --node {url}</code></pre></li>
</ol>
<p class="notice">The board never shows who the buyer is, nor any bond: you learn what the CPO makes public, and the
contract carries the rest.</p>"#
    );
    page("How to bind a CPO", &body, public_url)
}

// ------------------------------------------------------------ bound lately

/// The page of the CPOs bound or awarded lately (`entries`: the JSON of
/// [`CpoService::recently_bound_json`], the latest first).
pub fn render_recent(entries: &[Value], public_url: &str) -> String {
    let mut h = String::from(
        "<h1>Recently bound and awarded</h1>\n<p class=\"lead\">A CPO leaves the board once a seller \
         binds it, or once the arbiter awards it to the lowest bid. These found their seller lately, \
         the latest first. <a href=\"/\">See the open CPOs</a>.</p>\n",
    );
    if entries.is_empty() {
        h.push_str("<p class=\"empty\" id=\"empty\">No CPO has been bound here yet.</p>\n");
        return page("Recently bound and awarded", &h, public_url);
    }
    h.push_str("<ul class=\"cpos\" id=\"recent\">\n");
    for e in entries {
        let status = text(e, "status");
        let _ = write!(
            h,
            "<li class=\"cpo\"><a class=\"goods\" href=\"/cpo/{}\">{}</a> \
             <span class=\"{}\">{}</span>\n<dl class=\"facts\">\
             <div><dt>Price</dt><dd class=\"price\">{}</dd></div>\
             <div><dt>Mode</dt><dd class=\"mode\">{}</dd></div>",
            escape(text(e, "id")),
            escape(text(e, "goods")),
            status_class(status),
            escape(status),
            escape(text(e, "price")),
            escape(mode_text(text(e, "mode"))),
        );
        if let Some(t) = secs(e, "bound_at") {
            let _ = write!(
                h,
                "<div><dt>{}</dt><dd class=\"bound-at\">{}</dd></div>",
                if status == "awarded" {
                    "Awarded"
                } else {
                    "Bound"
                },
                time_html(t)
            );
        }
        h.push_str("</dl></li>\n");
    }
    h.push_str("</ul>\n");
    page("Recently bound and awarded", &h, public_url)
}

// ------------------------------------------------------------ the store

/// `s` as one word for a POSIX shell: as it is if it needs no quoting,
/// else in single quotes (a `'` in it as `'\''`).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A size for people: `3.1 MB`, `16 bytes`.
fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return format!("{:.1} {name}", bytes as f64 / unit as f64);
        }
    }
    format!("{bytes} bytes")
}

/// The file name a product is saved to in its buy command: its code (the
/// ProductID up to a colon or a space), in small letters.
fn out_name(product_id: &str) -> String {
    let code: String = product_id
        .split([':', ' '])
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if code.is_empty() {
        "product.bin".to_owned()
    } else {
        format!("{code}.bin")
    }
}

/// The command that buys `product_id` at up to `price` through the node at
/// `url`, as the store page prints it (the customer's name left for her to
/// fill in: `<you>`).
pub fn buy_command(product_id: &str, price: &str, url: &str) -> String {
    format!(
        "agora speed buy --as <you> --product {} --limit {} --out {} --node {}",
        shell_word(product_id),
        shell_word(price),
        out_name(product_id),
        shell_word(url)
    )
}

/// The store page: the vendor's catalogue (the JSON of `GET
/// /v1/speed/catalogue`), each product with its price and the command that
/// buys it through the node at `public_url`.
pub fn render_store(catalogue: &Value, public_url: &str) -> String {
    let url = node_url(public_url);
    let products: &[Value] = catalogue
        .get("products")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut h = format!(
        "<h1>Store</h1>\n<p class=\"lead\">Digital products sold by this node's SPEED vendor \
         (key id <span class=\"id\" id=\"vendor-key\">{}</span>). A purchase arrives encrypted; \
         you pay through the broker, and the broker's signed receipt carries the key that opens it. \
         No money moves unless the product was delivered.</p>\n",
        escape(text(catalogue, "vendor"))
    );
    let _ = write!(
        h,
        "<section class=\"howto\" id=\"how-to-buy\" aria-labelledby=\"how-to-buy-h\">\n\
         <h2 id=\"how-to-buy-h\">How to buy</h2>\n\
         <p>You need the <code>agora</code> command-line tool, a key pair, and an account at this \
         node's broker with money in it. The broker opens the account on the node's data directory \
         (its operator does this; on a node you run with <code>agora up</code>, you do):</p>\n\
         <pre id=\"setup\"><code>{}</code></pre>\n\
         <p>Then buy with the command under the product, your name in place of \
         <code>&lt;you&gt;</code>. It pays at most the list price; the product is written to the \
         file after <code>--out</code>.</p>\n</section>\n",
        escape(&format!(
            "agora key new <you>\nagora speed register <you> --deposit {}",
            shell_word("20.00 EUR")
        ))
    );
    if products.is_empty() {
        h.push_str("<p class=\"empty\" id=\"empty\">Nothing is on sale right now.</p>\n");
        return page("Store", &h, public_url);
    }
    let n = products.len();
    let _ = write!(
        h,
        "<p class=\"count\" id=\"count\">{n} product{} on sale</p>\n<ul class=\"products\" id=\"products\">\n",
        if n == 1 { "" } else { "s" }
    );
    for p in products {
        let id = text(p, "product_id");
        let price = text(p, "list_price");
        let negotiable = p.get("negotiable").and_then(Value::as_bool) == Some(true);
        let _ = write!(
            h,
            "<li class=\"product\"><h2 class=\"product-id\">{}</h2>\n<dl class=\"facts\">\
             <div><dt>Price</dt><dd class=\"price\">{}</dd></div>",
            escape(id),
            escape(price)
        );
        if let Some(size) = p.get("size").and_then(Value::as_u64) {
            let _ = write!(
                h,
                "<div><dt>Size</dt><dd class=\"size\">{}</dd></div>",
                size_text(size)
            );
        }
        let _ = write!(
            h,
            "<div><dt>Negotiable</dt><dd class=\"negotiable\">{}</dd></div></dl>\n\
             <pre class=\"buy\"><code>{}</code></pre></li>\n",
            if negotiable {
                "yes: the vendor may come down"
            } else {
                "no"
            },
            escape(&buy_command(id, price, url))
        );
    }
    h.push_str("</ul>\n");
    page("Store", &h, public_url)
}

// ------------------------------------------------------------ handlers

/// An HTML response with the headers every page carries.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, Html(body)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A failed call as a page: the detail of a client error, nothing of a
/// server's.
fn problem_page(p: &Problem, public_url: &str) -> Response {
    let (heading, message) = if p.status == StatusCode::NOT_FOUND {
        ("Not found", p.detail.clone().unwrap_or_default())
    } else if p.status == StatusCode::SERVICE_UNAVAILABLE
        || p.status == StatusCode::TOO_MANY_REQUESTS
    {
        (
            "The node is busy",
            "Too many requests at once. Please try again in a moment.".to_owned(),
        )
    } else if p.status.is_client_error() {
        (
            "That request could not be served",
            p.detail.clone().unwrap_or_default(),
        )
    } else {
        (
            "Something went wrong",
            "The node could not serve this page. Please try again later.".to_owned(),
        )
    };
    let mut r = html(p.status, render_error(heading, &message, public_url));
    r.extensions_mut()
        .insert(crate::problem::ProblemCode(p.code));
    // A busy node's page says when to come back, as its problem document
    // would.
    if let Some(secs) = p.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

async fn board_page(State((web, core)): State<Web>, RawQuery(raw): RawQuery) -> Response {
    let url = &core.config.public_url;
    let now = Timestamp::now_from_system_clock();
    let none = BoardPage {
        entries: Vec::new(),
        next: None,
    };
    let form = match BoardForm::from_query(raw.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                render_board(&BoardForm::default(), &none, &[e], url, now.secs()),
            )
        }
    };
    let query = match form.board_query() {
        Ok(q) => q,
        Err(errors) => {
            return html(
                StatusCode::BAD_REQUEST,
                render_board(&form, &none, &errors, url, now.secs()),
            )
        }
    };
    let svc = web.cpo.clone();
    match blocking(move || svc.board_page(&query, now)).await {
        Ok(found) => html(
            StatusCode::OK,
            render_board(&form, &found, &[], url, now.secs()),
        ),
        Err(p) if p.status.is_client_error() && p.status != StatusCode::TOO_MANY_REQUESTS => {
            let why = p
                .detail
                .unwrap_or_else(|| "This search cannot be run.".to_owned());
            html(
                StatusCode::BAD_REQUEST,
                render_board(&form, &none, &[why], url, now.secs()),
            )
        }
        Err(p) => problem_page(&p, url),
    }
}

async fn recent_page(State((web, core)): State<Web>) -> Response {
    let url = &core.config.public_url;
    let svc = web.cpo.clone();
    let now = Timestamp::now_from_system_clock();
    match blocking(move || svc.recently_bound_json(RECENT, now)).await {
        Ok(entries) => html(StatusCode::OK, render_recent(&entries, url)),
        Err(p) => problem_page(&p, url),
    }
}

async fn store_page(State((_, core)): State<Web>) -> Response {
    let url = &core.config.public_url;
    match core.storefront() {
        Some(Ok(catalogue)) => html(StatusCode::OK, render_store(&catalogue, url)),
        Some(Err(p)) => problem_page(&p, url),
        None => html(
            StatusCode::NOT_FOUND,
            render_error(
                "No store here",
                "This node runs no SPEED vendor: there is nothing to buy here.",
                url,
            ),
        ),
    }
}

/// A file built into the binary, of `content_type`, cached for `cache`.
fn asset(content_type: &'static str, cache: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn favicon() -> Response {
    asset("image/svg+xml", "public, max-age=86400", FAVICON_SVG)
}

async fn cpo_page(
    State((web, core)): State<Web>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let url = &core.config.public_url;
    let bad = |shown: &str| {
        html(
            StatusCode::BAD_REQUEST,
            render_error(
                "Not a CPO id",
                &format!(
                    "“{}” is not a CPO id: a CPO id is 64 hexadecimal digits.",
                    clip(shown, 80)
                ),
                url,
            ),
        )
    };
    let Ok(Path(id)) = id else {
        return bad("?");
    };
    let Ok(key) = KeyId::from_hex(&id) else {
        return bad(&id);
    };
    let svc = web.cpo.clone();
    let now = Timestamp::now_from_system_clock();
    match blocking(move || svc.cpo_json(&key.0, now)).await {
        Ok(json) => html(StatusCode::OK, render_cpo(&json, url, now.secs())),
        Err(p) if p.status == StatusCode::NOT_FOUND => html(
            StatusCode::NOT_FOUND,
            render_error(
                "No such CPO",
                &format!(
                    "This board has no CPO {}. It may have been posted to another node.",
                    key
                ),
                url,
            ),
        ),
        Err(p) => problem_page(&p, url),
    }
}

async fn how_to_bind_page(State((web, core)): State<Web>) -> Response {
    let node = web.cpo.describe();
    let kid = |role: &str| node[role]["key_id"].as_str().map(str::to_owned);
    let (server, arbiter) = (kid("server"), kid("arbiter"));
    html(
        StatusCode::OK,
        render_how_to_bind(
            &core.config.public_url,
            server.as_deref(),
            arbiter.as_deref(),
        ),
    )
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", "public, max-age=3600", STYLE_CSS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "http://node.example:7878/";
    /// A time between the test CPO's start and end.
    const NOW: u64 = 1_800_000_000 + 86_400 * 3 + 3600 * 5;

    fn listed(entries: Vec<Value>, next: Option<&str>) -> BoardPage {
        BoardPage {
            entries,
            next: next.map(str::to_owned),
        }
    }

    fn cpo(goods: &str, status: &str) -> Value {
        json!({
            "id": "ab".repeat(32),
            "goods": goods,
            "price": "120.00 EUR",
            "price_cents": 12000,
            "currency": "EUR",
            "start": 1_800_000_000u64,
            "end": 1_802_592_000u64,
            "terms": "Deliver within 5 days & \"quickly\" <b>please</b>",
            "mode": "first-come",
            "arbiter": "cd".repeat(32),
            "posted_at": 1_800_000_100u64,
            "status": status,
        })
    }

    #[test]
    fn escape_replaces_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn a_script_in_the_goods_is_text_everywhere() {
        let evil = "Radio <script>alert('x')</script> & \"co\"";
        let c = cpo(evil, "open");
        for html in [
            render_cpo(&c, URL, NOW),
            render_board(
                &BoardForm::default(),
                &listed(vec![c.clone()], None),
                &[],
                URL,
                NOW,
            ),
            render_recent(std::slice::from_ref(&c), URL),
        ] {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<b>"), "terms are escaped too");
            assert!(html.contains(
                "Radio &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"
            ));
        }
        // What a person typed is escaped too, in the form and in errors.
        let form = BoardForm::from_query("q=%22%3E%3Cscript%3E&min_price=%3Cimg%3E").unwrap();
        let errors = form.board_query().unwrap_err();
        let html = render_board(&form, &listed(vec![], None), &errors, URL, NOW);
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;\""));
    }

    #[test]
    fn dates_are_utc_for_people() {
        assert_eq!(utc(0), "1 Jan 1970, 00:00 UTC");
        assert_eq!(utc(1_800_000_000), "15 Jan 2027, 08:00 UTC");
        assert_eq!(utc(951_825_600), "29 Feb 2000, 12:00 UTC");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        // A signed CPO may name any time: far ones render, without a panic.
        assert!(utc(u64::MAX).ends_with(" UTC"));
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn the_cpo_page_shows_the_public_fields_and_the_commands() {
        let html = render_cpo(&cpo("A first edition", "open"), URL, NOW);
        assert!(html
            .contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(html.contains("<h1 id=\"goods\">A first edition</h1>"));
        assert!(html.contains("<span id=\"status\" class=\"status status-open\">open</span>"));
        assert!(html.contains(">120.00 EUR<"));
        assert!(html.contains("15 Jan 2027, 08:00 UTC"));
        assert!(html.contains(&"cd".repeat(32)));
        let id = "ab".repeat(32);
        assert!(html.contains(
            "agora cpo session --seller &lt;you&gt; --bond &lt;your-bond.pem&gt; --node http://node.example:7878\n"
        ));
        assert!(html.contains(&format!(
            "agora cpo bind {id} --seller &lt;you&gt; --out bound.cose --node http://node.example:7878</code>"
        )));
        assert!(!html.contains("<script"), "no JavaScript");
    }

    #[test]
    fn a_bound_cpo_says_so_and_offers_no_command() {
        let mut c = cpo("A lamp", "bound");
        c["bound_at"] = 1_800_000_500u64.into();
        let html = render_cpo(&c, URL, NOW);
        assert!(html.contains("class=\"status status-bound\">bound</span>"));
        assert!(html.contains("id=\"bound-at\""));
        assert!(html.contains("This CPO is bound: it can no longer be bound."));
        assert!(!html.contains("agora cpo bind"));
        let html = render_cpo(&cpo("A lamp", "taken down"), URL, NOW);
        assert!(html.contains("status-taken-down"));
    }

    #[test]
    fn a_bidding_cpo_shows_the_bid_command() {
        let mut c = cpo("A boat", "open");
        c["mode"] = "bidding".into();
        let html = render_cpo(&c, URL, NOW);
        assert!(html.contains("How to bid on this CPO"));
        assert!(html.contains("agora cpo bid "));
        assert!(!html.contains("agora cpo bind "));
    }

    #[test]
    fn the_board_lists_links_and_pages() {
        let entries = vec![cpo("One", "open"), cpo("Two", "not yet active")];
        let form = BoardForm::from_query("q=bike&mode=any&min_price=&limit=2").unwrap();
        assert_eq!(form.mode, None, "any is no filter");
        assert_eq!(form.min_price, None, "blank is no filter");
        let cursor = format!("newest.7.{}", "ab".repeat(32));
        let html = render_board(
            &form,
            &listed(entries.clone(), Some(&cursor)),
            &[],
            URL,
            NOW,
        );
        assert!(html.contains(&format!(
            "<a class=\"goods\" href=\"/cpo/{}\">One</a>",
            "ab".repeat(32)
        )));
        assert!(html.contains("<span class=\"badge\">not yet active</span>"));
        assert!(html.contains(&format!(
            "<a rel=\"next\" id=\"next\" href=\"/?q=bike&amp;limit=2&amp;cursor={cursor}\">Next page</a>"
        )));
        assert!(html.contains("value=\"bike\""));
        let last = render_board(&form, &listed(entries, None), &[], URL, NOW);
        assert!(!last.contains("Next page"));
    }

    #[test]
    fn nothing_found_is_said_plainly() {
        let html = render_board(&BoardForm::default(), &listed(vec![], None), &[], URL, NOW);
        assert!(html.contains("There are no open CPOs on this board right now."));
        let form = BoardForm::from_query("q=unicorn").unwrap();
        let html = render_board(&form, &listed(vec![], None), &[], URL, NOW);
        assert!(html.contains("No open CPOs match your search."));
        assert!(html.contains("Clear the search"));
    }

    #[test]
    fn bad_input_is_explained_field_by_field() {
        let form =
            BoardForm::from_query("min_price=abc&currency=euro&mode=auction&after=xyz&limit=many")
                .unwrap();
        let errors = form.board_query().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors[0].starts_with("Minimum price: “abc” is not an amount of money"));
        // Currencies that disagree are caught by the board's own checks.
        let form = BoardForm::from_query("min_price=10+EUR&currency=USD").unwrap();
        assert_eq!(form.board_query().unwrap_err().len(), 1);
        // A bare number is a price in the chosen currency; codes are capitalised.
        let form = BoardForm::from_query("min_price=10&max_price=20.5&currency=eur").unwrap();
        let q = form.board_query().unwrap();
        assert_eq!(q.min_price.as_deref(), Some("10 EUR"));
        assert_eq!(q.max_price.as_deref(), Some("20.5 EUR"));
        assert_eq!(q.currency.as_deref(), Some("EUR"));
        assert_eq!(q.limit, Some(PAGE));
        assert_eq!(
            q.sort.as_deref(),
            Some("newest"),
            "people see the newest first"
        );
    }

    #[test]
    fn the_guide_names_every_command_with_the_node() {
        let html = render_how_to_bind(URL, Some("<server>"), None);
        assert!(html.contains("<span class=\"id\" id=\"server-key\">&lt;server&gt;</span>"));
        assert!(!html.contains("arbiter-key"));
        for cmd in [
            "agora cpo session",
            "agora cpo list",
            "agora cpo bind",
            "agora cpo bid",
            "agora cpo end-session",
        ] {
            let line = html
                .lines()
                .find(|l| l.contains(cmd))
                .unwrap_or_else(|| panic!("{cmd} missing"));
            assert!(line.contains("--node http://node.example:7878"), "{line}");
        }
    }

    #[test]
    fn time_left_counts_down_to_the_minute() {
        assert_eq!(span(0), "under a minute");
        assert_eq!(span(7 * 60 + 5), "7 min");
        assert_eq!(span(5 * 3600), "5 h");
        assert_eq!(span(5 * 3600 + 12 * 60), "5 h 12 min");
        assert_eq!(span(86_400 + 4 * 3600), "1 day 4 h");
        assert_eq!(span(29 * 86_400 + 3600), "29 days");
        assert_eq!(time_left(100, 0, 100), "ended");
        assert_eq!(time_left(100, 200, 1000), "starts in 1 min");
        assert_eq!(time_left(100, 0, 100 + 2 * 86_400), "2 days left");
        // On the board and on the CPO's page.
        let c = cpo("A clock", "open");
        let board = render_board(
            &BoardForm::default(),
            &listed(vec![c.clone()], None),
            &[],
            URL,
            NOW,
        );
        assert!(
            board.contains("<dt>Time left</dt><dd class=\"left\">26 days left</dd>"),
            "{board}"
        );
        let page = render_cpo(&c, URL, NOW);
        assert!(
            page.contains("<dd id=\"time-left\">26 days left</dd>"),
            "{page}"
        );
        let mut bound = c;
        bound["status"] = "bound".into();
        assert!(!render_cpo(&bound, URL, NOW).contains("Time left"));
    }

    #[test]
    fn the_board_is_sorted_by_links_and_keeps_its_order() {
        let form = BoardForm::from_query("q=bike&sort=price").unwrap();
        assert_eq!(form.order(), BoardOrder::PriceLow);
        let q = form.board_query().unwrap();
        assert_eq!(q.sort.as_deref(), Some("price"));
        let html = render_board(
            &form,
            &listed(vec![cpo("Bike", "open")], None),
            &[],
            URL,
            NOW,
        );
        assert!(html.contains("<nav class=\"sort\""), "{html}");
        assert!(html.contains(
            "<a href=\"/?q=bike&amp;sort=price\" data-sort=\"price\" aria-current=\"true\">Price: low to high</a>"
        ));
        assert!(html.contains("<a href=\"/?q=bike\" data-sort=\"newest\">Newest</a>"));
        assert!(html.contains("href=\"/?q=bike&amp;sort=ending\""));
        assert!(html.contains("href=\"/?q=bike&amp;sort=price-desc\""));
        // A search keeps the order.
        assert!(html.contains("<input type=\"hidden\" name=\"sort\" value=\"price\">"));
        // The default is newest first; a bad order is explained.
        assert_eq!(BoardForm::default().order(), BoardOrder::Newest);
        let errors = BoardForm::from_query("sort=cheapest")
            .unwrap()
            .board_query()
            .unwrap_err();
        assert!(
            errors[0].starts_with("Sort: “cheapest” is not an order"),
            "{errors:?}"
        );
        // A cursor of another order is refused before the board is read.
        let id = "ab".repeat(32);
        let errors = BoardForm::from_query(&format!("sort=ending&cursor=newest.3.{id}"))
            .unwrap()
            .board_query()
            .unwrap_err();
        assert!(errors[0].contains("another order"), "{errors:?}");
    }

    #[test]
    fn bidding_cpos_show_their_bids() {
        let mut c = cpo("A boat", "open");
        c["mode"] = "bidding".into();
        c["bids"] = 2.into();
        let board = render_board(
            &BoardForm::default(),
            &listed(vec![c.clone()], None),
            &[],
            URL,
            NOW,
        );
        assert!(
            board.contains("<dt>Bids</dt><dd class=\"bids\">2</dd>"),
            "{board}"
        );
        assert!(render_cpo(&c, URL, NOW).contains("<dd id=\"bids\">2</dd>"));
        // A first-come CPO has no bids to show.
        let board = render_board(
            &BoardForm::default(),
            &listed(vec![cpo("A lamp", "open")], None),
            &[],
            URL,
            NOW,
        );
        assert!(!board.contains("Bids"));
    }

    #[test]
    fn the_store_prints_a_command_per_product() {
        assert_eq!(shell_word("DEMO-KEY-1"), "DEMO-KEY-1");
        assert_eq!(shell_word("1.50 EUR"), "'1.50 EUR'");
        assert_eq!(shell_word("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(shell_word(""), "''");
        let cat = json!({
            "vendor": "ee".repeat(32),
            "products": [
                {"product_id": "DEMO-SONG-1: Loopback <Blues>", "size": 3_145_728u64,
                 "list_price": "1.50 EUR", "negotiable": true, "aggressive": false},
                {"product_id": "DEMO-KEY-1", "size": 16, "list_price": "0.50 EUR",
                 "negotiable": false, "aggressive": true},
            ],
        });
        let html = render_store(&cat, URL);
        assert!(html.contains("2 products on sale"));
        assert!(html.contains("<h2 class=\"product-id\">DEMO-SONG-1: Loopback &lt;Blues&gt;</h2>"));
        assert!(html.contains("<dd class=\"size\">3.0 MB</dd>"));
        assert!(html.contains(
            "agora speed buy --as &lt;you&gt; --product &#39;DEMO-SONG-1: Loopback &lt;Blues&gt;&#39; \
             --limit &#39;1.50 EUR&#39; --out demo-song-1.bin --node http://node.example:7878</code>"
        ), "{html}");
        assert!(html.contains(
            "agora speed buy --as &lt;you&gt; --product DEMO-KEY-1 --limit &#39;0.50 EUR&#39; \
             --out demo-key-1.bin --node http://node.example:7878</code>"
        ));
        assert!(html.contains("agora speed register &lt;you&gt; --deposit &#39;20.00 EUR&#39;"));
        let empty = render_store(&json!({"vendor": "x", "products": []}), URL);
        assert!(empty.contains("Nothing is on sale right now."));
    }

    #[test]
    fn the_recent_page_says_bound_or_awarded_and_when() {
        let mut a = cpo("A lamp", "bound");
        a["bound_at"] = 1_800_000_500u64.into();
        let mut b = cpo("A boat", "awarded");
        b["mode"] = "bidding".into();
        b["bound_at"] = 1_800_000_600u64.into();
        let html = render_recent(&[b, a], URL);
        assert!(html.contains("<span class=\"status status-awarded\">awarded</span>"));
        assert!(html.contains("<span class=\"status status-bound\">bound</span>"));
        assert!(html.contains("<dt>Awarded</dt>") && html.contains("<dt>Bound</dt>"));
        assert!(
            html.find("A boat") < html.find("A lamp"),
            "the latest first"
        );
        assert!(render_recent(&[], URL).contains("No CPO has been bound here yet."));
    }

    #[test]
    fn every_page_links_the_icon_and_keeps_command_lines_whole() {
        for html in [
            render_board(&BoardForm::default(), &listed(vec![], None), &[], URL, NOW),
            render_how_to_bind(URL, None, None),
            render_error("x", "y", URL),
        ] {
            assert!(
                html.contains("<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">")
            );
        }
        assert!(FAVICON_SVG.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        // Command boxes: whole lines, scrolled inside the box if need be.
        let pre = STYLE_CSS
            .split("\npre {")
            .nth(1)
            .unwrap()
            .split('}')
            .next()
            .unwrap();
        assert!(
            pre.contains("white-space: pre;") && pre.contains("overflow-x: auto;"),
            "{pre}"
        );
        assert!(!pre.contains("overflow-wrap: anywhere"), "{pre}");
    }

    // ---------------------------------------------------- through the node

    struct NoTrust;
    impl crate::cpo::TrustSource<agora_cpo::BondTrust> for NoTrust {
        fn load(&self) -> Result<agora_cpo::BondTrust, String> {
            Ok(agora_cpo::BondTrust {
                agencies: agora_pki::TrustAnchors::new(),
                crls: vec![],
            })
        }
    }

    async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
        use tower::ServiceExt;
        let r = app
            .clone()
            .oneshot(
                axum::http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn pages_answer_with_the_right_status() {
        let dir = tempfile::tempdir().unwrap();
        let cpo = Arc::new(
            CpoService::new(crate::cpo::CpoSpec {
                store: agora_store::Stores::in_data_dir(
                    dir.path(),
                    agora_store::AtRestKey::generate(&mut agora_core::crypto::os_rng()),
                )
                .unwrap(),
                server: None,
                arbiter: None,
                trust: Box::new(NoTrust),
            })
            .unwrap(),
        );
        let node = crate::Node::new(crate::NodeConfig {
            public_url: URL.into(),
            ..Default::default()
        })
        .with(Arc::new(WebService::new(cpo)));
        let app = node.router();

        let (s, ct, body) = get(&app, "/").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, "text/html; charset=utf-8");
        assert!(body.contains("There are no open CPOs on this board right now."));

        let (s, ct, body) = get(&app, "/?min_price=abc").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(ct, "text/html; charset=utf-8");
        assert!(
            body.contains("Minimum price: “abc” is not an amount of money"),
            "{body}"
        );

        let long = "word ".repeat(30);
        let (s, _, body) = get(&app, &format!("/?q={}", long.replace(' ', "+"))).await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "the board's own limits are bad input too"
        );
        assert!(body.contains("words"), "{body}");

        let (s, _, body) = get(&app, &format!("/cpo/{}", "00".repeat(32))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(body.contains("No such CPO"));

        let (s, _, body) = get(&app, "/cpo/not-an-id%3Cb%3E").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            body.contains("is not a CPO id") && !body.contains("<b>"),
            "{body}"
        );

        let (s, _, body) = get(&app, "/how-to-bind").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains(
            "agora cpo end-session --seller &lt;you&gt; --node http://node.example:7878"
        ));

        let (s, ct, body) = get(&app, "/style.css").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(ct, "text/css; charset=utf-8");
        assert_eq!(body, STYLE_CSS);

        for icon in ["/favicon.svg", "/favicon.ico"] {
            let (s, ct, body) = get(&app, icon).await;
            assert_eq!(
                (s, ct.as_str()),
                (StatusCode::OK, "image/svg+xml"),
                "{icon}"
            );
            assert_eq!(body, FAVICON_SVG);
        }
        let (s, _, body) = get(&app, "/recent").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("No CPO has been bound here yet."), "{body}");
        let (s, ct, body) = get(&app, "/store").await;
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::NOT_FOUND, "text/html; charset=utf-8")
        );
        assert!(body.contains("This node runs no SPEED vendor"), "{body}");
        let (s, _, body) = get(&app, "/?sort=cheapest").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("is not an order"), "{body}");
        // The icon's requests are routes now, not unmatched ones.
        let metrics = node.core().metrics.render();
        assert!(
            metrics.contains(r#"route="/favicon.ico",status="200""#),
            "{metrics}"
        );
        assert!(!metrics.contains(r#"route="unmatched""#), "{metrics}");
    }

    /// A busy node's page carries `Retry-After`, as its problem document
    /// does (openapi.json requires it of every 503).
    #[test]
    fn a_busy_page_says_when_to_retry() {
        let r = problem_page(&Problem::overloaded("the store's write queue is full"), URL);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let r = problem_page(&Problem::not_found("no such CPO"), URL);
        assert!(r.headers().get(header::RETRY_AFTER).is_none());
    }
}
