//! Standard Webhooks v1 signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every secret as users see it.
pub const SECRET_PREFIX: &str = "whsec_";

/// The base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under `key`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    B64.encode(mac.finalize().into_bytes())
}

/// The `webhook-signature` header value: one `v1,<sig>` per key, space-separated.
pub fn signature_header<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = String::new();
    for key in keys {
        if !header.is_empty() {
            header.push(' ');
        }
        header.push_str("v1,");
        header.push_str(&sign(key, msg_id, timestamp, body));
    }
    header
}

/// Does any `v1,` signature in `header` match `key`? (Constant-time per comparison.)
pub fn verify(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = sign(key, msg_id, timestamp, body);
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| {
            use subtle::ConstantTimeEq;
            sig.as_bytes().ct_eq(expected.as_bytes()).into()
        })
}

/// The prefix of an Ed25519 public key as receivers see it.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// A fresh Ed25519 key pair as a PKCS#8 document.
pub fn generate_ed25519() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .expect("the OS random source is available")
        .as_ref()
        .to_vec()
}

/// `v1a,<base64 Ed25519 signature of "{id}.{ts}.{body}">`, or `None` for a damaged key.
pub fn sign_ed25519(pkcs8: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).ok()?;
    let mut message = Vec::with_capacity(msg_id.len() + body.len() + 24);
    message.extend_from_slice(msg_id.as_bytes());
    message.push(b'.');
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    Some(format!("v1a,{}", B64.encode(pair.sign(&message).as_ref())))
}

/// `whpk_` + base64 of the raw 32-byte public key of a PKCS#8 key pair.
pub fn public_key(pkcs8: &[u8]) -> Option<String> {
    use ring::signature::KeyPair;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).ok()?;
    Some(format!(
        "{PUBLIC_KEY_PREFIX}{}",
        B64.encode(pair.public_key().as_ref())
    ))
}

/// Does any `v1a,` signature in `header` verify under `whpk_` public key `public`?
pub fn verify_ed25519(
    public: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let Some(raw) = public
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .and_then(|k| B64.decode(k).ok())
    else {
        return false;
    };
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, raw);
    let message = format!("{msg_id}.{timestamp}.");
    let mut message = message.into_bytes();
    message.extend_from_slice(body);
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1a,"))
        .filter_map(|sig| B64.decode(sig).ok())
        .any(|sig| key.verify(&message, &sig).is_ok())
}

/// Decodes `whsec_<base64>` to the key bytes (24 to 64 of them).
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| "a secret must start with whsec_".to_string())?;
    let key = B64
        .decode(encoded)
        .map_err(|_| "the part after whsec_ is not valid base64".to_string())?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "a secret must decode to 24-64 bytes, this one has {}",
            key.len()
        ));
    }
    Ok(key)
}

/// `whsec_` + base64 of the key.
pub fn format_secret(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// 32 fresh random bytes for a new secret.
pub fn generate_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    getrandom::getrandom(&mut key).expect("the OS random source is available");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the Standard Webhooks reference libraries.
    const VECTORS: [(&str, &str, i64, &str, &str); 2] = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    #[test]
    fn standard_webhooks_vectors() {
        for (secret, id, ts, body, header) in VECTORS {
            let key = parse_secret(secret).unwrap();
            assert_eq!(
                signature_header([key.as_slice()], id, ts, body.as_bytes()),
                header
            );
            assert!(verify(&key, id, ts, body.as_bytes(), header));
            assert!(!verify(&key, id, ts + 1, body.as_bytes(), header));
        }
    }

    #[test]
    fn ed25519_signs_and_verifies_with_the_public_key_only() {
        let pair = generate_ed25519();
        let public = public_key(&pair).unwrap();
        assert!(public.starts_with("whpk_"));
        let header = sign_ed25519(&pair, "msg_1", 1614265330, b"{}").unwrap();
        assert!(header.starts_with("v1a,"));
        assert!(verify_ed25519(&public, "msg_1", 1614265330, b"{}", &header));
        assert!(!verify_ed25519(
            &public, "msg_1", 1614265331, b"{}", &header
        ));
        let other = public_key(&generate_ed25519()).unwrap();
        assert!(!verify_ed25519(&other, "msg_1", 1614265330, b"{}", &header));
        // Beside a v1 signature in one header.
        let both = format!("v1,abc {header}");
        assert!(verify_ed25519(&public, "msg_1", 1614265330, b"{}", &both));
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let (a, b) = (generate_key(), generate_key());
        let header = signature_header([a.as_slice(), b.as_slice()], "m", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&a, "m", 1, b"{}", &header));
        assert!(verify(&b, "m", 1, b"{}", &header));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_explained() {
        let key = generate_key();
        assert_eq!(parse_secret(&format_secret(&key)).unwrap(), key);
        assert!(parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err()
            .contains("whsec_"));
        assert!(parse_secret("whsec_!!!").unwrap_err().contains("base64"));
        assert!(parse_secret("whsec_AAAA").unwrap_err().contains("24-64"));
    }
}
