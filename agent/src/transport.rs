//! Talking to the collector: reqwest on rustls (ring), trusting only the pinned CA — never
//! the system roots.
//!
//! At enrollment the operator gives either the CA certificate or its SHA-256 fingerprint;
//! with a fingerprint, the handshake accepts the server only if a certificate in its chain
//! has that fingerprint and the server certificate verifies against it, and that CA is then
//! stored and used as the sole root from then on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use census_shared::envelope::{HEADER_AGENT_ID, HEADER_SEQ, HEADER_SIGNATURE};
use census_shared::protocol::{Ack, EnrollRequest, EnrollResponse, Problem};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{0}")]
    Tls(String),
    #[error("cannot reach {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("enrollment refused by the collector ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("unexpected answer from the collector: {0}")]
    Protocol(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Normalises a fingerprint: hex, colons and case ignored.
pub fn normalise_fingerprint(text: &str) -> Result<[u8; 32], TransportError> {
    let hex_only: String = text
        .trim()
        .trim_start_matches("sha256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes = hex::decode(hex_only.to_ascii_lowercase())
        .map_err(|_| TransportError::Tls(format!("CA fingerprint '{text}' is not hex")))?;
    bytes.try_into().map_err(|_| {
        TransportError::Tls(format!(
            "CA fingerprint '{text}' is not a SHA-256 (64 hex digits)"
        ))
    })
}

/// Accepts a server only through the CA whose fingerprint was pinned, and records it.
#[derive(Debug)]
struct PinnedCaVerifier {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "no certificate in the server's chain matches the pinned CA fingerprint".into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(ca.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What the agent trusts for the collector.
pub enum Trust {
    /// First contact: a SHA-256 of the CA certificate.
    Fingerprint([u8; 32]),
    /// A CA certificate in PEM (from `--ca-cert`, or stored at enrollment).
    CaPem(String),
}

/// A client and, for fingerprint trust, the CA the handshake matched.
pub struct Client {
    pub http: reqwest::Client,
    pub server: String,
    seen_ca: Arc<Mutex<Option<CertificateDer<'static>>>>,
    fixed_ca: Option<CertificateDer<'static>>,
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TransportError::Tls(format!("CA certificate is not PEM: {e}")))
}

pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl Client {
    pub fn new(server: &str, trust: Trust, timeout: Duration) -> Result<Client, TransportError> {
        let server = server.trim_end_matches('/').to_string();
        if !server.starts_with("https://") {
            return Err(TransportError::Tls(format!(
                "server '{server}' must be an https:// URL"
            )));
        }
        let provider = provider();
        let seen = Arc::new(Mutex::new(None));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        let (config, fixed_ca) = match trust {
            Trust::Fingerprint(fingerprint) => {
                let verifier = PinnedCaVerifier {
                    fingerprint,
                    provider,
                    seen: seen.clone(),
                };
                (
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                        .with_no_client_auth(),
                    None,
                )
            }
            Trust::CaPem(pem) => {
                let der = pem_to_der(&pem)?;
                let mut roots = RootCertStore::empty();
                roots
                    .add(der.clone())
                    .map_err(|e| TransportError::Tls(format!("CA certificate: {e}")))?;
                (
                    builder.with_root_certificates(roots).with_no_client_auth(),
                    Some(der),
                )
            }
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("census-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Tls(e.to_string()))?;
        Ok(Client {
            http,
            server,
            seen_ca: seen,
            fixed_ca,
        })
    }

    /// The CA this client trusts, as confirmed by a completed handshake or given up front.
    pub fn trusted_ca(&self) -> Option<CertificateDer<'static>> {
        self.fixed_ca
            .clone()
            .or_else(|| self.seen_ca.lock().ok().and_then(|s| s.clone()))
    }

    fn unreachable(&self, e: reqwest::Error) -> TransportError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        TransportError::Unreachable {
            server: self.server.clone(),
            message,
        }
    }

    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, TransportError> {
        let body = serde_json::to_vec(req).map_err(|e| TransportError::Protocol(e.to_string()))?;
        let resp = self
            .http
            .post(format!(
                "{}{}",
                self.server,
                census_shared::protocol::ENROLL_PATH
            ))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| TransportError::Protocol(e.to_string()));
        }
        Err(TransportError::Refused {
            status: status.as_u16(),
            detail: problem_detail(&bytes),
        })
    }

    /// Posts a signed body and classifies the answer.
    pub async fn post_signed(
        &self,
        path: &str,
        agent_id: &str,
        seq: u64,
        signature: &str,
        body: Vec<u8>,
        content_encoding: Option<&str>,
    ) -> Delivery {
        let mut req = self
            .http
            .post(format!("{}{path}", self.server))
            .header(HEADER_AGENT_ID, agent_id)
            .header(HEADER_SEQ, seq.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(enc) = content_encoding {
            req = req.header(reqwest::header::CONTENT_ENCODING, enc);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Delivery::RetryLater {
                    after: None,
                    reason: self.unreachable(e).to_string(),
                }
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Delivery::RetryLater {
                    after: None,
                    reason: self.unreachable(e).to_string(),
                }
            }
        };
        if status.is_success() {
            return match serde_json::from_slice::<Ack>(&bytes) {
                Ok(ack) => Delivery::Accepted(ack),
                Err(e) => Delivery::RetryLater {
                    after: None,
                    reason: format!("unreadable ack: {e}"),
                },
            };
        }
        let detail = problem_detail(&bytes);
        let kind = serde_json::from_slice::<Problem>(&bytes)
            .map(|p| p.kind)
            .unwrap_or_default();
        match status.as_u16() {
            429 | 503 => Delivery::RetryLater {
                after: retry_after,
                reason: format!("{status}: {detail}"),
            },
            s if s >= 500 => Delivery::RetryLater {
                after: retry_after,
                reason: format!("{status}: {detail}"),
            },
            s => Delivery::Refused {
                status: s,
                kind,
                detail,
            },
        }
    }
}

fn problem_detail(bytes: &[u8]) -> String {
    serde_json::from_slice::<Problem>(bytes)
        .map(|p| p.detail)
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).chars().take(300).collect())
}

/// The collector's answer to one signed submission.
#[derive(Debug)]
pub enum Delivery {
    Accepted(Ack),
    /// Final refusal (4xx): the submission will never be accepted as it is.
    Refused {
        status: u16,
        /// The problem type (`about:blank`, or one the agent acts on).
        kind: String,
        detail: String,
    },
    /// Try again later (network, 429, 5xx), after `after` when the collector said so.
    RetryLater {
        after: Option<Duration>,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_any_common_spelling() {
        let hex = "4fa7dbe83dc13edadcf633e1062093e99ef6f8c2269973a52b5d08d9c00d10bb";
        let colons: String = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            normalise_fingerprint(hex).unwrap(),
            normalise_fingerprint(&colons).unwrap()
        );
        assert_eq!(
            normalise_fingerprint(&format!("sha256:{hex}")).unwrap(),
            normalise_fingerprint(hex).unwrap()
        );
        assert!(normalise_fingerprint("abcd").is_err());
        assert!(normalise_fingerprint("zz").is_err());
    }

    #[test]
    fn only_https() {
        assert!(Client::new(
            "http://x",
            Trust::Fingerprint([0; 32]),
            Duration::from_secs(1)
        )
        .is_err());
    }
}
