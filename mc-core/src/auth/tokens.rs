//! Access tokens: JWTs signed with HS256, the algorithm pinned on verification, issuer,
//! audience and type checked, expiry judged by the relay's [`Clock`](crate::Clock).

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::Principal;
use super::config::{AuthConfig, JwtKey};
use crate::error::{Error, Result, TokenRejection};
use crate::ids::{OrgId, TokenFamilyId, UserId};
use crate::model::{Role, Timestamp};

/// The `typ` claim of access tokens.
pub const ACCESS_TYPE: &str = "access";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The organization id.
    pub org: String,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Always `"access"`.
    pub typ: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
    /// The refresh-token family the token was issued with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

impl AccessClaims {
    /// The principal these claims name, if the ids are well-formed.
    pub fn principal(&self) -> Option<Principal> {
        Some(Principal {
            user_id: self.sub.parse::<UserId>().ok()?,
            organization_id: self.org.parse::<OrgId>().ok()?,
            role: self.role,
        })
    }

    /// The refresh-token family, if the token carries a well-formed one.
    pub fn family(&self) -> Option<TokenFamilyId> {
        self.fam.as_deref().and_then(|f| f.parse().ok())
    }
}

/// A freshly signed access token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAccessToken {
    /// The JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

crate::debug_redacted!(IssuedAccessToken { expires_in } secret { token });

/// Signs and verifies access tokens.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    key: JwtKey,
    previous: Option<JwtKey>,
    issuer: String,
    audience: String,
    ttl: Duration,
    leeway: Duration,
}

impl AccessTokens {
    /// From the auth settings.
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            key: config.key.clone(),
            previous: config.previous_key.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.access_ttl,
            leeway: config.leeway,
        }
    }

    /// Signs a token for `principal`, valid from `now` for the configured lifetime.
    pub fn issue(
        &self,
        principal: &Principal,
        family: Option<TokenFamilyId>,
        now: Timestamp,
    ) -> Result<IssuedAccessToken> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: principal.user_id.to_string(),
            org: principal.organization_id.to_string(),
            role: principal.role,
            typ: ACCESS_TYPE.into(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat,
            exp: iat.saturating_add(ttl),
            jti: uuid::Uuid::now_v7().to_string(),
            fam: family.map(|f| f.to_string()),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&self.key.secret))
                .map_err(|e| Error::Internal(format!("cannot sign access token: {e}")))?;
        Ok(IssuedAccessToken { token, expires_in: self.ttl.as_secs() })
    }

    /// Verifies `token` at `now`: HS256 only, a known `kid` (or none, meaning the current key),
    /// the signature, issuer, audience and `typ`, then expiry with the configured leeway.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenRejection::Invalid);
        }
        let key = match header.kid.as_deref() {
            None => &self.key,
            Some(kid) if kid == self.key.kid => &self.key,
            Some(kid) => match &self.previous {
                Some(previous) if previous.kid == kid => previous,
                _ => return Err(TokenRejection::Invalid),
            },
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        // Expiry is checked below against the relay's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(&key.secret),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenRejection::Expired,
            _ => TokenRejection::Invalid,
        })?;
        let claims = data.claims;
        if claims.typ != ACCESS_TYPE || claims.principal().is_none() {
            return Err(TokenRejection::Invalid);
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(60);
        if now.timestamp() >= claims.exp.saturating_add(leeway) {
            return Err(TokenRejection::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::TimeDelta;

    fn tokens(secret: u8) -> AccessTokens {
        AccessTokens::new(&AuthConfig::new(JwtKey::new(vec![secret; 32]).unwrap()))
    }

    fn principal() -> Principal {
        Principal { user_id: UserId::new(), organization_id: OrgId::new(), role: Role::Member }
    }

    #[test]
    fn round_trip_and_expiry() {
        let t = tokens(1);
        let now = SystemClock.now();
        let p = principal();
        let issued = t.issue(&p, None, now).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = t.verify(&issued.token, now).unwrap();
        assert_eq!(claims.principal(), Some(p));
        assert_eq!(t.verify(&issued.token, now + TimeDelta::seconds(900 + 29)).map(|_| ()), Ok(()));
        assert_eq!(
            t.verify(&issued.token, now + TimeDelta::seconds(900 + 30)).unwrap_err(),
            TokenRejection::Expired
        );
    }

    #[test]
    fn foreign_and_forged_tokens_are_invalid() {
        let now = SystemClock.now();
        let mine = tokens(1);
        let theirs = tokens(2);
        let foreign = theirs.issue(&principal(), None, now).unwrap().token;
        assert_eq!(mine.verify(&foreign, now).unwrap_err(), TokenRejection::Invalid);
        assert_eq!(mine.verify("garbage", now).unwrap_err(), TokenRejection::Invalid);

        // alg "none": a header and claims with an empty signature.
        let good = mine.issue(&principal(), None, now).unwrap().token;
        let payload = good.split('.').nth(1).unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{none_header}.{payload}.");
        assert_eq!(mine.verify(&forged, now).unwrap_err(), TokenRejection::Invalid);
    }

    #[test]
    fn previous_key_verifies_during_rotation() {
        let now = SystemClock.now();
        let old = JwtKey::new(vec![1; 32]).unwrap();
        let new = JwtKey::new(vec![3; 32]).unwrap();
        let before = AccessTokens::new(&AuthConfig::new(old.clone()));
        let during = AccessTokens::new(&AuthConfig::new(new.clone()).previous_key(old));
        let after = AccessTokens::new(&AuthConfig::new(new));
        let token = before.issue(&principal(), None, now).unwrap().token;
        assert!(during.verify(&token, now).is_ok());
        assert_eq!(after.verify(&token, now).unwrap_err(), TokenRejection::Invalid);
    }

    #[test]
    fn wrong_issuer_audience_or_type_is_invalid() {
        let now = SystemClock.now();
        let key = JwtKey::new(vec![1; 32]).unwrap();
        let verifier = AccessTokens::new(&AuthConfig::new(key.clone()));
        for config in [
            AuthConfig::new(key.clone()).issuer("someone-else"),
            AuthConfig::new(key.clone()).audience("another-app"),
        ] {
            let token = AccessTokens::new(&config).issue(&principal(), None, now).unwrap().token;
            assert_eq!(verifier.verify(&token, now).unwrap_err(), TokenRejection::Invalid);
        }
        let mut claims =
            verifier.verify(&verifier.issue(&principal(), None, now).unwrap().token, now).unwrap();
        claims.typ = "refresh".into();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key.secret)).unwrap();
        assert_eq!(verifier.verify(&token, now).unwrap_err(), TokenRejection::Invalid);
    }
}
