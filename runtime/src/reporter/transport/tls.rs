//! TLS to OAP: rustls (the `ring` provider) around our TCP connector, and certificate trouble
//! said in plain words.
//!
//! The client configuration is ours, not tonic's: the agent's own certificate is presented as
//! given, without rustls's consistency check, which parses it with webpki and refuses X.509
//! version 1 — what `openssl x509 -req` makes without an extension file, and what the Java,
//! Go and Python agents (OpenSSL, the JDK) present without complaint. Whether OAP accepts it is
//! OAP's to say. A file that truly cannot be used is said with its variable, its path and why.
//!
//! The files are read again for every new connection, so a renewed certificate or key is used
//! without a restart, and a connection that failed for a certificate heals once it is fixed.
//! The handshake happens in our connector ([`super::connector`]): connection counting and the
//! reconnect guard stay ours, and tonic sees a connection that is already secure.
//!
//! What a failed handshake says is read from rustls's error, found in the error's chain (typed
//! where it can be reached, by its text where a layer in between, h2's I/O error, hides it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::config::TlsFiles;

/// Longest a TLS handshake may take once the TCP connection is made.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

const CA: &str = "SW_AGENT_SSL_TRUSTED_CA_PATH";
const CHAIN: &str = "SW_AGENT_SSL_CERT_CHAIN_PATH";
const KEY: &str = "SW_AGENT_SSL_KEY_PATH";

/// The client's TLS settings for `files`, read now. An error is a cause for the failure line,
/// naming the variable and the file.
pub(crate) fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &files.ca {
        Some(ca) => ca_roots(ca)?,
        None => native_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((chain, key)) => {
            let identity = identity(chain, key, &provider)?;
            builder.with_client_cert_resolver(Arc::new(Identity(identity)))
        }
        None => builder.with_no_client_auth(),
    };
    // gRPC is HTTP/2; OAP's gRPC server negotiates it by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The CA certificates OAP's certificate is checked against.
fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = read(path, CA)?;
    let mut roots = RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{} ({CA}) is not PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "{} ({CA}) holds a certificate that cannot be a CA: {e}",
                path.display()
            )
        })?;
        found += 1;
    }
    if found == 0 {
        return Err(format!(
            "{} ({CA}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The system's root certificates.
fn native_roots() -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(
            "no system root certificates were found to check OAP's certificate with; \
                    give OAP's CA in SW_AGENT_SSL_TRUSTED_CA_PATH"
                .to_owned(),
        );
    }
    Ok(roots)
}

/// The agent's certificate chain and key, checked as far as they can be without refusing what
/// OAP would accept.
fn identity(
    chain_path: &Path,
    key_path: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let pem = read(chain_path, CHAIN)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} ({CHAIN}) is not PEM: {e}", chain_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} ({CHAIN}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            chain_path.display()
        ));
    }
    let pem = read(key_path, KEY)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!(
            "{} ({KEY}) holds no private key in PEM (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE \
             KEY` or SEC1 `EC PRIVATE KEY`)",
            key_path.display()
        )
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the key in {} ({KEY}) cannot sign: {e}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(format!(
                "the key in {} ({KEY}) is not the key of the first certificate in {} ({CHAIN})",
                key_path.display(),
                chain_path.display()
            ))
        }
        // Matched, or could not be told: a certificate webpki does not parse (X.509 v1) is
        // still presented; OAP decides.
        _ => Ok(Arc::new(certified)),
    }
}

/// The agent's one client certificate, offered whenever OAP asks for one.
#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn read(path: &Path, variable: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {} ({variable}): {}",
            path.display(),
            crate::reporter::message::join_causes([e.to_string()])
        )
    })
}

/// Whether `error` is certificate or TLS trouble, and if so what it means, in a sentence that
/// says which setting to look at. `mutual`: a client certificate was offered.
pub(crate) fn trouble(error: &(dyn std::error::Error + 'static), mutual: bool) -> Option<String> {
    let mut next = Some(error);
    let mut texts = Vec::new();
    while let Some(e) = next {
        if let Some(rustls) = find_rustls(e) {
            return Some(describe(rustls, mutual));
        }
        texts.push(e.to_string());
        next = e.source();
    }
    describe_text(&texts.join(": "), mutual)
}

/// The rustls error in `e` itself or in the I/O error it is (whose `source` skips it).
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(rustls) = e.downcast_ref::<rustls::Error>() {
        return Some(rustls);
    }
    let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    inner.downcast_ref::<rustls::Error>()
}

fn describe(error: &rustls::Error, mutual: bool) -> String {
    match error {
        rustls::Error::InvalidCertificate(cert) => certificate(cert),
        rustls::Error::AlertReceived(alert) => alert_received(*alert, mutual),
        rustls::Error::InvalidMessage(_) => not_tls(),
        rustls::Error::NoCertificatesPresented => {
            "OAP presented no certificate (TLS handshake failed)".to_owned()
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

fn certificate(error: &CertificateError) -> String {
    let why = match error {
        CertificateError::UnknownIssuer => "is signed by a CA the agent does not trust \
             (SW_AGENT_SSL_TRUSTED_CA_PATH, or the system's roots without it)"
            .to_owned(),
        CertificateError::NotValidForName => {
            "is not valid for the host name in SW_AGENT_COLLECTOR_BACKEND_SERVICES".to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "is not valid for {} (the name in SW_AGENT_COLLECTOR_BACKEND_SERVICES); it names {}",
            expected.to_str(),
            if presented.is_empty() {
                "no host".to_owned()
            } else {
                // `DnsName("oap.example")` as `oap.example`.
                let names: Vec<&str> = presented
                    .iter()
                    .map(|p| p.split('"').nth(1).unwrap_or(p))
                    .collect();
                names.join(", ")
            }
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet (check the clocks)".to_owned()
        }
        CertificateError::Revoked => "was revoked".to_owned(),
        CertificateError::BadSignature => "has a bad signature".to_owned(),
        other => format!("was refused: {other:?}"),
    };
    format!("OAP's certificate {why}")
}

fn alert_received(alert: AlertDescription, mutual: bool) -> String {
    let client_cert = matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
    );
    if !client_cert {
        return format!("TLS handshake failed: OAP sent the alert {alert:?}");
    }
    if mutual {
        format!(
            "OAP refused the agent's client certificate (alert {alert:?}): check \
             SW_AGENT_SSL_CERT_CHAIN_PATH and SW_AGENT_SSL_KEY_PATH, and the CA OAP trusts"
        )
    } else {
        format!(
            "OAP asks for a client certificate (alert {alert:?}): set \
             SW_AGENT_SSL_CERT_CHAIN_PATH and SW_AGENT_SSL_KEY_PATH"
        )
    }
}

/// A TLS connection OAP closed before answering anything: with TLS 1.3 a refused client
/// certificate looks so when its alert is lost with the connection.
pub(crate) fn closed_after_handshake(mutual: bool) -> String {
    if mutual {
        "OAP closed the connection after the TLS handshake without answering: it most likely \
         refused the agent's client certificate (check SW_AGENT_SSL_CERT_CHAIN_PATH and \
         SW_AGENT_SSL_KEY_PATH, and the CA OAP trusts)"
            .to_owned()
    } else {
        "OAP closed the connection after the TLS handshake without answering: it most likely \
         requires a client certificate (SW_AGENT_SSL_CERT_CHAIN_PATH, SW_AGENT_SSL_KEY_PATH)"
            .to_owned()
    }
}

/// `cause` of a new plaintext connection that broke before any answer, with a hint: a TLS
/// server answers the HTTP/2 preface with an alert (which h2 reads as a frame of an impossible
/// size) and closes the connection.
pub(crate) fn plaintext_hint(cause: String) -> String {
    format!("{cause} (a TLS port? then set SW_AGENT_SSL_TRUSTED_CA_PATH or SW_AGENT_FORCE_TLS)")
}

fn not_tls() -> String {
    "the backend does not speak TLS on this port (is TLS on at OAP? SW_AGENT_FORCE_TLS, \
     SW_AGENT_SSL_TRUSTED_CA_PATH)"
        .to_owned()
}

/// The same, from rustls's texts, when no layer lets the typed error be reached.
fn describe_text(text: &str, mutual: bool) -> Option<String> {
    let has = |needle: &str| text.contains(needle);
    if has("received fatal alert: ") {
        let alert = text
            .split("received fatal alert: ")
            .nth(1)
            .and_then(|rest| rest.split([':', ' ', ')', '"', ';']).next())
            .unwrap_or_default();
        let known = [
            ("BadCertificate", AlertDescription::BadCertificate),
            ("UnknownCA", AlertDescription::UnknownCA),
            ("CertificateRequired", AlertDescription::CertificateRequired),
            ("CertificateUnknown", AlertDescription::CertificateUnknown),
            ("CertificateExpired", AlertDescription::CertificateExpired),
            ("CertificateRevoked", AlertDescription::CertificateRevoked),
            ("AccessDenied", AlertDescription::AccessDenied),
            ("DecryptError", AlertDescription::DecryptError),
        ];
        return Some(match known.iter().find(|(name, _)| *name == alert) {
            Some((_, alert)) => alert_received(*alert, mutual),
            None => format!("TLS handshake failed: OAP sent the alert {alert}"),
        });
    }
    if has("invalid peer certificate: UnknownIssuer") {
        return Some(certificate(&CertificateError::UnknownIssuer));
    }
    if has("invalid peer certificate: ") {
        return Some(format!(
            "OAP's certificate was refused: {}",
            text.split("invalid peer certificate: ")
                .nth(1)
                .unwrap_or_default()
        ));
    }
    if has("received corrupt message") {
        return Some(not_tls());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_trouble_reads_plainly() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        let said = trouble(&io, false).unwrap();
        assert!(said.contains("a CA the agent does not trust"), "{said}");
        let refused = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(
            trouble(&refused, false)
                .unwrap()
                .contains("asks for a client certificate")
        );
        let bad = rustls::Error::AlertReceived(AlertDescription::BadCertificate);
        assert!(
            trouble(&bad, true)
                .unwrap()
                .contains("refused the agent's client certificate")
        );
        let plain = std::io::Error::other("connection refused");
        assert_eq!(trouble(&plain, false), None);
    }

    #[test]
    fn certificate_trouble_is_found_in_texts_too() {
        let said = describe_text("transport error: received fatal alert: UnknownCA", true);
        assert!(
            said.unwrap()
                .contains("refused the agent's client certificate")
        );
        let said = describe_text(
            "error: received corrupt message of type InvalidContentType",
            false,
        );
        assert!(said.unwrap().contains("does not speak TLS"));
        assert_eq!(describe_text("connection reset", false), None);
    }
}
