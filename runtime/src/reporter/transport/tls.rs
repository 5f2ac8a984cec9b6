//! TLS to OAP: tonic's rustls client (the `ring` provider), and certificate trouble said in
//! plain words.
//!
//! The files are read again for every new connection, so a renewed certificate or key is used
//! without a restart, and a connection that failed for a certificate heals once it is fixed.
//! tonic wraps our TCP connector ([`super::connector`]) in its TLS connector when the endpoint
//! is `https://`: connection counting and the reconnect guard stay ours.
//!
//! What a failed handshake says is read from rustls's error, found in the error's chain (typed
//! where it can be reached, by its text where a layer in between, h2's I/O error, hides it).

use std::time::Duration;

use rustls::{AlertDescription, CertificateError};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::TlsFiles;

/// Longest a TLS handshake may take once the TCP connection is made.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's TLS settings for `files`, read now. An error is a cause for the failure line.
pub(crate) fn client_config(files: &TlsFiles) -> Result<ClientTlsConfig, String> {
    // OAP's gRPC server negotiates `h2` by ALPN; a TLS proxy in front of it may not, and gRPC
    // is HTTP/2 either way.
    let mut config = ClientTlsConfig::new()
        .assume_http2(true)
        .timeout(HANDSHAKE_TIMEOUT);
    config = match &files.ca {
        Some(ca) => {
            let pem = read(ca, "SW_AGENT_SSL_TRUSTED_CA_PATH")?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_native_roots(),
    };
    if let Some((chain, key)) = &files.identity {
        let chain = read(chain, "SW_AGENT_SSL_CERT_CHAIN_PATH")?;
        let key = read(key, "SW_AGENT_SSL_KEY_PATH")?;
        config = config.identity(Identity::from_pem(chain, key));
    }
    Ok(config)
}

fn read(path: &std::path::Path, variable: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "cannot read {} ({variable}): {}",
            path.display(),
            crate::reporter::message::join_causes([e.to_string()])
        )
    })
}

/// What a TLS setup error (from `Endpoint::tls_config`: a file that is not PEM, a key that does
/// not parse, no system roots) means.
pub(crate) fn setup_cause(error: &(dyn std::error::Error + 'static), files: &TlsFiles) -> String {
    let text = crate::reporter::message::cause(error);
    if text.contains("native certs") {
        return "no system root certificates were found to check OAP's certificate with; give \
                OAP's CA in SW_AGENT_SSL_TRUSTED_CA_PATH"
            .to_owned();
    }
    let files_named = match (&files.ca, &files.identity) {
        (Some(_), Some(_)) => {
            "SW_AGENT_SSL_TRUSTED_CA_PATH, SW_AGENT_SSL_CERT_CHAIN_PATH, SW_AGENT_SSL_KEY_PATH"
        }
        (Some(_), None) => "SW_AGENT_SSL_TRUSTED_CA_PATH",
        (None, Some(_)) => "SW_AGENT_SSL_CERT_CHAIN_PATH, SW_AGENT_SSL_KEY_PATH",
        (None, None) => "the TLS settings",
    };
    format!("the TLS files cannot be used ({files_named}): {text}")
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
