//! The subject common name of a client certificate: with `--client-cert-auth`, a request without token is
//! made by the user its verified certificate names (as etcd's `AuthInfoFromTLS`).
//!
//! A small DER walk, enough for X.509: `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
//! OPTIONAL, serialNumber, signature, issuer, validity, subject, ... }, ... }`, where `subject` is a SEQUENCE
//! of SETs of `SEQUENCE { type OID, value }` and the common name has OID 2.5.4.3.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// 2.5.4.3, DER-encoded.
const COMMON_NAME_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// One DER element: (tag, contents, what follows it).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(buf)? {
        (t, content, rest) if t == tag => Some((content, rest)),
        _ => None,
    }
}

/// The first common name in the subject of the DER certificate `der`; `None` when there is none or the
/// certificate cannot be read.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped; then subject.
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    let (mut subject, _) = expect(tbs, SEQUENCE)?;
    while !subject.is_empty() {
        let (set, rest) = expect(subject, SET)?;
        subject = rest;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (attr, rest) = expect(attrs, SEQUENCE)?;
            attrs = rest;
            let (oid, value) = expect(attr, OID)?;
            if oid == COMMON_NAME_OID {
                let (_, text, _) = tlv(value)?;
                return Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_generated_certificate() {
        let dir = tempfile::tempdir().unwrap();
        crate::tls::generate_ca_and_certs(dir.path(), &[("alice".into(), vec!["localhost".into()])]).unwrap();
        let certs = crate::tls::load_certs(&dir.path().join("alice.pem")).unwrap();
        assert_eq!(common_name(&certs[0]).as_deref(), Some("alice"));
        let ca = crate::tls::load_certs(&dir.path().join("ca.pem")).unwrap();
        assert_eq!(common_name(&ca[0]).as_deref(), Some("raftcd CA"));
        assert_eq!(common_name(b"\x30\x03\x02\x01"), None);
        assert_eq!(common_name(b""), None);
    }
}
