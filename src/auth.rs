//! Who may connect: access tokens (file tokens and JWTs), private channels and the Origin
//! check. Decided before the 101, answered with an HTTP status (401, 403).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::http::Head;
use crate::jwt::{self, Keys};

/// The tokens that admit a WebSocket client, each optionally bound to a chat name.
///
/// File format, one token per line: `TOKEN [NAME]`. Blank lines and lines starting with `#` are
/// ignored. A token is any run of non-space characters; NAME is the rest of the line (a chat
/// name may contain spaces).
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    entries: Vec<(Arc<str>, Option<String>)>,
    /// The JWT keys, when `jwt_secret_file` or `jwt_public_key_file` is configured.
    jwt: Option<Keys>,
    /// Whether a token is required at all: from the configuration (a tokens file, inline
    /// tokens, `require_token`), never from how many entries were read, so an empty or
    /// all-comment file admits nobody instead of everybody.
    required: bool,
}

/// A token that was accepted: the file token itself (to find its connections if it is
/// revoked; `None` for a JWT, which ends at its `exp` instead), the chat name it is bound to,
/// and what a JWT's claims add (empty for a file token: an unbound, unprivileged token).
#[derive(Debug, Clone, Default)]
pub(crate) struct Grant {
    pub token: Option<Arc<str>>,
    pub name: Option<String>,
    /// The JWT's `sub`.
    pub sub: Option<String>,
    /// Relay channels (names or patterns) it may use when they are private.
    pub channels: Vec<String>,
    /// Chat rooms (names or patterns) it may join when they are private.
    pub rooms: Vec<String>,
    /// The JWT's `admin` claim.
    pub admin: bool,
    /// When the connection must end (a JWT's `exp` plus the leeway).
    pub expires: Option<SystemTime>,
}

/// Why a handshake's token was refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No token at all.
    Missing,
    /// A token that failed this check (for `error_description`).
    Invalid(&'static str),
}

impl Denied {
    /// The `WWW-Authenticate` value (RFC 6750 3: no error code when no token was presented).
    pub(crate) fn challenge(self) -> String {
        match self {
            Denied::Missing => "Bearer".to_string(),
            Denied::Invalid(why) => {
                format!("Bearer error=\"invalid_token\", error_description=\"{why}\"")
            }
        }
    }
}

impl Tokens {
    /// Parses the file format; `separator` also splits entries (the environment variable may
    /// use commas instead of newlines).
    pub(crate) fn parse(text: &str, comma_separated: bool) -> Tokens {
        let split = |c: char| c == '\n' || (comma_separated && c == ',');
        let entries = text
            .split(split)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| match line.split_once(char::is_whitespace) {
                Some((token, name)) => (Arc::from(token), Some(name.trim().to_string())),
                None => (Arc::from(line), None),
            })
            .collect();
        Tokens {
            entries,
            jwt: None,
            required: true,
        }
    }

    /// The file tokens and JWT keys that `cfg` configures, read from their files (at start
    /// and on every reload).
    pub(crate) fn from_config(cfg: &Config) -> std::io::Result<Tokens> {
        let mut tokens = Tokens::load(cfg.tokens_file.as_deref(), &cfg.tokens, cfg.require_token)?;
        tokens.jwt = Keys::load(cfg)?;
        tokens.required |= tokens.jwt.is_some();
        Ok(tokens)
    }

    /// How many JWT keys are loaded.
    pub(crate) fn jwt_keys(&self) -> usize {
        self.jwt.as_ref().map_or(0, Keys::count)
    }

    /// Reads `file` (if any) and adds the `inline` entries. Tokens are required when a file
    /// is configured, inline entries exist or `require` is set, whatever the file holds.
    pub(crate) fn load(
        file: Option<&Path>,
        inline: &[(String, Option<String>)],
        require: bool,
    ) -> std::io::Result<Tokens> {
        let mut tokens = Tokens {
            entries: inline
                .iter()
                .map(|(t, n)| (Arc::from(t.as_str()), n.clone()))
                .collect(),
            jwt: None,
            required: require || file.is_some() || !inline.is_empty(),
        };
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                std::io::Error::new(e.kind(), format!("tokens file {}: {e}", file.display()))
            })?;
            tokens.entries.extend(Tokens::parse(&text, false).entries);
        }
        Ok(tokens)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether a WebSocket client must present a valid token (see `required`).
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// The grant for `presented`, comparing it with every token in constant time (no early exit
    /// on the first differing byte, and every entry is compared), so response timing does not
    /// reveal how much of a guess was right.
    pub(crate) fn check(&self, presented: &str) -> Option<Grant> {
        let mut found = None;
        for (token, name) in &self.entries {
            if ct_eq(token.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some(Grant {
                    token: Some(token.clone()),
                    name: name.clone(),
                    ..Grant::default()
                });
            }
        }
        found
    }

    /// The grant for a handshake's token: a listed file token, else a valid JWT (when keys
    /// are configured). A token longer than `jwt::MAX_TOKEN_LEN` is refused before anything
    /// looks at its bytes, so its size costs nothing but the read.
    pub(crate) fn admit(&self, presented: Option<&str>) -> Result<Grant, Denied> {
        let presented = presented.ok_or(Denied::Missing)?;
        if presented.len() > jwt::MAX_TOKEN_LEN {
            return Err(Denied::Invalid("token too large"));
        }
        if let Some(grant) = self.check(presented) {
            return Ok(grant);
        }
        let Some(keys) = &self.jwt else {
            return Err(Denied::Invalid("unknown token"));
        };
        let id = keys.verify(presented).map_err(Denied::Invalid)?;
        Ok(Grant {
            token: None,
            name: id.name,
            sub: id.sub,
            channels: id.channels,
            rooms: id.rooms,
            admin: id.admin,
            expires: id.expires,
        })
    }

    /// The chat names the tokens are bound to, which the chat reserves for them
    /// (`Chat::set_reserved_names`).
    pub(crate) fn bound_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|(_, name)| name.as_deref())
    }

    /// The set of tokens, for finding connections whose token was revoked.
    pub(crate) fn set(&self) -> HashSet<Arc<str>> {
        self.entries.iter().map(|(t, _)| t.clone()).collect()
    }
}

/// Whether `name` matches `pattern`: a name, or a prefix ending in `*` (`team-*` matches
/// `team-a`; `*` matches everything).
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether any of `patterns` matches `name`.
pub(crate) fn any_matches(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| pattern_matches(p, name))
}

/// Equality whose running time depends only on the lengths, not on where the bytes differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The token a client presents: `?token=` (what a browser's `new WebSocket(url)` can send) or
/// `Authorization: Bearer` (what other clients usually send).
pub(crate) fn presented_token(head: &Head) -> Option<String> {
    if let Some(t) = head.query_param("token").filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let auth = head.header("authorization")?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Whether a request's `Origin` may open a WebSocket here.
///
/// No Origin: allowed (not a browser, so not a cross-site hijack). Otherwise allowed when it is
/// the server's own origin (same host and port as the `Host` header: the page at `/` talking to
/// its own server, also behind a proxy that keeps `Host`), when it is in `allowed`, or when
/// `allowed` contains `*`. Everything else, including `null` (sandboxed frames, `file:` pages),
/// is refused: that is what stops another site's page from using a visitor's browser to
/// connect (cross-site WebSocket hijacking).
/// Whether the request's `Host` (without its port) is one of `allowed`; any host when
/// `allowed` is empty. A request without `Host` is refused when a list is set.
pub(crate) fn host_allowed(head: &Head, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = head.header("host") else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    allowed.iter().any(|a| {
        a.trim_matches(|c| c == '[' || c == ']')
            .eq_ignore_ascii_case(name)
    })
}

pub(crate) fn origin_allowed(head: &Head, allowed: &[String]) -> bool {
    let Some(origin) = head.header("origin") else {
        return true;
    };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&origin))
    {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => return false,
    };
    let Some(host) = head.header("host") else {
        return false;
    };
    let split = |hp: &str| -> (String, String) {
        let hp = hp.to_ascii_lowercase();
        // A bracketed IPv6 literal keeps its colons: [::1]:8080
        match hp.rfind(':').filter(|&i| !hp[i..].contains(']')) {
            Some(i) => (hp[..i].to_string(), hp[i + 1..].to_string()),
            None => (hp, default_port.to_string()),
        }
    };
    split(authority) == split(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)], target: &str) -> Head {
        Head {
            method: "GET".into(),
            target: target.into(),
            minor_version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            rest: Vec::new(),
        }
    }

    #[test]
    fn parses_tokens_with_and_without_names() {
        let t = Tokens::parse("# comment\nabc alice smith\n\n  def  \n", false);
        assert_eq!(t.len(), 2);
        assert_eq!(t.check("abc").unwrap().name.as_deref(), Some("alice smith"));
        assert_eq!(t.check("def").unwrap().name, None);
        assert!(t.check("ab").is_none());
        assert!(t.check("abcd").is_none());
        assert!(t.check("").is_none());
        let env = Tokens::parse("x1 bob, x2", true);
        assert_eq!(env.len(), 2);
        assert_eq!(env.check("x1").unwrap().name.as_deref(), Some("bob"));
        assert_eq!(t.bound_names().collect::<Vec<_>>(), ["alice smith"]);
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("team-*", "team-a"));
        assert!(pattern_matches("team-*", "team-"));
        assert!(!pattern_matches("team-*", "tea"));
        assert!(pattern_matches("news", "news"));
        assert!(!pattern_matches("news", "newsroom"));
        assert!(pattern_matches("*", ""));
        assert!(any_matches(&["a".into(), "b-*".into()], "b-1"));
        assert!(!any_matches(&[], "x"));
    }

    #[test]
    fn admit_refuses_oversized_and_unknown_tokens_with_a_reason() {
        let t = Tokens::parse("good alice", false);
        assert_eq!(t.admit(None).unwrap_err(), Denied::Missing);
        assert_eq!(
            t.admit(Some("bad")).unwrap_err(),
            Denied::Invalid("unknown token")
        );
        let huge = "g".repeat(64 * 1024);
        assert_eq!(
            t.admit(Some(&huge)).unwrap_err(),
            Denied::Invalid("token too large")
        );
        let g = t.admit(Some("good")).unwrap();
        assert_eq!(g.name.as_deref(), Some("alice"));
        assert!(g.expires.is_none() && g.rooms.is_empty());
        assert_eq!(
            Denied::Invalid("expired").challenge(),
            r#"Bearer error="invalid_token", error_description="expired""#
        );
    }

    #[test]
    fn token_from_query_or_bearer() {
        assert_eq!(
            presented_token(&head(&[], "/chat?token=s3cr%2Bt")).as_deref(),
            Some("s3cr+t")
        );
        let h = head(&[("Authorization", "Bearer tok")], "/");
        assert_eq!(presented_token(&h).as_deref(), Some("tok"));
        let h = head(&[("Authorization", "Basic dXNlcg==")], "/");
        assert_eq!(presented_token(&h), None);
    }

    #[test]
    fn origins() {
        let same = head(
            &[
                ("Host", "chat.example:8080"),
                ("Origin", "http://chat.example:8080"),
            ],
            "/",
        );
        assert!(origin_allowed(&same, &[]));
        let default_port = head(
            &[("Host", "chat.example"), ("Origin", "https://chat.example")],
            "/",
        );
        assert!(origin_allowed(&default_port, &[]));
        let foreign = head(
            &[("Host", "chat.example"), ("Origin", "https://evil.example")],
            "/",
        );
        assert!(!origin_allowed(&foreign, &[]));
        assert!(origin_allowed(&foreign, &["https://evil.example/".into()]));
        assert!(origin_allowed(&foreign, &["*".into()]));
        let other_port = head(
            &[
                ("Host", "chat.example:8080"),
                ("Origin", "http://chat.example:9090"),
            ],
            "/",
        );
        assert!(!origin_allowed(&other_port, &[]));
        let null = head(&[("Host", "h"), ("Origin", "null")], "/");
        assert!(!origin_allowed(&null, &[]));
        assert!(origin_allowed(&head(&[("Host", "h")], "/"), &[]));
        let v6 = head(
            &[("Host", "[::1]:8080"), ("Origin", "http://[::1]:8080")],
            "/",
        );
        assert!(origin_allowed(&v6, &[]));
    }
}
