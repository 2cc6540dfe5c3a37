//! Helpers for floe's own tests (feature `testing`): fresh databases on the
//! server the test run was given, and waiting for a process to serve.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The server the tests run against, from `DATABASE_URL`. `./scripts/test`
/// sets it to a throwaway cluster.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!("DATABASE_URL is not set: run the tests with ./scripts/test, which starts a PostgreSQL for them")
    })
}

/// Creates a new, empty database on the test server and returns its URL.
pub async fn fresh_database() -> SecretString {
    let server: PgConnectOptions = server_url().parse().expect("DATABASE_URL parses");
    let mut conn = PgConnection::connect_with(&server)
        .await
        .expect("connect to the test server");
    let name = format!("floe_test_{}", uuid::Uuid::new_v4().simple());
    // The name is ours (a fixed prefix and hex digits), never user input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let mut url = url_without_database(&server_url());
    url.push('/');
    url.push_str(&name);
    SecretString::from(url)
}

/// `url` with its path (the database name) and query removed.
fn url_without_database(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_owned()
}

/// Polls `http://{addr}{path}` until it answers `status`, for up to `timeout`.
pub async fn wait_for_status(addr: &str, path: &str, status: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if http_status(addr, path).await == Some(status) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The status code of a plain `GET http://{addr}{path}`, or `None` when
/// nothing answers. Hand-rolled over TCP to keep test dependencies small.
pub async fn http_status(addr: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Exposes a secret URL for a test that has to hand it to a child process.
pub fn expose(url: &SecretString) -> &str {
    url.expose_secret()
}

/// The body of a plain `GET http://{addr}{path}` answered with 200, or
/// `None`. Hand-rolled over TCP like [`http_status`].
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A sample's labels.
pub type Labels = std::collections::BTreeMap<String, String>;

/// A Prometheus text exposition (format 0.0.4), parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample: name, labels, value.
    pub samples: Vec<(String, Labels, f64)>,
    /// The declared type of each family.
    pub types: std::collections::BTreeMap<String, String>,
}

impl Exposition {
    /// Parses `text`; an error names the first line that is not valid
    /// exposition, a sample of an undeclared family, or a histogram whose
    /// buckets are not cumulative or disagree with its `_count`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for (n, line) in text.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                        if !valid_name(name) || !known.contains(&kind.trim()) {
                            return Err(bad("bad TYPE"));
                        }
                        out.types.insert(name.to_owned(), kind.trim().to_owned());
                    }
                    (Some("HELP"), Some(name), _) if !valid_name(name) => {
                        return Err(bad("bad HELP"));
                    }
                    _ => {}
                }
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => return Err(bad("no value")),
            };
            if !valid_name(name) {
                return Err(bad("bad metric name"));
            }
            let (labels, rest) = if let Some(rest) = rest.strip_prefix('{') {
                parse_labels(rest).ok_or_else(|| bad("bad labels"))?
            } else {
                (Labels::new(), rest)
            };
            let mut fields = rest.split_whitespace();
            let value = match fields.next() {
                Some("+Inf") => f64::INFINITY,
                Some("-Inf") => f64::NEG_INFINITY,
                Some(v) => v.parse::<f64>().map_err(|_| bad("bad value"))?,
                None => return Err(bad("no value")),
            };
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| bad("bad timestamp"))?;
            }
            if fields.next().is_some() {
                return Err(bad("trailing text"));
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| {
                        out.types
                            .get(*f)
                            .is_some_and(|t| t == "histogram" || t == "summary")
                    })
                })
                .unwrap_or(name);
            if !out.types.contains_key(family) {
                return Err(bad("sample of a family without a TYPE line"));
            }
            out.samples.push((name.to_owned(), labels, value));
        }
        out.check_histograms()?;
        Ok(out)
    }

    fn check_histograms(&self) -> Result<(), String> {
        use std::collections::BTreeMap;
        // Per histogram series (family, labels but `le`): (le, count) buckets.
        let mut series: BTreeMap<(String, Labels), Vec<(f64, f64)>> = BTreeMap::new();
        for (name, labels, value) in &self.samples {
            let Some(family) = name.strip_suffix("_bucket") else {
                continue;
            };
            let le = labels.get("le").ok_or(format!("{name} without le"))?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| format!("{name}: le {le}"))?
            };
            let mut rest = labels.clone();
            rest.remove("le");
            series
                .entry((family.to_owned(), rest))
                .or_default()
                .push((le, *value));
        }
        for ((family, wanted), buckets) in series {
            let cumulative = buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let top = buckets.last().filter(|b| b.0.is_infinite()).map(|b| b.1);
            let count = self
                .samples
                .iter()
                .find(|(n, l, _)| *n == format!("{family}_count") && *l == wanted)
                .map(|s| s.2);
            if !cumulative || top.is_none() || top != count {
                return Err(format!(
                    "histogram {family} {wanted:?}: buckets {buckets:?}, count {count:?}"
                ));
            }
        }
        Ok(())
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.2)
            .sum()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",...}` (after the `{`) and what follows the `}`.
fn parse_labels(mut rest: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        if !valid_name(key) || key.contains(':') {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return None,
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}
