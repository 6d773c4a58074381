//! JWT admission: tokens that an app's own login API signed (HS256, RS256, ES256), checked
//! before the 101, and the claims wschat reads from them (`sub`, `name`, `channels`, `rooms`,
//! `admin`, `exp`). SECURITY.md ("JWT") documents the rules; this file enforces them.
//!
//! The cryptography is `jsonwebtoken`'s (its pure-Rust RustCrypto backend: `hmac`, `sha2`,
//! `rsa`, `p256`), built with the `jwt` cargo feature. What is done here is not cryptography:
//! bounding the size, choosing the key from the header's `alg` (from the configured set only),
//! and naming the check that failed.

use std::io;
#[cfg(feature = "jwt")]
use std::path::Path;
use std::time::SystemTime;
#[cfg(feature = "jwt")]
use std::time::UNIX_EPOCH;

use crate::config::Config;

/// Longest token looked at, in bytes; longer ones are refused before any decoding, so a
/// client cannot make the server base64-decode, parse and hash megabytes per handshake.
/// A JWT with a dozen claims is well under 1 KiB (an RS256 signature is 342 characters);
/// 8 KiB leaves room for long `rooms`/`channels` lists.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a verified token says about its holder.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Identity {
    /// `sub`: the app's user id (a string, or a number turned into one).
    pub sub: Option<String>,
    /// `name`: the chat name, bound as a file token's NAME is.
    pub name: Option<String>,
    /// `channels`: relay channels (names or `prefix-*` patterns) this user may use.
    pub channels: Vec<String>,
    /// `rooms`: chat rooms (names or patterns) this user may join.
    pub rooms: Vec<String>,
    /// `admin`: the app says this user is an administrator.
    pub admin: bool,
    /// `exp` plus the leeway: when the connection is closed with 1008 "token expired".
    pub expires: Option<SystemTime>,
}

/// Whether any JWT key is configured (then tokens are required: fail closed).
pub(crate) fn configured(cfg: &Config) -> bool {
    cfg.jwt_secret_file.is_some() || cfg.jwt_public_key_file.is_some()
}

#[cfg(feature = "jwt")]
/// Reads an HS256 secret file: its bytes as they are, with one trailing newline (`\n` or
/// `\r\n`, which editors and `echo` add) ignored, because the app that signs with the same
/// secret uses the string without it.
pub(crate) fn read_secret(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        io::Error::new(e.kind(), format!("JWT secret file {}: {e}", path.display()))
    })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        // An empty HMAC key would let anyone mint tokens: refuse to start instead.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("JWT secret file {} is empty", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(feature = "jwt")]
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(feature = "jwt")]
pub(crate) use imp::Keys;
#[cfg(feature = "jwt")]
pub use imp::{TokenClaims, sign_token};

/// Without the `jwt` feature there are no keys: configuring one is an error at start.
#[cfg(not(feature = "jwt"))]
#[derive(Debug)]
pub(crate) enum Keys {}

#[cfg(not(feature = "jwt"))]
impl Keys {
    pub(crate) fn load(cfg: &Config) -> io::Result<Option<Keys>> {
        if configured(cfg) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "JWT keys are configured but wschat was built without the `jwt` feature",
            ));
        }
        Ok(None)
    }

    pub(crate) fn count(&self) -> usize {
        match *self {}
    }

    pub(crate) fn verify(&self, _token: &str) -> Result<Identity, &'static str> {
        match *self {}
    }
}

#[cfg(feature = "jwt")]
mod imp {
    use std::collections::HashSet;
    use std::io;
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use serde::Deserialize;

    use super::{Identity, MAX_TOKEN_LEN, read_secret, unix_now};
    use crate::config::Config;

    /// The keys in force and the checks every token must pass. Replaced whole on reload.
    pub(crate) struct Keys {
        /// HS256 key (`jwt_secret_file`).
        secret: Option<DecodingKey>,
        /// RS256 keys, from the `PUBLIC KEY`/`RSA PUBLIC KEY` blocks of `jwt_public_key_file`.
        rsa: Vec<DecodingKey>,
        /// ES256 keys (P-256), from its EC `PUBLIC KEY` blocks.
        ec: Vec<DecodingKey>,
        issuer: Option<String>,
        audience: Option<String>,
        leeway: Duration,
    }

    impl std::fmt::Debug for Keys {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // Never the key material.
            f.debug_struct("Keys")
                .field("hs256", &self.secret.is_some())
                .field("rs256", &self.rsa.len())
                .field("es256", &self.ec.len())
                .field("issuer", &self.issuer)
                .field("audience", &self.audience)
                .finish()
        }
    }

    /// The header field that picks the key; everything else in it is ignored (`kid` included:
    /// every key of the `alg`'s family is tried, there are one or two).
    #[derive(Deserialize)]
    struct JoseHeader {
        alg: String,
    }

    /// The claims wschat reads. All optional here: `exp` is required by the validation
    /// (with a reason of its own), and a missing claim means "no such right".
    #[derive(Deserialize)]
    struct Claims {
        sub: Option<serde_json::Value>,
        name: Option<String>,
        channels: Option<Vec<String>>,
        rooms: Option<Vec<String>>,
        admin: Option<bool>,
        exp: Option<f64>,
    }

    impl Keys {
        /// Reads the configured key files; `Ok(None)` when none is configured.
        ///
        /// # Errors
        /// A file that cannot be read, an empty secret, a public key file without a usable
        /// RSA or P-256 public key (or with a private key in it).
        pub(crate) fn load(cfg: &Config) -> io::Result<Option<Keys>> {
            if !super::configured(cfg) {
                return Ok(None);
            }
            let secret = match &cfg.jwt_secret_file {
                Some(path) => {
                    let bytes = read_secret(path)?;
                    if bytes.len() < 32 {
                        log::warn!(
                            "JWT secret in {} is only {} bytes: HS256 wants at least 32 random bytes",
                            path.display(),
                            bytes.len()
                        );
                    }
                    Some(DecodingKey::from_secret(&bytes))
                }
                None => None,
            };
            let (mut rsa, mut ec) = (Vec::new(), Vec::new());
            if let Some(path) = &cfg.jwt_public_key_file {
                let bad = |why: String| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("JWT public key file {}: {why}", path.display()),
                    )
                };
                let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
                for block in pem_blocks(&text) {
                    let label = block
                        .lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("-----BEGIN ")
                        .trim_end_matches('-');
                    match label {
                        "PUBLIC KEY" | "RSA PUBLIC KEY" => {
                            if let Ok(key) = DecodingKey::from_rsa_pem(block.as_bytes()) {
                                rsa.push(key);
                            } else if let Ok(key) = DecodingKey::from_ec_pem(block.as_bytes()) {
                                ec.push(key);
                            } else {
                                return Err(bad(format!(
                                    "a {label} block is neither RSA nor EC (P-256)"
                                )));
                            }
                        }
                        _ if label.contains("PRIVATE") => {
                            return Err(bad(format!(
                                "holds a {label}: give the public key only (openssl pkey -pubout)"
                            )));
                        }
                        _ => return Err(bad(format!("unsupported PEM block {label:?}"))),
                    }
                }
                if rsa.is_empty() && ec.is_empty() {
                    return Err(bad("no PEM public key in it".into()));
                }
            }
            Ok(Some(Keys {
                secret,
                rsa,
                ec,
                issuer: cfg.jwt_issuer.clone(),
                audience: cfg.jwt_audience.clone(),
                leeway: cfg.jwt_leeway,
            }))
        }

        /// How many keys are loaded.
        pub(crate) fn count(&self) -> usize {
            usize::from(self.secret.is_some()) + self.rsa.len() + self.ec.len()
        }

        /// Checks `token`: size, shape, `alg` from the configured set, signature, `exp`, `nbf`,
        /// `iss`/`aud` when configured. The error is the failed check, for
        /// `error_description` and the debug log (never the token).
        pub(crate) fn verify(&self, token: &str) -> Result<Identity, &'static str> {
            if token.len() > MAX_TOKEN_LEN {
                return Err("token too large");
            }
            let mut parts = token.split('.');
            let (Some(header), Some(_), Some(_), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(if token.contains('.') {
                    "malformed"
                } else {
                    "unknown token"
                });
            };
            // The header is read before the signature is checked (it names the algorithm);
            // it is bounded by MAX_TOKEN_LEN and only `alg` is looked at.
            let header = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| "malformed base64")?;
            let header: JoseHeader =
                serde_json::from_slice(&header).map_err(|_| "malformed JSON")?;
            // Only these three, and only with a key of their own family: never `none`, never
            // an HMAC keyed with a public key (the RS256 → HS256 confusion), never a family
            // whose key is not configured.
            let (alg, keys): (Algorithm, &[DecodingKey]) = match header.alg.as_str() {
                "HS256" => (Algorithm::HS256, self.secret.as_slice()),
                "RS256" => (Algorithm::RS256, &self.rsa),
                "ES256" => (Algorithm::ES256, &self.ec),
                _ => (Algorithm::HS256, &[]),
            };
            if keys.is_empty() {
                return Err("algorithm not allowed");
            }
            let validation = self.validation(alg);
            let mut last = "bad signature";
            for key in keys {
                match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                    Ok(data) => return self.identity(data.claims),
                    // Another key of the family may have signed it (rotation).
                    Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
                    Err(e) => {
                        last = reason(e.kind());
                        break;
                    }
                }
            }
            Err(last)
        }

        fn validation(&self, alg: Algorithm) -> Validation {
            let mut v = Validation::new(alg);
            v.algorithms = vec![alg];
            v.leeway = self.leeway.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            let mut required: HashSet<String> = HashSet::from(["exp".to_string()]);
            match &self.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.insert("aud".into());
                }
                // Not configured: any `aud` is accepted (jsonwebtoken would refuse them all).
                None => v.validate_aud = false,
            }
            if let Some(iss) = &self.issuer {
                v.set_issuer(&[iss]);
                required.insert("iss".into());
            }
            v.required_spec_claims = required;
            v
        }

        fn identity(&self, claims: Claims) -> Result<Identity, &'static str> {
            let sub = match claims.sub {
                None => None,
                Some(serde_json::Value::String(s)) => Some(s),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(_) => return Err("malformed claim"),
            };
            let expires = claims.exp.filter(|e| e.is_finite() && *e > 0.0).map(|exp| {
                // Relative to now so that a far-future exp cannot overflow SystemTime.
                let left = (exp - unix_now()).clamp(-1e9, 1e9);
                let now = SystemTime::now() + self.leeway;
                if left >= 0.0 {
                    now + Duration::from_secs_f64(left)
                } else {
                    now - Duration::from_secs_f64(-left)
                }
            });
            Ok(Identity {
                sub,
                name: claims.name.filter(|n| !n.trim().is_empty()),
                channels: claims.channels.unwrap_or_default(),
                rooms: claims.rooms.unwrap_or_default(),
                admin: claims.admin.unwrap_or(false),
                expires,
            })
        }
    }

    /// The failed check, in words a client's developer can act on.
    fn reason(kind: &ErrorKind) -> &'static str {
        match kind {
            ErrorKind::ExpiredSignature => "expired",
            ErrorKind::ImmatureSignature => "not yet valid",
            ErrorKind::InvalidIssuer => "wrong issuer",
            ErrorKind::InvalidAudience => "wrong audience",
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
            ErrorKind::Base64(_) => "malformed base64",
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => "malformed JSON",
            ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                "exp" => "missing exp",
                "iss" => "wrong issuer",
                "aud" => "wrong audience",
                _ => "missing claim",
            },
            ErrorKind::InvalidClaimFormat(_) => "malformed claim",
            _ => "invalid token",
        }
    }

    /// The `-----BEGIN ...-----` to `-----END ...-----` blocks of a PEM file, in order.
    fn pem_blocks(text: &str) -> Vec<&str> {
        let mut blocks = Vec::new();
        let mut rest = text;
        // Bounded: each turn consumes at least one BEGIN line.
        while let Some(start) = rest.find("-----BEGIN ") {
            let from = &rest[start..];
            let Some(end) = from.find("-----END ") else {
                break;
            };
            let close = from[end + 9..]
                .find("-----")
                .map_or(from.len(), |i| end + 9 + i + 5);
            blocks.push(&from[..close]);
            rest = &from[close..];
        }
        blocks
    }

    /// What [`sign_token`] puts into a token. Start from `TokenClaims::default()` (one hour,
    /// no other claim) and set what you need.
    ///
    /// ```
    /// let mut claims = wschat::TokenClaims::default();
    /// claims.sub = Some("42".into());
    /// claims.rooms = vec!["team-*".into()];
    /// assert_eq!(claims.lifetime, std::time::Duration::from_secs(3600));
    /// ```
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub struct TokenClaims {
        /// `sub`: the user id.
        pub sub: Option<String>,
        /// `name`: the chat name the token binds.
        pub name: Option<String>,
        /// `rooms`: chat rooms (names or `prefix-*` patterns) the user may join.
        pub rooms: Vec<String>,
        /// `channels`: relay channels (names or patterns) the user may use.
        pub channels: Vec<String>,
        /// `admin`: set only when true.
        pub admin: bool,
        /// `iss`, for a server run with `--jwt-issuer`.
        pub issuer: Option<String>,
        /// `aud`, for a server run with `--jwt-audience`.
        pub audience: Option<String>,
        /// `exp` is now plus this. Default one hour.
        pub lifetime: Duration,
    }

    impl Default for TokenClaims {
        fn default() -> TokenClaims {
            TokenClaims {
                sub: None,
                name: None,
                rooms: Vec::new(),
                channels: Vec::new(),
                admin: false,
                issuer: None,
                audience: None,
                lifetime: Duration::from_secs(3600),
            }
        }
    }

    /// Signs an HS256 token with the key in `secret_file` (read as `--jwt-secret-file` reads
    /// it), for operators (`wschat token`) and tests. Apps mint their own tokens with their
    /// JWT library; see the README.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the file cannot be read or is empty.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("wschat-doc-sign-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let secret = dir.join("secret");
    /// std::fs::write(&secret, "a-long-random-secret-shared-with-the-app\n")?;
    /// let mut claims = wschat::TokenClaims::default();
    /// claims.name = Some("alice".into());
    /// let token = wschat::sign_token(&secret, &claims)?;
    /// assert_eq!(token.split('.').count(), 3);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign_token(secret_file: &Path, claims: &TokenClaims) -> crate::Result<String> {
        let key = read_secret(secret_file)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut body = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            body.insert(k.to_string(), v);
        };
        put("iat", now.into());
        put("exp", (now + claims.lifetime.as_secs()).into());
        if let Some(sub) = &claims.sub {
            put("sub", sub.as_str().into());
        }
        if let Some(name) = &claims.name {
            put("name", name.as_str().into());
        }
        if !claims.rooms.is_empty() {
            put("rooms", claims.rooms.clone().into());
        }
        if !claims.channels.is_empty() {
            put("channels", claims.channels.clone().into());
        }
        if claims.admin {
            put("admin", true.into());
        }
        if let Some(iss) = &claims.issuer {
            put("iss", iss.as_str().into());
        }
        if let Some(aud) = &claims.audience {
            put("aud", aud.as_str().into());
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &body,
            &EncodingKey::from_secret(&key),
        )
        .map_err(|e| crate::Error::Io(io::Error::other(format!("signing failed: {e}"))))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn pem_blocks_are_split() {
            let text = "junk\n-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n\
                        -----BEGIN RSA PUBLIC KEY-----\nBBB\n-----END RSA PUBLIC KEY-----\n";
            let blocks = pem_blocks(text);
            assert_eq!(blocks.len(), 2);
            assert!(blocks[0].starts_with("-----BEGIN PUBLIC KEY-----"));
            assert!(blocks[0].ends_with("-----END PUBLIC KEY-----"));
            assert!(blocks[1].contains("BBB"));
            assert!(pem_blocks("-----BEGIN X-----\nno end").is_empty());
        }
    }
}

#[cfg(all(test, feature = "jwt"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn secret_loses_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("wschat-jwt-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "abc\n\n").unwrap();
        assert_eq!(read_secret(&f).unwrap(), b"abc\n");
        std::fs::write(&f, "abc\r\n").unwrap();
        assert_eq!(read_secret(&f).unwrap(), b"abc");
        std::fs::write(&f, " abc ").unwrap();
        assert_eq!(read_secret(&f).unwrap(), b" abc ");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_secret(&f).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn size_and_shape_are_checked_before_decoding() {
        let dir = std::env::temp_dir().join(format!("wschat-jwt-unit2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("s");
        std::fs::write(&f, "0123456789abcdef0123456789abcdef").unwrap();
        let cfg = Config {
            jwt_secret_file: Some(f.clone()),
            ..Config::default()
        };
        let keys = Keys::load(&cfg).unwrap().unwrap();
        let big = "a.".repeat(40 * 1024);
        assert_eq!(keys.verify(&big), Err("token too large"));
        assert_eq!(keys.verify("opaque"), Err("unknown token"));
        assert_eq!(keys.verify("a.b"), Err("malformed"));
        assert_eq!(keys.verify("!!.b.c"), Err("malformed base64"));
        let claims = TokenClaims {
            sub: Some("u1".into()),
            rooms: vec!["team-*".into()],
            ..TokenClaims::default()
        };
        let token = sign_token(&f, &claims).unwrap();
        let id = keys.verify(&token).unwrap();
        assert_eq!(id.sub.as_deref(), Some("u1"));
        assert_eq!(id.rooms, vec!["team-*".to_string()]);
        assert!(id.expires.unwrap() > SystemTime::now() + Duration::from_secs(3000));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Mangled versions of the PyJWT vectors (cut, spliced, characters replaced, segments
    /// swapped) never panic, and are accepted only when they are, unchanged, a valid one.
    #[test]
    fn fuzz_verify_never_panics_and_accepts_only_valid_tokens() {
        let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jwt");
        let cfg = Config {
            jwt_secret_file: Some(data.join("secret.txt")),
            jwt_public_key_file: Some(data.join("public.pem")),
            ..Config::default()
        };
        let keys = Keys::load(&cfg).unwrap().unwrap();
        assert_eq!(keys.count(), 3);
        let text = std::fs::read_to_string(data.join("vectors.json")).unwrap();
        let vectors: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        let tokens: Vec<String> = vectors
            .values()
            .map(|v| v["token"].as_str().unwrap().to_string())
            .collect();
        // Valid with these keys (no iss/aud configured here, so the wrong-issuer and
        // wrong-audience vectors are valid too).
        let valid: Vec<&String> = tokens.iter().filter(|t| keys.verify(t).is_ok()).collect();
        assert!(valid.len() >= 5);
        let alphabet = b"AZaz09-_.=+/ !\"{}\xff";
        let seed = 0x0071_f00d;
        println!("seed {seed:#x}");
        let mut rng = crate::test_rng::Rng(seed);
        for i in 0..3000 {
            let mut t = rng.pick(&tokens).clone().into_bytes();
            for _ in 0..1 + rng.below(3) {
                match rng.below(5) {
                    0 if !t.is_empty() => t.truncate(rng.below(t.len())),
                    1 if !t.is_empty() => {
                        let at = rng.below(t.len());
                        t[at] = *rng.pick(alphabet);
                    }
                    2 => {
                        let other = rng.pick(&tokens).as_bytes();
                        let cut = rng.below(other.len());
                        t.extend_from_slice(&other[cut..]);
                    }
                    3 => {
                        let s = String::from_utf8_lossy(&t).into_owned();
                        let mut parts: Vec<&str> = s.split('.').collect();
                        parts.reverse();
                        t = parts.join(".").into_bytes();
                    }
                    _ => t.insert(rng.below(t.len() + 1), *rng.pick(alphabet)),
                }
            }
            let t = String::from_utf8_lossy(&t).into_owned();
            if keys.verify(&t).is_ok() {
                assert!(valid.iter().any(|v| **v == t), "case {i}: accepted {t:?}");
            }
        }
    }
}
