//! Validation of a user's PGP public key (`pubKey` on POST/PUT /users).
//!
//! WildDuck reads the key with OpenPGP.js and then encrypts a test message to
//! it; any failure rejects the request with "PGP key validation failed.
//! <reason>". This module does the same with rPGP: it parses the armored
//! key, checks that the primary key is usable (a valid self-signed user ID,
//! not revoked, not expired), picks an encryption key the way OpenPGP.js does
//! (the newest valid encryption subkey, else the primary key if its flags
//! allow encryption) and encrypts a short message to it.
//!
//! Like OpenPGP.js 5 as configured by WildDuck, ElGamal and DSA keys are
//! refused as too weak, and so are RSA keys below 1024 bits.

use std::time::{SystemTime, UNIX_EPOCH};

use pgp::{
    composed::{ArmorOptions, Deserializable, MessageBuilder, SignedPublicKey},
    crypto::{public_key::PublicKeyAlgorithm, sym::SymmetricKeyAlgorithm},
    packet::{PublicKey, PublicSubkey, Signature, SignatureType, SubpacketData},
    ser::Serialize,
    types::{KeyDetails, PublicParams, Tag, Timestamp},
};
use unicode_normalization::UnicodeNormalization;

pub use super::KeyInfo;

/// The armor line a `pubKey` value must start with.
const PUBLIC_KEY_HEADER: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// The message WildDuck encrypts to prove the key works.
const TEST_MESSAGE: &[u8] = b"Hello, World!";

/// WildDuck lowers OpenPGP.js's RSA minimum to this many bits.
const MIN_RSA_BITS: u16 = 1024;

/// Parses an ASCII-armored public key; Err(reason) when it is not one or cannot encrypt.
///
/// On success returns the name and address of the key's first user ID and
/// the primary key's fingerprint. The error is a short human-readable reason
/// without a trailing period, meant to follow "PGP key validation failed. ".
pub fn parse_public_key(armored: &str) -> Result<KeyInfo, String> {
    let key = read_public_key(armored)?;
    recipient(&key)?;

    let (name, address) = first_user_id(&key);
    Ok(KeyInfo {
        name,
        address,
        fingerprint: format!("{:x}", key.fingerprint()),
    })
}

/// Reads an ASCII-armored public key without validating it; the error is a
/// reason as for [`parse_public_key`].
pub(crate) fn read_public_key(armored: &str) -> Result<SignedPublicKey, String> {
    let text = prepare_armor(armored);
    if !text.starts_with(PUBLIC_KEY_HEADER) {
        return Err("Not an ASCII-armored PGP public key".into());
    }
    let (key, _headers) = SignedPublicKey::from_string(&text)
        .map_err(|err| with_detail("Failed to process public key", &err))?;
    Ok(key)
}

/// Validates `key` as of now and picks the key and cipher to encrypt to,
/// as [`parse_public_key`] does; the error is a reason as there.
pub(crate) fn recipient(key: &SignedPublicKey) -> Result<Recipient<'_>, String> {
    let now = unix_now();
    let primary_cert = check_primary_key(key, now)?;
    check_encryption(key, primary_cert, now)
}

/// The key a message is encrypted to, and the cipher for its session key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recipient<'a> {
    key: RecipientKey<'a>,
    sym_alg: SymmetricKeyAlgorithm,
}

/// The primary key and subkeys are distinct types in rPGP.
#[derive(Debug, Clone, Copy)]
enum RecipientKey<'a> {
    Primary(&'a PublicKey),
    Subkey(&'a PublicSubkey),
}

impl Recipient<'_> {
    /// Encrypts `data` as an unnamed binary literal, as OpenPGP.js does
    /// (SEIPD v1, uncompressed, unsigned), and ASCII-armors the result with
    /// LF line breaks.
    pub(crate) fn encrypt(&self, data: Vec<u8>) -> Result<String, pgp::errors::Error> {
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_bytes("", data).seipd_v1(&mut rng, self.sym_alg);
        match self.key {
            RecipientKey::Primary(key) => builder.encrypt_to_key(&mut rng, key)?,
            RecipientKey::Subkey(key) => builder.encrypt_to_key(&mut rng, key)?,
        };
        builder.to_armored_string(&mut rng, ArmorOptions::default())
    }
}

/// The session-key cipher OpenPGP.js picks for a single recipient: AES-256
/// if the primary user's preferences list it, else AES-128, which every
/// implementation must support.
fn preferred_cipher(primary_cert: &Signature) -> SymmetricKeyAlgorithm {
    if primary_cert
        .preferred_symmetric_algs()
        .contains(&SymmetricKeyAlgorithm::AES256)
    {
        SymmetricKeyAlgorithm::AES256
    } else {
        SymmetricKeyAlgorithm::AES128
    }
}

/// Normalizes line endings and restores a missing blank line after the
/// armor header, as WildDuck does: keys pasted into forms often lose it.
fn prepare_armor(armored: &str) -> String {
    let text = armored.replace("\r\n", "\n");
    let text = text.trim();
    let first_line_is_armor = text.split_once('\n').is_some_and(|(first, _)| {
        first.len() > 10
            && first.starts_with("-----")
            && first.ends_with("-----")
            && !first[5..first.len() - 5].contains('-')
    });
    if first_line_is_armor && !text.contains("\n\n") {
        text.replacen('\n', "\n\n", 1)
    } else {
        text.to_owned()
    }
}

/// `reason`, followed by rPGP's error text when that is short and plain.
///
/// Some rPGP errors render their source with `{:?}`, which can include a
/// whole backtrace (when `RUST_BACKTRACE` is set) and local file paths; such
/// text must not reach an API response, so it is left out.
fn with_detail(reason: &str, err: &pgp::errors::Error) -> String {
    let detail = err.to_string();
    let plain = detail.len() <= 100 && !detail.contains(['{', '\n', '\r']);
    if plain && !detail.is_empty() {
        format!("{reason}: {detail}")
    } else {
        reason.to_owned()
    }
}

/// Seconds since the epoch; a clock before 1970 counts as 0.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn created_secs(sig: &Signature) -> u64 {
    sig.created()
        .map_or(0, |created| u64::from(created.as_secs()))
}

/// A zero or missing lifetime means "never expires" in OpenPGP.
fn has_lapsed(start: u64, lifetime: Option<pgp::types::Duration>, now: u64) -> bool {
    match lifetime.map(|lifetime| u64::from(lifetime.as_secs())) {
        Some(secs) if secs > 0 => start + secs <= now,
        _ => false,
    }
}

/// Whether a signature's own validity period has run out.
fn signature_expired(sig: &Signature, now: u64) -> bool {
    has_lapsed(created_secs(sig), sig.signature_expiration_time(), now)
}

/// Whether the key a self-signature describes has expired by `now`.
fn key_expired(created_at: Timestamp, sig: &Signature, now: u64) -> bool {
    has_lapsed(
        u64::from(created_at.as_secs()),
        sig.key_expiration_time(),
        now,
    )
}

fn is_type(sig: &Signature, typ: SignatureType) -> bool {
    sig.typ() == Some(typ)
}

/// The newest of `sigs` that verifies and has not itself expired.
fn latest_valid<'a>(
    sigs: impl Iterator<Item = &'a Signature>,
    now: u64,
    verify: impl Fn(&Signature) -> bool,
) -> Option<&'a Signature> {
    sigs.filter(|sig| !signature_expired(sig, now) && verify(sig))
        .max_by_key(|sig| created_secs(sig))
}

/// Checks that the primary key is not revoked or expired and has a valid
/// self-signed user ID; returns the self-signature of the primary user.
///
/// OpenPGP.js needs a primary user before it encrypts to any key, so a key
/// without a valid user ID is rejected even if its subkeys are fine.
fn check_primary_key(key: &SignedPublicKey, now: u64) -> Result<&Signature, String> {
    let primary = &key.primary_key;
    let revoked =
        key.details.revocation_signatures.iter().any(|sig| {
            is_type(sig, SignatureType::KeyRevocation) && sig.verify_key(primary).is_ok()
        });
    if revoked {
        return Err("Primary key is revoked".into());
    }

    let mut best: Option<&Signature> = None;
    for user in &key.details.users {
        let is_valid_self_sig = |sig: &Signature| {
            sig.verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
        };
        let user_revoked = user
            .signatures
            .iter()
            .any(|sig| is_type(sig, SignatureType::CertRevocation) && is_valid_self_sig(sig));
        if user_revoked {
            continue;
        }
        let certifications = user
            .signatures
            .iter()
            .filter(|sig| !is_type(sig, SignatureType::CertRevocation));
        let Some(cert) = latest_valid(certifications, now, is_valid_self_sig) else {
            continue;
        };
        // Like OpenPGP.js: a user flagged primary wins, then the newest.
        let rank = |sig: &Signature| (sig.is_primary(), created_secs(sig));
        if best.is_none_or(|current| rank(cert) > rank(current)) {
            best = Some(cert);
        }
    }
    let primary_cert = best.ok_or("No valid self-signed user ID")?;

    // A direct-key signature may also carry the expiry (always so on v6 keys).
    let direct = latest_valid(
        key.details
            .direct_signatures
            .iter()
            .filter(|sig| is_type(sig, SignatureType::Key)),
        now,
        |sig| sig.verify_key(primary).is_ok(),
    );
    let created_at = primary.created_at();
    if key_expired(created_at, primary_cert, now)
        || direct.is_some_and(|sig| key_expired(created_at, sig, now))
    {
        return Err("Primary key has expired".into());
    }
    Ok(primary_cert)
}

/// Whether a self-signature's key flags permit encryption; a signature
/// without a key-flags subpacket leaves it to the algorithm (as OpenPGP.js).
fn flags_allow_encryption(sig: &Signature) -> bool {
    let has_flags = sig.config().is_some_and(|config| {
        config
            .hashed_subpackets()
            .any(|packet| matches!(packet.data, SubpacketData::KeyFlags(_)))
    });
    let flags = sig.key_flags();
    !has_flags || flags.encrypt_comms() || flags.encrypt_storage()
}

/// Finds an encryption key the way OpenPGP.js does and encrypts the test
/// message to it; the error names why the last candidate failed.
fn check_encryption<'a>(
    key: &'a SignedPublicKey,
    primary_cert: &Signature,
    now: u64,
) -> Result<Recipient<'a>, String> {
    let primary = &key.primary_key;
    let sym_alg = preferred_cipher(primary_cert);
    let mut subkeys: Vec<_> = key.public_subkeys.iter().collect();
    // Newest first: by convention a fresh subkey replaces an older one.
    subkeys.sort_by_key(|subkey| std::cmp::Reverse(subkey.key.created_at().as_secs()));

    let mut reason = None;
    for subkey in subkeys {
        let verifies = |sig: &Signature| sig.verify_subkey_binding(primary, &subkey.key).is_ok();
        let revoked = subkey
            .signatures
            .iter()
            .any(|sig| is_type(sig, SignatureType::SubkeyRevocation) && verifies(sig));
        let bindings = subkey
            .signatures
            .iter()
            .filter(|sig| is_type(sig, SignatureType::SubkeyBinding));
        let Some(binding) = latest_valid(bindings, now, verifies) else {
            continue;
        };
        if revoked || !flags_allow_encryption(binding) || !subkey.key.algorithm().can_encrypt() {
            continue;
        }
        if key_expired(subkey.key.created_at(), binding, now) {
            reason = Some("Encryption subkey has expired".to_owned());
            continue;
        }
        let candidate = Recipient {
            key: RecipientKey::Subkey(&subkey.key),
            sym_alg,
        };
        match check_strength(&subkey.key).and_then(|()| encrypt_test_message(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(err) => reason = Some(err),
        }
    }

    if flags_allow_encryption(primary_cert) && primary.algorithm().can_encrypt() {
        let candidate = Recipient {
            key: RecipientKey::Primary(primary),
            sym_alg,
        };
        match check_strength(primary).and_then(|()| encrypt_test_message(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(err) => reason = Some(err),
        }
    }
    Err(reason.unwrap_or_else(|| "No encryption-capable key found".into()))
}

/// OpenPGP.js's key requirements as WildDuck configures them.
fn check_strength(key: &impl KeyDetails) -> Result<(), String> {
    match key.algorithm() {
        PublicKeyAlgorithm::Elgamal | PublicKeyAlgorithm::ElgamalEncrypt => {
            return Err("ElGamal keys are considered too weak".into());
        }
        PublicKeyAlgorithm::DSA => return Err("DSA keys are considered too weak".into()),
        _ => {}
    }
    if let PublicParams::RSA(params) = key.public_params() {
        // The serialized form starts with the modulus as an MPI, whose first
        // two bytes are its length in bits; this avoids depending on `rsa`.
        let bytes = params
            .to_bytes()
            .map_err(|err| with_detail("Failed to read RSA key", &err))?;
        let bits = match bytes.as_slice() {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "RSA keys shorter than {MIN_RSA_BITS} bits are considered too weak"
            ));
        }
    }
    Ok(())
}

/// Encrypts [`TEST_MESSAGE`] to `recipient`, as WildDuck's check does.
fn encrypt_test_message(recipient: &Recipient<'_>) -> Result<(), String> {
    let message = recipient
        .encrypt(TEST_MESSAGE.to_vec())
        .map_err(|err| with_detail("Failed to encrypt a test message", &err))?;
    if message.starts_with("-----BEGIN PGP MESSAGE") {
        Ok(())
    } else {
        Err("Failed to verify public key".into())
    }
}

/// Name and address of the key's first user ID, as WildDuck takes them: the
/// first one in the key, not necessarily the one flagged primary.
fn first_user_id(key: &SignedPublicKey) -> (String, String) {
    key.details
        .users
        .first()
        .map(|user| split_user_id(&String::from_utf8_lossy(user.id.id())))
        .unwrap_or_default()
}

/// Splits a `Name (comment) <address>` user ID into name and address.
fn split_user_id(user_id: &str) -> (String, String) {
    let user_id = user_id.trim();
    if let Some(inner) = user_id.strip_suffix('>')
        && let Some((before, address)) = inner.rsplit_once('<')
    {
        return (clean_name(before), normalize_address(address));
    }
    // A bare address, or else a bare name.
    if user_id.contains('@') && !user_id.contains(char::is_whitespace) {
        (String::new(), normalize_address(user_id))
    } else {
        (clean_name(user_id), String::new())
    }
}

/// Drops a trailing `(comment)` and surrounding quotes from a display name.
fn clean_name(name: &str) -> String {
    let mut name = name.trim();
    if name.ends_with(')')
        && let Some(open) = name.rfind('(')
    {
        name = name[..open].trim_end();
    }
    if let Some(unquoted) = name
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return unquoted.replace("\\\"", "\"").trim().to_owned();
    }
    name.to_owned()
}

/// WildDuck's address normalization: NFC, lowercased, and a punycode
/// domain shown in Unicode.
fn normalize_address(address: &str) -> String {
    let address = address.trim();
    let Some((user, domain)) = address.rsplit_once('@') else {
        return address.to_lowercase();
    };
    let user: String = user.nfc().collect::<String>().to_lowercase();
    let mut domain = domain.trim().to_lowercase();
    if domain.starts_with("xn--") {
        let (unicode, result) = idna::domain_to_unicode(&domain);
        if result.is_ok() {
            domain = unicode.nfc().collect::<String>().to_lowercase();
        }
    }
    format!("{}@{domain}", user.trim())
}

#[cfg(test)]
mod tests {
    use pgp::composed::{
        EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
    };

    use super::*;

    // The fixtures in `testdata/` are public keys exported with
    // `gpg --armor --export` (GnuPG 2.2.40) from a throwaway keyring, made
    // with `--faked-system-time 20240101T000000` so that their dates do not
    // depend on the clock of the machine that made them.

    /// RSA 2048 primary (sign, certify) with an RSA 2048 encryption subkey.
    const RSA: &str = include_str!("testdata/rsa.asc");
    /// The same RSA primary key before its encryption subkey was added.
    const RSA_SIGN_ONLY: &str = include_str!("testdata/rsa-sign-only.asc");
    /// Ed25519 primary with a Curve25519 (ECDH) encryption subkey.
    const ED25519: &str = include_str!("testdata/ed25519.asc");
    /// A lone Ed25519 primary key (sign, certify).
    const ED25519_SIGN_ONLY: &str = include_str!("testdata/ed25519-sign-only.asc");
    /// Ed25519 + Curve25519, made in 2020 and expired a day later.
    const EXPIRED: &str = include_str!("testdata/expired.asc");
    /// Ed25519 + Curve25519 with its revocation certificate applied.
    const REVOKED: &str = include_str!("testdata/revoked.asc");

    /// `gpg --with-colons --fingerprint`, lowercased.
    const RSA_FINGERPRINT: &str = "5507d964f5d5816abce0d57ec5b04ec6618c553b";
    const ED25519_FINGERPRINT: &str = "77dbb2da3dc86eac58532876812cab3628651fc0";

    fn rpgp_key(with_encryption_subkey: bool) -> SignedSecretKey {
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("Generated <Generated@Example.com>".into());
        if with_encryption_subkey {
            params.subkey(
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::X25519)
                    .can_encrypt(EncryptionCaps::All)
                    .build()
                    .expect("subkey params"),
            );
        }
        params
            .build()
            .expect("key params")
            .generate(rand::thread_rng())
            .expect("key generation")
    }

    #[test]
    fn rsa_key_is_accepted() {
        let info = parse_public_key(RSA).expect("valid key");
        assert_eq!(
            info,
            KeyInfo {
                name: "Test User".into(),
                address: "test@example.com".into(),
                fingerprint: RSA_FINGERPRINT.into(),
            }
        );
    }

    #[test]
    fn ed25519_key_is_accepted_and_address_normalized() {
        let info = parse_public_key(ED25519).expect("valid key");
        assert_eq!(info.name, "Ed User");
        assert_eq!(info.address, "ed.user@example.com");
        assert_eq!(info.fingerprint, ED25519_FINGERPRINT);
    }

    #[test]
    fn rpgp_generated_key_is_accepted() {
        let public = rpgp_key(true).to_public_key();
        let armored = public
            .to_armored_string(ArmorOptions::default())
            .expect("armor");
        let info = parse_public_key(&armored).expect("valid key");
        assert_eq!(info.name, "Generated");
        assert_eq!(info.address, "generated@example.com");
        assert_eq!(info.fingerprint, format!("{:x}", public.fingerprint()));
    }

    #[test]
    fn sloppy_armor_is_repaired() {
        let crlf = RSA.replace('\n', "\r\n");
        assert!(parse_public_key(&format!("\n  {crlf}  \n")).is_ok());
        // Pasted without the blank line after the header line.
        let squashed = RSA.replacen("\n\n", "\n", 1);
        assert!(!squashed.contains("\n\n"));
        assert!(parse_public_key(&squashed).is_ok());
    }

    #[test]
    fn garbage_is_rejected() {
        for input in [
            "",
            "hello",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP MESSAGE-----\n\nbm90IGEga2V5\n-----END PGP MESSAGE-----",
        ] {
            let err = parse_public_key(input).expect_err(input);
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn private_key_block_is_rejected() {
        let secret = rpgp_key(true)
            .to_armored_string(ArmorOptions::default())
            .expect("armor");
        assert!(secret.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        assert_eq!(
            parse_public_key(&secret).unwrap_err(),
            "Not an ASCII-armored PGP public key"
        );
        // Secret key packets dressed up with a public-key armor header.
        let disguised = secret.replace("PRIVATE KEY BLOCK", "PUBLIC KEY BLOCK");
        let err = parse_public_key(&disguised).unwrap_err();
        assert!(err.starts_with("Failed to process public key"), "{err}");
    }

    #[test]
    fn truncated_key_is_rejected() {
        let lines: Vec<&str> = RSA.lines().collect();
        let end = lines.len() - 1;
        // Keep the header and half of the body, then close the armor.
        let mut truncated = lines[..end / 2].join("\n");
        truncated.push('\n');
        truncated.push_str(lines[end]);
        assert!(parse_public_key(&truncated).is_err());
        let err = parse_public_key(&truncated).unwrap_err();
        // rPGP's text for this one embeds a backtrace; only the reason is kept.
        assert!(err.len() <= 130 && !err.contains('{'), "{err}");
        // A cut-off base64 line without any end marker.
        assert!(parse_public_key(&RSA[..RSA.len() / 2]).is_err());
    }

    #[test]
    fn sign_only_keys_are_rejected() {
        assert_eq!(
            parse_public_key(ED25519_SIGN_ONLY).unwrap_err(),
            "No encryption-capable key found"
        );
        // RSA could encrypt, but the key flags say sign and certify only.
        assert_eq!(
            parse_public_key(RSA_SIGN_ONLY).unwrap_err(),
            "No encryption-capable key found"
        );
        let public = rpgp_key(false).to_public_key();
        let armored = public
            .to_armored_string(ArmorOptions::default())
            .expect("armor");
        assert!(parse_public_key(&armored).is_err());
    }

    #[test]
    fn expired_key_is_rejected() {
        assert_eq!(
            parse_public_key(EXPIRED).unwrap_err(),
            "Primary key has expired"
        );
    }

    #[test]
    fn revoked_key_is_rejected() {
        assert_eq!(
            parse_public_key(REVOKED).unwrap_err(),
            "Primary key is revoked"
        );
    }

    #[test]
    fn user_ids_are_split() {
        let split = |id: &str| split_user_id(id);
        assert_eq!(
            split("Test User <test@example.com>"),
            ("Test User".into(), "test@example.com".into())
        );
        assert_eq!(
            split("Test User (work) <Test@Example.com>"),
            ("Test User".into(), "test@example.com".into())
        );
        assert_eq!(
            split("\"Doe, John\" <j@x.org>"),
            ("Doe, John".into(), "j@x.org".into())
        );
        assert_eq!(split("<j@x.org>"), (String::new(), "j@x.org".into()));
        assert_eq!(split("j@x.org"), (String::new(), "j@x.org".into()));
        assert_eq!(split("Just A Name"), ("Just A Name".into(), String::new()));
        assert_eq!(
            split("Ü <u@xn--mnchen-3ya.de>"),
            ("Ü".into(), "u@münchen.de".into())
        );
    }
}
