//! JWT tokens (`--auth-token jwt,pub-key=PATH,priv-key=PATH,sign-method=ES256,ttl=5m`), as etcd's: a signed
//! token with the claims `username`, `revision` (the auth revision when it was issued) and `exp`. Nothing is
//! stored or replicated: any member holding the public key verifies a token, so a member configured with
//! only `pub-key` accepts tokens but cannot issue them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// etcd's default token lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The claims etcd puts in its tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Issues and verifies JWT tokens.
pub struct JwtTokens {
    alg: Algorithm,
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("JwtTokens").field("alg", &self.alg).field("can_sign", &self.sign.is_some()).finish()
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let bad = || format!("jwt ttl {s:?}: expected a duration such as 5m, 300s or 1h");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

impl JwtTokens {
    /// Parses etcd's `--auth-token` value `jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...` and loads the
    /// keys. `pub-key` and `sign-method` are required (RS*, PS* and ES* methods).
    pub fn from_flag(spec: &str) -> Result<JwtTokens, String> {
        let mut parts = spec.split(',');
        if parts.next() != Some("jwt") {
            return Err(format!("--auth-token {spec:?}: expected \"simple\" or \"jwt,...\""));
        }
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, DEFAULT_TTL);
        for opt in parts {
            match opt.split_once('=') {
                Some(("pub-key", v)) => public = Some(v.to_string()),
                Some(("priv-key", v)) => private = Some(v.to_string()),
                Some(("sign-method", v)) => method = Some(v.to_string()),
                Some(("ttl", v)) => ttl = parse_ttl(v)?,
                _ => return Err(format!("--auth-token: unknown jwt option {opt:?}")),
            }
        }
        let method = method.ok_or("--auth-token jwt needs sign-method=...")?;
        let alg: Algorithm = method.parse().map_err(|_| format!("--auth-token: unknown sign-method {method:?}"))?;
        let rsa = matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512)
            || matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512);
        let ec = matches!(alg, Algorithm::ES256 | Algorithm::ES384);
        if !rsa && !ec {
            return Err(format!("--auth-token: sign-method {method} is not supported (use RS*, PS* or ES*)"));
        }
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("--auth-token: {p}: {e}"));
        let public = public.ok_or("--auth-token jwt needs pub-key=PATH")?;
        let pem = read(&public)?;
        let verify = if rsa { DecodingKey::from_rsa_pem(&pem) } else { DecodingKey::from_ec_pem(&pem) }
            .map_err(|e| format!("--auth-token: {public}: {e}"))?;
        let sign = match private {
            Some(p) => {
                let pem = read(&p)?;
                Some(
                    if rsa { EncodingKey::from_rsa_pem(&pem) } else { EncodingKey::from_ec_pem(&pem) }
                        .map_err(|e| format!("--auth-token: {p}: {e}"))?,
                )
            }
            None => None,
        };
        Ok(JwtTokens { alg, sign, verify, ttl })
    }

    /// A token for `username` at auth `revision`, valid for the ttl. None when this member has no private key.
    pub fn issue(&self, username: &str, revision: u64) -> Option<String> {
        let exp = (SystemTime::now() + self.ttl).duration_since(UNIX_EPOCH).ok()?.as_secs();
        let claims = Claims { username: username.to_string(), revision, exp };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, self.sign.as_ref()?).ok()
    }

    /// The user and auth revision of a valid, unexpired token signed with our key and method.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.required_spec_claims = ["exp".to_string()].into_iter().collect();
        let data = jsonwebtoken::decode::<Claims>(token, &self.verify, &v).ok()?;
        Some((data.claims.username, data.claims.revision))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &std::path::Path) -> (String, String) {
        let kp = rcgen::KeyPair::generate().unwrap();
        let (pubk, privk) = (dir.join("pub.pem"), dir.join("priv.pem"));
        std::fs::write(&pubk, kp.public_key_pem()).unwrap();
        std::fs::write(&privk, kp.serialize_pem()).unwrap();
        (pubk.display().to_string(), privk.display().to_string())
    }

    #[test]
    fn issues_and_verifies_and_refuses_forgeries() {
        let dir = tempfile::tempdir().unwrap();
        let (pubk, privk) = keys(dir.path());
        let j = JwtTokens::from_flag(&format!("jwt,pub-key={pubk},priv-key={privk},sign-method=ES256,ttl=1m")).unwrap();
        let t = j.issue("alice", 7).unwrap();
        assert_eq!(j.verify(&t), Some(("alice".to_string(), 7)));
        // Another key pair's tokens, a tampered token and garbage are refused.
        let other_dir = tempfile::tempdir().unwrap();
        let (p2, k2) = keys(other_dir.path());
        let other = JwtTokens::from_flag(&format!("jwt,pub-key={p2},priv-key={k2},sign-method=ES256")).unwrap();
        assert_eq!(j.verify(&other.issue("alice", 7).unwrap()), None);
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged_claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"username":"root","revision":7,"exp":99999999999}"#,
        );
        parts[1] = &forged_claims;
        assert_eq!(j.verify(&parts.join(".")), None);
        assert_eq!(j.verify("not-a-token"), None);
        // Verify-only members cannot issue.
        let verify_only = JwtTokens::from_flag(&format!("jwt,pub-key={pubk},sign-method=ES256")).unwrap();
        assert_eq!(verify_only.issue("alice", 1), None);
        assert!(verify_only.verify(&t).is_some());
    }

    #[test]
    fn flag_errors() {
        assert!(JwtTokens::from_flag("jwt,sign-method=ES256").unwrap_err().contains("pub-key"));
        assert!(JwtTokens::from_flag("jwt,pub-key=/x").unwrap_err().contains("sign-method"));
        assert!(JwtTokens::from_flag("jwt,pub-key=/x,sign-method=HS256").unwrap_err().contains("not supported"));
        assert!(JwtTokens::from_flag("jwt,pub-key=/nonexistent,sign-method=RS256")
            .unwrap_err()
            .contains("/nonexistent"));
        assert!(JwtTokens::from_flag("jwt,bogus=1").unwrap_err().contains("unknown jwt option"));
        assert_eq!(parse_ttl("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_ttl("5x").is_err());
    }
}
